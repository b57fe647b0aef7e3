import { nodeClaimProblem, parseAgentEndpointSubject } from '@dyad/contracts';
import type { EndpointStateValue, NodeClaimProblem } from '@dyad/contracts';

/** Why an endpoint report is refused: the reason code and what was wrong. */
export type EndpointProblem = NodeClaimProblem;

/**
 * Whether a node's agent may say this about one of its pods: the payload names the attachment its
 * subject names, and the node may claim its addresses (nodeClaimProblem, @dyad/contracts).
 * `blocks` are the node's pod CIDRs as ipam assigned them (empty: none yet).
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
  if (s.containerId !== ep.containerId || s.ifName !== ep.ifName) {
    return {
      reason: 'subject-mismatch',
      detail: `the subject names ${s.node}/${s.containerId}/${s.ifName}, the record ${ep.node}/${ep.containerId}/${ep.ifName}`,
    };
  }
  // A delete removes what this subject held, whatever addresses it names.
  return nodeClaimProblem(s.node, ep.node, op === 'delete' ? [] : [ep.ipv4, ep.ipv6], blocks);
}
