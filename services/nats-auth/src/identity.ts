import {
  ServiceIdentity,
  agentIdentity,
  agentPermissions,
  inboxPermission,
  servicePermissions,
} from '@dyad/contracts';
import type { SubjectPermissions } from '@dyad/contracts';

/** What a TokenReview says about a token (the parts Dyad reads). */
export interface ReviewedToken {
  readonly authenticated: boolean;
  /** `system:serviceaccount:<namespace>:<name>` for a ServiceAccount token. */
  readonly username?: string | undefined;
  /** The token's pod binding: `authentication.kubernetes.io/node-name` and others. */
  readonly extra?: Readonly<Record<string, readonly string[]>> | undefined;
  readonly error?: string | undefined;
}

/** The key a bound token's node sits under in the review's `user.extra` (Kubernetes 1.30+). */
export const NODE_NAME_EXTRA = 'authentication.kubernetes.io/node-name';

/**
 * The Dyad ServiceAccounts (the chart's names, in the release namespace) and who they are on the
 * bus. `dyad-agent` is not here: its identity is its pod's node. Any other account, including
 * kube-bridge's other users and this callout's own, is refused.
 */
export const SERVICE_ACCOUNTS: Readonly<Record<string, ServiceIdentity>> = {
  'dyad-kube-bridge': ServiceIdentity.kubeBridge,
  'dyad-ipam': ServiceIdentity.ipam,
  'dyad-router': ServiceIdentity.router,
  'dyad-policy': ServiceIdentity.policy,
  // the one holder of the bootstrap identity: creates (and recreates) streams and buckets
  'dyad-bootstrap': ServiceIdentity.bootstrap,
  // helm's pre-delete hook Job (`dyad uninstall`)
  'dyad-uninstall': ServiceIdentity.uninstall,
  // not created by the chart: for third-party tools reading flows, and for operators (the dyad
  // CLI, read-only); create the account and a token for the NATS audience
  'dyad-observer': ServiceIdentity.observer,
  'dyad-operator': ServiceIdentity.operator,
};
export const AGENT_SERVICE_ACCOUNT = 'dyad-agent';

export type Admission =
  | {
      readonly admitted: true;
      readonly identity: string;
      readonly permissions: SubjectPermissions;
    }
  | { readonly admitted: false; readonly reason: string };

/**
 * Who a reviewed token is on the bus, with exactly the permissions `@dyad/contracts` defines
 * (and its own inbox, named by the identity): pure, so every case is a unit test.
 */
export function admit(review: ReviewedToken, namespace: string): Admission {
  if (!review.authenticated) {
    return { admitted: false, reason: `token not authenticated: ${review.error ?? 'no reason'}` };
  }
  const prefix = `system:serviceaccount:${namespace}:`;
  const user = review.username ?? '';
  if (!user.startsWith(prefix)) {
    return { admitted: false, reason: `${user || 'an unnamed user'} is no Dyad ServiceAccount` };
  }
  const account = user.slice(prefix.length);
  if (account === AGENT_SERVICE_ACCOUNT) {
    const nodes = review.extra?.[NODE_NAME_EXTRA] ?? [];
    const node = nodes[0];
    if (nodes.length !== 1 || node === undefined || node === '') {
      return {
        admitted: false,
        reason: `${user}: the token is not bound to a pod on a node (${NODE_NAME_EXTRA})`,
      };
    }
    return withInbox(agentIdentity(node), agentPermissions(node));
  }
  const service = SERVICE_ACCOUNTS[account];
  if (service === undefined) {
    return { admitted: false, reason: `${user} is no Dyad ServiceAccount` };
  }
  return withInbox(service, servicePermissions(service));
}

function withInbox(identity: string, p: SubjectPermissions): Admission {
  return {
    admitted: true,
    identity,
    permissions: { ...p, subscribe: [...p.subscribe, inboxPermission(identity)] },
  };
}
