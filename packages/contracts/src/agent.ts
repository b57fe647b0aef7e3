import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { Ipv4Address, Ipv6Address } from './family.ts';
import type { StreamSpec } from './streams.ts';
import { decodeToken, encodeToken } from './subjects.ts';

/**
 * The datapath agent (one per node): what it reports about the pods it wired up, and the
 * node-scoped subjects of what it is given (the pod policy's message is policy.ts's). Its ipcache comes from the router's node-scoped subjects
 * (router.ts), its addresses from IPAM (ipam.ts); it never talks to the Kubernetes API.
 */

export const AGENT_SUBJECT_ROOT = 'dyad.agent.v1';
export const AGENT_STREAM = 'DYAD_AGENT';
export const NODE_DESIRED_SUBJECT_ROOT = 'dyad.node.v1';
export const NODE_DESIRED_STREAM = 'DYAD_NODE';

/** `dyad.agent.v1.endpoint.<node>.<containerId>.<ifName>`: one subject per attachment. */
export function agentEndpointSubject(node: string, containerId: string, ifName: string): string {
  return `${AGENT_SUBJECT_ROOT}.endpoint.${encodeToken(node)}.${encodeToken(containerId)}.${encodeToken(ifName)}`;
}

/** Every endpoint report of one node (`dyad.agent.v1.endpoint.<node>.>`), or of every node. */
export function agentEndpointFilter(node?: string): string {
  return `${AGENT_SUBJECT_ROOT}.endpoint.${node === undefined ? '*' : encodeToken(node)}.>`;
}

/** The inverse of `agentEndpointSubject`; undefined for any other subject. */
export function parseAgentEndpointSubject(
  subject: string,
): { node: string; containerId: string; ifName: string } | undefined {
  const root = `${AGENT_SUBJECT_ROOT}.endpoint.`;
  if (!subject.startsWith(root)) return undefined;
  const t = subject.slice(root.length).split('.');
  const [node, containerId, ifName] = t;
  return t.length === 3 && node && containerId && ifName
    ? {
        node: decodeToken(node),
        containerId: decodeToken(containerId),
        ifName: decodeToken(ifName),
      }
    : undefined;
}

/** `dyad.node.v1.<node>.policy.<namespace>.<name>`: the policy of one pod's endpoints there. */
export function nodePolicySubject(node: string, namespace: string, name: string): string {
  return `${NODE_DESIRED_SUBJECT_ROOT}.${encodeToken(node)}.policy.${encodeToken(namespace)}.${encodeToken(name)}`;
}

/** The inverse of `nodePolicySubject`; undefined for any other subject. */
export function parseNodePolicySubject(
  subject: string,
): { node: string; namespace: string; name: string } | undefined {
  const root = `${NODE_DESIRED_SUBJECT_ROOT}.`;
  if (!subject.startsWith(root)) return undefined;
  const t = subject.slice(root.length).split('.');
  const [node, kind, namespace, name] = t;
  return t.length === 4 && kind === 'policy' && node && namespace && name
    ? { node: decodeToken(node), namespace: decodeToken(namespace), name: decodeToken(name) }
    : undefined;
}

const Identity = z.number().int().min(0).max(0xffffffff);

/** What one endpoint is: a pod sandbox's interface on this node, with its datapath state. */
export const EndpointState = z.object({
  node: z.string().min(1),
  containerId: z.string().min(1),
  ifName: z.string().min(1),
  /** Node-local number; keys the policy map. */
  endpointId: z.number().int().min(1).max(0xffffffff),
  /** CNI network name (the .conflist `name`). */
  network: z.string().min(1),
  pod: z.object({
    namespace: z.string().min(1),
    name: z.string().min(1),
    uid: z.string().min(1).optional(),
  }),
  ipv4: Ipv4Address.optional(),
  ipv6: Ipv6Address.optional(),
  /** Pod-side MAC. */
  mac: z.string(),
  hostIfName: z.string().min(1),
  hostIfindex: z.number().int().min(1),
  /** Host-side MAC: the pod's gateway neighbour. */
  hostMac: z.string(),
  identity: Identity,
  /** The pod's network namespace path (CNI_NETNS): lets the agent rebuild after losing its state. */
  netns: z.string().min(1).optional(),
  /** The pod interface's MTU. */
  mtu: z.number().int().min(68).max(65535).optional(),
  policy: z.object({
    ingress: z.enum(['enforcing', 'disabled']),
    egress: z.enum(['enforcing', 'disabled']),
  }),
  createdAt: z.iso.datetime(),
});

export const EndpointReport = defineMessage({
  type: 'io.dyad.agent.endpoint.v1',
  version: 1,
  schema: z.discriminatedUnion('op', [
    z.object({ op: z.literal('upsert'), endpoint: EndpointState }),
    z.object({ op: z.literal('delete'), endpoint: EndpointState }),
  ]),
  description:
    'A node agent wired up (upsert) or removed (delete, with the last state) a pod endpoint; last value per endpoint.',
  subjectPattern: `${AGENT_SUBJECT_ROOT}.endpoint.{node}.{containerId}.{ifName}`,
  stream: AGENT_STREAM,
});

export const AgentStream: StreamSpec = {
  name: AGENT_STREAM,
  description:
    'Pod endpoints as node agents wired them: last value per endpoint, deletes as tombstones.',
  subjects: [`${AGENT_SUBJECT_ROOT}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export const NodeDesiredStream: StreamSpec = {
  name: NODE_DESIRED_STREAM,
  description:
    "Desired datapath state per node that is not the router's (pod policy): last value per subject.",
  subjects: [`${NODE_DESIRED_SUBJECT_ROOT}.>`],
  storage: 'file',
  maxMsgsPerSubject: 1,
  allowMsgTtl: true,
  duplicateWindowMs: 120_000,
};

export type EndpointStateValue = z.output<typeof EndpointState>;
