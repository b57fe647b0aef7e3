import { parseAgentEndpointSubject } from '@dyad/contracts';
import type { EndpointStateValue } from '@dyad/contracts';
import { prefixContains } from './ip.ts';

/** Why an endpoint report is refused: the reason code and what was wrong. */
export interface EndpointProblem {
  readonly reason: 'subject-mismatch' | 'outside-node-blocks';
  readonly detail: string;
}

/**
 * Whether a node's agent may say this about one of its pods. nats-server lets an agent publish
 * only under its own node's subjects, so the subject is the authority on who wrote it; the
 * payload must name the same node and attachment, and every address must lie in one of that
 * node's blocks, or one agent could claim another pod's address cluster-wide. `blocks` are the
 * node's pod CIDRs as ipam assigned them (empty: none yet).
 */
export function endpointProblem(
  subject: string,
  ep: EndpointStateValue,
  blocks: readonly string[],
  op: 'upsert' | 'delete',
): EndpointProblem | undefined {
  const s = parseAgentEndpointSubject(subject);
  if (s === undefined) {
    return { reason: 'subject-mismatch', detail: `${subject} is not an endpoint subject` };
  }
  if (s.node !== ep.node || s.containerId !== ep.containerId || s.ifName !== ep.ifName) {
    return {
      reason: 'subject-mismatch',
      detail: `the subject names ${s.node}/${s.containerId}/${s.ifName}, the record ${ep.node}/${ep.containerId}/${ep.ifName}`,
    };
  }
  // A delete removes what this subject held, whatever addresses it names.
  if (op === 'delete') return undefined;
  for (const address of [ep.ipv4, ep.ipv6]) {
    if (address === undefined) continue;
    if (!blocks.some((cidr) => prefixContains(cidr, address))) {
      return {
        reason: 'outside-node-blocks',
        detail: `${address} is not in a block of node ${ep.node} (${blocks.length === 0 ? 'none assigned' : blocks.join(', ')})`,
      };
    }
  }
  return undefined;
}
