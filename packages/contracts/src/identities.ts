import {
  AGENT_STREAM,
  AGENT_SUBJECT_ROOT,
  NODE_DESIRED_STREAM,
  NODE_DESIRED_SUBJECT_ROOT,
  agentEndpointFilter,
} from './agent.ts';
import { FLOW_STREAM, FLOW_SUBJECT_ROOT } from './flow.ts';
import {
  IPAM_ALLOCATIONS_STREAM,
  IPAM_KV_BUCKET,
  IPAM_NODES_STREAM,
  IpamSubject,
  ipamAllocFilter,
  ipamNodeSubject,
} from './ipam.ts';
import {
  POLICY_IDENTITY_BUCKET,
  POLICY_STREAM,
  POLICY_SUBJECT_ROOT,
  PolicyFilter,
} from './policy.ts';
import { K8S_STREAM } from './k8s.ts';
import { ROUTER_STREAM, ROUTER_SUBJECT_ROOT, routerNodeFilter } from './router.ts';
import { K8S_SUBJECT_ROOT, deadLetterSubject, encodeToken, k8sKindFilter } from './subjects.ts';
import { UNINSTALL_FILTER, uninstallSubject } from './uninstall.ts';

/**
 * Who may say what on the bus. Every service and every node's agent connects as its own NATS
 * identity, and nats-server enforces these permissions: a node is named in the subject of what
 * it writes, so an agent can only write its own node's records; each kind of desired state has
 * one writer; only `bootstrap` administers streams and buckets.
 *
 * Subjects are built here and nowhere else, so the permissions follow the contracts they guard.
 */
export const ServiceIdentity = {
  bootstrap: 'bootstrap',
  kubeBridge: 'kube-bridge',
  ipam: 'ipam',
  policy: 'policy',
  router: 'router',
  observer: 'observer',
  /** Reads all of Dyad's state (the `dyad` CLI, the lab's readiness check); writes nothing. */
  operator: 'operator',
  /** `dyad uninstall` (helm's pre-delete hook): reads the node list, asks each node's agent. */
  uninstall: 'uninstall',
} as const;
export type ServiceIdentity = (typeof ServiceIdentity)[keyof typeof ServiceIdentity];

/** A node agent's identity: `agent-<node>` (`agent-node-1`). */
export function agentIdentity(node: string): string {
  return `agent-${node}`;
}

/** The service name datapath agents dead-letter under (`dyad.dlq.v1.datapath-agent`). */
export const AGENT_SERVICE = 'datapath-agent';

/** Besides these, every identity subscribes to its own inbox (`inboxPermission`). */
export interface SubjectPermissions {
  readonly publish: readonly string[];
  readonly subscribe: readonly string[];
  /** Lets the identity answer requests it received (on the requester's inbox), and only those. */
  readonly allowResponses: boolean;
}

/**
 * Each identity's replies (JetStream fetches and acks included) arrive under its own inbox
 * prefix: no identity can read another's replies. An NKey identity's prefix is named by its
 * public key, which the bus derives from the seed it connects with, so no setting has to agree
 * with the key. An identity the auth callout admits (a Kubernetes ServiceAccount token) has no
 * key of its own: its prefix is named by the identity (`agent-node-1`), which the client is
 * told (NATS_IDENTITY) and the callout derives from the token.
 */
export function inboxPrefix(owner: string): string {
  return `_INBOX_${encodeToken(owner)}`;
}

/** What an identity may subscribe to besides `subscribe`: its own inbox. */
export function inboxPermission(owner: string): string {
  return `${inboxPrefix(owner)}.>`;
}

/**
 * Where nats-server asks who a connecting client is (auth callout): the callout service
 * subscribes here and answers each request with the client's identity and permissions.
 */
export const AUTH_CALLOUT_SUBJECT = '$SYS.REQ.USER.AUTH';

/** The auth callout service's own connection: it receives the server's requests and answers them. */
export function authCalloutPermissions(): SubjectPermissions {
  return { publish: [], subscribe: [AUTH_CALLOUT_SUBJECT], allowResponses: true };
}

const JS_API = '$JS.API';

/**
 * Reading all of JetStream, as the cluster-wide services do: stream and consumer info, consumers
 * on any stream and their fetches, direct gets, acks. No stream create, update, delete or purge,
 * no message delete.
 */
