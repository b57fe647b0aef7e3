import { prefixContains } from '@dyad/netaddr';
import type { IpamNodeEvent } from './ipam.ts';
import type { PayloadOf } from './contract.ts';

/**
 * Why a node's record is refused, with its dead-letter reason code: the record names another node
 * than its subject, or claims an address outside the node's blocks.
 */
export interface NodeClaimProblem {
  readonly reason: 'subject-mismatch' | 'outside-node-blocks';
  readonly detail: string;
}

/**
 * Whether a node's agent may say this. nats-server lets an agent publish only under its own
 * node's subjects, so the subject's node is the authority on who wrote a record; the payload must
 * name the same node, and every address it claims must lie in one of that node's blocks as ipam
 * assigned them (`blocks`, CIDRs; empty: none yet), or one agent could claim another node's pod
 * addresses. Every consumer of node-published records (endpoints, allocations, flows) asks this
 * one function.
 */
export function nodeClaimProblem(
  subjectNode: string,
  recordNode: string,
  addresses: readonly (string | undefined)[],
  blocks: readonly string[],
): NodeClaimProblem | undefined {
  if (subjectNode !== recordNode)
    return {
      reason: 'subject-mismatch',
      detail: `the subject names node ${subjectNode}, the record ${recordNode}`,
    };
  for (const address of addresses) {
    if (address === undefined) continue;
    if (!blocks.some((cidr) => prefixContains(cidr, address)))
      return {
        reason: 'outside-node-blocks',
        detail: `${address} is not in a block of node ${subjectNode} (${blocks.length === 0 ? 'none assigned' : blocks.join(', ')})`,
      };
  }
  return undefined;
}

/** Each node's blocks (CIDRs) from ipam's node records; a deleted node has none. */
export function nodeBlocks(
  records: Iterable<PayloadOf<typeof IpamNodeEvent>>,
): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of records) out.set(r.node, r.op === 'upsert' ? r.blocks.map((b) => b.cidr) : []);
  return out;
}
