import { z } from 'zod';
import { defineMessage } from './contract.ts';
import { K8sName } from './ipam.ts';
import { REPLY_INBOX } from './reply.ts';
import { encodeToken } from './subjects.ts';

/**
 * Removing Dyad from the nodes (`helm uninstall`'s pre-delete hook runs `dyad uninstall`). An
 * agent cannot tell an uninstall from a rolling restart by its SIGTERM, so it is told: one
 * request per node, answered once the agent has taken everything it put on its node away.
 *
 * Its own root, outside every stream's subjects: a request on a subject a stream captures would
 * be stored and answered by JetStream's acknowledgement.
 */
export const UNINSTALL_SUBJECT_ROOT = 'dyad.uninstall.v1';

/** `dyad.uninstall.v1.<node>`: the node's agent removes Dyad from its node (request/reply). */
export function uninstallSubject(node: string): string {
  return `${UNINSTALL_SUBJECT_ROOT}.${encodeToken(node)}`;
}

/** Every node's uninstall requests: `dyad.uninstall.v1.*`. */
export const UNINSTALL_FILTER = `${UNINSTALL_SUBJECT_ROOT}.*`;

export const UninstallRequest = defineMessage({
  type: 'io.dyad.agent.uninstall.v1',
  version: 1,
  schema: z.object({ node: K8sName }),
  description:
    "Dyad is being removed from the cluster: the node's agent removes its conflist, tc programs, pod devices, node routes, pins, the plugin binary and its directories, and answers. Never sent for a restart or upgrade.",
  subjectPattern: `${UNINSTALL_SUBJECT_ROOT}.{node}`,
});

export const UninstallReply = defineMessage({
  type: 'io.dyad.agent.uninstalled.v1',
  version: 1,
  schema: z.object({
    node: K8sName,
    /** What was removed, in order (e.g. `conflist /host/etc/cni/net.d/05-dyad.conflist`). */
    removed: z.array(z.string()),
    /** What could not be removed, with the reason; empty when the node is clean. */
    problems: z.array(z.string()),
  }),
  description:
    'The answer to an uninstall request: what the agent removed from its node, and what it could not. An agent asked again answers again (with less removed).',
  subjectPattern: REPLY_INBOX,
});