const JS_READ: readonly string[] = [
  `${JS_API}.INFO`,
  `${JS_API}.STREAM.INFO.*`,
  `${JS_API}.STREAM.NAMES`,
  `${JS_API}.STREAM.LIST`,
  `${JS_API}.STREAM.MSG.GET.*`,
  `${JS_API}.DIRECT.GET.>`,
  // With several filters the create request names only the stream (nats.js then uses the
  // older API subject), so both forms.
  `${JS_API}.CONSUMER.CREATE.*`,
  `${JS_API}.CONSUMER.CREATE.>`,
  `${JS_API}.CONSUMER.DURABLE.CREATE.>`,
  `${JS_API}.CONSUMER.INFO.>`,
  `${JS_API}.CONSUMER.DELETE.>`,
  `${JS_API}.CONSUMER.MSG.NEXT.>`,
  '$JS.ACK.>',
  '$JS.FC.>',
];

/** A KV bucket's write subjects. */
function kvWrite(bucket: string): string {
  return `$KV.${bucket}.>`;
}

function base(service: string): { publish: string[]; subscribe: string[] } {
  return { publish: [...JS_READ, deadLetterSubject(service)], subscribe: [] };
}

/** The permissions of one of the fixed service identities. */
export function servicePermissions(identity: ServiceIdentity): SubjectPermissions {
  const b = base(identity);
  switch (identity) {
    case ServiceIdentity.bootstrap:
      // Creates and updates every stream and bucket; publishes nothing else.
      return {
        publish: [`${JS_API}.>`],
        subscribe: [],
        allowResponses: false,
      };
    case ServiceIdentity.kubeBridge:
      return {
        publish: [...b.publish, `${K8S_SUBJECT_ROOT}.>`],
        subscribe: b.subscribe,
        allowResponses: false,
      };
    case ServiceIdentity.ipam:
      return {
        publish: [
          ...b.publish,
          `${IpamSubject.node}.>`,
          `${IpamSubject.events}.>`,
          kvWrite(IPAM_KV_BUCKET),
          // A deleted node's allocation records go with it.
          `${JS_API}.STREAM.PURGE.DYAD_IPAM_ALLOCATIONS`,
        ],
        subscribe: [...b.subscribe, `${IpamSubject.grow}.*`],
        allowResponses: true,
      };
    case ServiceIdentity.policy:
      return {
        publish: [
          ...b.publish,
          `${POLICY_SUBJECT_ROOT}.>`,
          `${NODE_DESIRED_SUBJECT_ROOT}.>`,
          kvWrite(POLICY_IDENTITY_BUCKET),
        ],
        // It watches its own refusals to report NetworkPolicies it could not read.
        subscribe: [...b.subscribe, deadLetterSubject(identity)],
        allowResponses: false,
      };
    case ServiceIdentity.router:
      return {
        publish: [...b.publish, `${ROUTER_SUBJECT_ROOT}.>`],
        subscribe: b.subscribe,
        allowResponses: false,
      };
    case ServiceIdentity.observer:
      return observerPermissions();
    case ServiceIdentity.operator:
      return { publish: JS_READ, subscribe: PUBLIC_EVENT_SUBJECTS, allowResponses: false };
    case ServiceIdentity.uninstall:
      return uninstallPermissions();
  }
}

/**
 * `dyad uninstall`: reads the Node records (which nodes to ask) and sends the uninstall requests;
 * nothing else. Only this identity can tell an agent to take Dyad off its node.
 */
function uninstallPermissions(): SubjectPermissions {
  return {
    publish: [
      `${JS_API}.INFO`,
      `${JS_API}.STREAM.INFO.${K8S_STREAM}`,
      readOnly(K8S_STREAM, k8sKindFilter('Node')),
      `${JS_API}.CONSUMER.INFO.${K8S_STREAM}.*`,
      `${JS_API}.CONSUMER.DELETE.${K8S_STREAM}.*`,
      `${JS_API}.CONSUMER.MSG.NEXT.${K8S_STREAM}.*`,
      '$JS.ACK.>',
      UNINSTALL_FILTER,
    ],
    subscribe: [],
    allowResponses: false,
  };
}

/**
 * The public event subjects: flows and IPAM events. The observer reads them live and from the
 * flow stream, and nothing else.
 */
