// NetworkPolicy conformance in the lab: the upstream e2e model (namespaces x, y, z; pods a, b, c;
// TCP and UDP on 80 and 81), every case probed over IPv4 and IPv6 in one batch and compared with
// its hand-written truth table. A case passes once the whole matrix matches (policy reaches the
// nodes a moment after the apiserver has it); a case that does not match within the deadline
// fails with the matrices a person can read.
import { FAMILIES } from '@dyad/netaddr';
import type { Family } from '@dyad/netaddr';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import type { ProbeReply } from './helpers.ts';
import { TestLab, labRequired, labSkipReason } from './helpers.ts';
import { CASES } from './netpol/cases.ts';
import type { CaseContext, Probe, Step } from './netpol/model.ts';
import {
  PODS,
  TCP80,
  UDP80,
  mismatches,
  namespaceManifests,
  podManifests,
  probeLines,
  refOf,
  renderFailures,
} from './netpol/model.ts';

const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

/** How long a step may take to be enforced on every node before it counts as failed. */
const CONVERGE_MS = 30_000;

describe.skipIf(skip !== undefined)(
  'NetworkPolicy conformance (upstream model, both families)',
  () => {
    const lab = new TestLab('netpol');
    let ctx: CaseContext;
    /** Names of the policies the previous step left, so the next removes what it does not keep. */
    let applied = new Set<string>();

    async function converge(
      truthOf: Step['truth'],
      probes: readonly Probe[],
    ): Promise<{ replies: ProbeReply[]; rounds: number }> {
      const truth = truthOf(ctx);
      const lines = probeLines(FAMILIES, probes);
      const until = Date.now() + CONVERGE_MS;
      for (let rounds = 1; ; rounds++) {
        const replies = await lab.probeBatch(lines, 1000);
        if (replies.length !== lines.length)
          throw new Error(`batch answered ${replies.length} of ${lines.length} lines`);
        if (mismatches(replies, truth).length === 0 || Date.now() > until)
          return { replies, rounds };
        await sleep(250);
      }
    }

    function applyPolicies(policies: readonly object[]): void {
      const names = new Set(policies.map((p) => policyKey(p)));
      for (const old of applied) {
        if (names.has(old)) continue;
        const [ns, name] = old.split('/');
        lab.kubectl(['delete', 'networkpolicy', '-n', ns ?? '', name ?? '', '--wait=false']);
      }
      if (policies.length > 0)
        lab.kubectl(
          ['apply', '-f', '-'],
          JSON.stringify({ apiVersion: 'v1', kind: 'List', items: policies }),
        );
      applied = names;
    }

    beforeAll(async () => {
      const state = await lab.up(['--nodes', '3']);
      lab.kubectl(['apply', '-f', '-'], namespaceManifests());
      lab.kubectl(['apply', '-f', '-'], podManifests());
      const records = await lab.waitPods(PODS.map(refOf), 2);
      const addresses = new Map<string, Partial<Record<Family, string>>>();
      for (const [ref, r] of records) {
        const byFamily: Partial<Record<Family, string>> = {};
        for (const ip of r.podIPs) byFamily[ip.includes(':') ? 'IPv6' : 'IPv4'] = ip;
        addresses.set(ref, byFamily);
      }
      ctx = { addresses, pools: state.podPools };
      // Before any policy every pair connects: the baseline every case's truth starts from.
      const base = await converge(() => () => true, [TCP80, UDP80]);
      expect(renderFailures(base.replies, () => true, FAMILIES, [TCP80, UDP80])).toBe('');
    }, 600_000);

    afterAll(async () => {
      await lab.down();
    }, 120_000);

    for (const c of CASES) {
      it(
        c.name,
        async () => {
          for (const s of c.steps) {
            applyPolicies(s.policies(ctx));
            const { replies } = await converge(s.truth, s.probes);
            const report = renderFailures(replies, s.truth(ctx), FAMILIES, s.probes);
            expect(report, `${c.name}: ${s.what}`).toBe('');
          }
          // Back to no policy, and every pair connects again, before the next case.
          applyPolicies([]);
          const open = await converge(() => () => true, [TCP80]);
          expect(renderFailures(open.replies, () => true, FAMILIES, [TCP80])).toBe('');
        },
        300_000,
      );
    }
  },
);

function policyKey(p: object): string {
  const meta = (p as { metadata?: { namespace?: string; name?: string } }).metadata;
  return `${meta?.namespace ?? ''}/${meta?.name ?? ''}`;
}
