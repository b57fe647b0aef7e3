// The Grafana dashboard reads only metrics that exist: every metric name in its queries is
// registered by some service (their metric factories, on fresh registries).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busMetrics } from '@dyad/bus';
import { createAgentMetrics, createReconcileHistogram } from '@dyad/datapath-agent';
import { createIpamMetrics } from '@dyad/ipam';
import { createBridgeMetrics } from '@dyad/kube-bridge';
import { createPolicyMetrics } from '@dyad/policy';
import { createRouterMetrics } from '@dyad/router';
import { createMetrics } from '@dyad/telemetry';
import type { Registry } from '@dyad/telemetry';
import { describe, expect, it } from 'vitest';

const DASHBOARD = join(import.meta.dirname, '..', 'dashboards', 'dyad.json');

interface Dashboard {
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
}

/** Histograms are queried through their series: `x_bucket`, `x_sum`, `x_count` are `x`. */
function metricNames(expr: string): string[] {
  const names = expr.match(/\bdyad_[a-z0-9_]+/g) ?? [];
  return names.map((n) => n.replace(/_(bucket|sum|count)$/, ''));
}

function registries(): Registry[] {
  const one = (make: (r: Registry) => unknown): Registry => {
    const r = createMetrics({ processMetrics: false });
    make(r);
    return r;
  };
  // The agent's gauges read these only when scraped; registering needs none of them.
  const unused = {} as never;
  return [
    one((r) => busMetrics(r)),
    one((r) => createIpamMetrics(r)),
    one((r) => createBridgeMetrics(r)),
    one((r) => createPolicyMetrics(r)),
    one((r) => createRouterMetrics(r)),
    one((r) => {
      createReconcileHistogram(r);
      createAgentMetrics(r, unused, unused, unused, 'node');
    }),
  ];
}

describe('deploy/dashboards/dyad.json', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const queried = new Set(
    dashboard.panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr))),
  );

  it('queries the metrics the issue asks an operator to graph', () => {
    for (const name of [
      'dyad_bus_messages_handled_total',
      'dyad_bus_messages_published_total',
      'dyad_bus_dead_letters_total',
      'dyad_agent_pod_addresses',
      'dyad_agent_map_entries',
      'dyad_agent_map_capacity',
      'dyad_datapath_drops_total',
      'dyad_agent_cni_duration_seconds',
      'dyad_agent_reconcile_seconds',
    ])
      expect(queried, name).toContain(name);
  });

  it('every metric it queries is registered by some service', () => {
    const regs = registries();
    const missing = [...queried].filter((n) => !regs.some((r) => r.getSingleMetric(n)));
    expect(missing).toEqual([]);
  });

  it('a query of a metric nobody registers is caught', () => {
    const regs = registries();
    expect(regs.some((r) => r.getSingleMetric('dyad_agent_no_such_metric'))).toBe(false);
  });
});
