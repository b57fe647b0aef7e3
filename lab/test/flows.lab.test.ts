// Flows in the lab: a pod whose NetworkPolicy admits nothing refuses a connection from a pod on
// another node, and `dyad observe --verdict dropped` (cluster-wide, from NATS) shows that drop
// with both pods' names, for IPv4 and for IPv6.
import { setTimeout as sleep } from 'node:timers/promises';
import type { FlowEventValue } from '@dyad/contracts';
import { afterAll, beforeAll, describe, expect, it, test } from 'vitest';
import { TestLab, labRequired, labSkipReason, podManifest } from './helpers.ts';

const skip = labSkipReason();
if (skip && labRequired()) test('lab tier is required', () => expect.fail(skip));

const PORT = 8080;
const NS = 'flows';
/** Policy reaches the node a moment after the apiserver has it; flows reach NATS after the drop. */
const DEADLINE_MS = 60_000;

describe.skipIf(skip !== undefined)('lab: policy drops in dyad observe', () => {
  const lab = new TestLab('flows');

  beforeAll(async () => {
    const state = await lab.up(['--nodes', '2']);
    lab.env['NATS_URL'] = state.natsUrl;
    // A third-party tool's view: the observer identity, which reads flows and nothing else.
    lab.env['NATS_CREDS'] = `${state.natsCreds}/observer.creds`;
    lab.env['NATS_CA'] = state.natsCa;
    lab.kubectl(['create', 'namespace', NS]);
    lab.kubectl(
      ['apply', '-f', '-'],
      podManifest(
        [
          { namespace: NS, name: 'client', node: 'node-1' },
          { namespace: NS, name: 'server', node: 'node-2' },
        ],
        PORT,
      ),
    );
    await lab.waitPods([`${NS}/client`, `${NS}/server`], 2);
    lab.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: 'deny-ingress', namespace: NS },
        spec: { podSelector: { matchLabels: { app: 'server' } }, policyTypes: ['Ingress'] },
      }),
    );
  }, 600_000);

  afterAll(async () => {
    await lab.down();
  }, 120_000);

  it.each(['IPv4', 'IPv6'] as const)(
    '%s: the refused connection is a dropped flow naming both pods',
    async (family) => {
      const until = Date.now() + DEADLINE_MS;
      for (;;) {
        const [r] = await lab.probeBatch(
          [{ from: `${NS}/client`, to: `${NS}/server`, port: PORT, protocol: 'TCP', family }],
          1000,
        );
        const out = lab.dyad([
          'observe',
          '--verdict',
          'dropped',
          '--namespace',
          NS,
          '--family',
          family,
          '--last',
          '50',
          '-o',
          'json',
        ]);
        expect(out.status, out.stderr).toBe(0);
        const seen = out.stdout
          .split('\n')
          .filter((l) => l !== '')
          .map((l) => JSON.parse(l) as FlowEventValue);
        const hit = seen.find(
          (f) => f.source.pod_name === 'client' && f.destination.pod_name === 'server',
        );
        if (r?.result === 'blocked' && hit) {
          expect(hit).toMatchObject({
            verdict: 'DROPPED',
            drop_reason_desc: 'POLICY_DENIED',
            traffic_direction: 'INGRESS',
            node_name: 'node-2',
            IP: { ipVersion: family },
            l4: { TCP: { destination_port: PORT, flags: { SYN: true } } },
            source: { namespace: NS, pod_name: 'client' },
            destination: { namespace: NS, pod_name: 'server' },
          });
          expect(hit.destination.labels).toContain('k8s:app=server');
          return;
        }
        if (Date.now() > until)
          throw new Error(`no dropped ${family} flow client -> server: ${JSON.stringify(seen)}`);
        await sleep(500);
      }
    },
    DEADLINE_MS + 30_000,
  );
});