export const PUBLIC_EVENT_SUBJECTS: readonly string[] = [
  `${FLOW_SUBJECT_ROOT}.>`,
  `${IpamSubject.events}.>`,
];

function observerPermissions(): SubjectPermissions {
  const stream = FLOW_STREAM;
  return {
    publish: [
      `${JS_API}.INFO`,
      `${JS_API}.STREAM.INFO.${stream}`,
      `${JS_API}.CONSUMER.CREATE.${stream}`,
      `${JS_API}.CONSUMER.CREATE.${stream}.>`,
      `${JS_API}.CONSUMER.INFO.${stream}.>`,
      `${JS_API}.CONSUMER.DELETE.${stream}.>`,
      `${JS_API}.CONSUMER.MSG.NEXT.${stream}.>`,
    ],
    subscribe: [...PUBLIC_EVENT_SUBJECTS],
    allowResponses: false,
  };
}

/**
 * Creating a consumer on `stream` that reads exactly `filter`: nats-server puts a single filter
 * in the create request's subject and refuses a request whose config names another, so this
 * permission confines what the consumer can read. (The bus names every consumer it creates and
 * gives a single filter as `filter_subject`, so its requests take this form.)
 */
function readOnly(stream: string, filter: string): string {
  return `${JS_API}.CONSUMER.CREATE.${stream}.*.${filter}`;
}

/**
 * A node agent: writes only its own node's endpoint, allocation, held-block, exhaustion and flow
 * records, asks for blocks only for its node, reads only its node's desired state (and the
 * cluster's identities, which its flows name, and Pod records, whose headers carry the trace a
 * CNI call joins), and administers no stream.
 */
export function agentPermissions(node: string): SubjectPermissions {
  const n = encodeToken(node);
  const legacySlots = `$KV.${IPAM_KV_BUCKET}.slot.${n}.*`;
  return {
    publish: [
      `${JS_API}.INFO`,
      `${JS_API}.STREAM.INFO.*`,
      readOnly(IPAM_NODES_STREAM, ipamNodeSubject(node)),
      readOnly(IPAM_ALLOCATIONS_STREAM, ipamAllocFilter(node)),
      readOnly(AGENT_STREAM, agentEndpointFilter(node)),
      readOnly(ROUTER_STREAM, routerNodeFilter(node)),
      readOnly(NODE_DESIRED_STREAM, `${NODE_DESIRED_SUBJECT_ROOT}.${n}.>`),
      readOnly(POLICY_STREAM, PolicyFilter.identities),
      // A CNI call joins its pod's trace: kube-bridge's Pod record carries the span context
      // (Pod objects only, no other kind; read, never written).
      readOnly(K8S_STREAM, k8sKindFilter('Pod')),
      // Adopting the slots an agent of an older version kept in ipam's bucket.
      readOnly(`KV_${IPAM_KV_BUCKET}`, legacySlots),
      `${JS_API}.DIRECT.GET.KV_${IPAM_KV_BUCKET}.${legacySlots}`,
      // Fetching from, asking about and deleting a consumer by name: names are random.
      `${JS_API}.CONSUMER.INFO.*.*`,
      `${JS_API}.CONSUMER.DELETE.*.*`,
      `${JS_API}.CONSUMER.MSG.NEXT.*.*`,
      '$JS.ACK.>',
      deadLetterSubject(AGENT_SERVICE),
      `${AGENT_SUBJECT_ROOT}.endpoint.${n}.>`,
      `${IpamSubject.alloc}.${n}.*`,
      `${IpamSubject.held}.${n}`,
      `${IpamSubject.grow}.${n}`,
      `${IpamSubject.events}.exhausted.${n}`,
      `${FLOW_SUBJECT_ROOT}.${n}.>`,
    ],
    // told by `dyad uninstall` to take Dyad off its node, and answering it
    subscribe: [uninstallSubject(node)],
    allowResponses: true,
  };
}

/** Every identity of a cluster with these nodes, by name: the lab's and the chart's set. */
export function clusterIdentities(nodes: readonly string[]): Map<string, SubjectPermissions> {
  const out = new Map<string, SubjectPermissions>();
  for (const id of Object.values(ServiceIdentity)) out.set(id, servicePermissions(id));
  for (const node of nodes) out.set(agentIdentity(node), agentPermissions(node));
  return out;
}
