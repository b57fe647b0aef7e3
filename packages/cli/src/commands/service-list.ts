import { mapListCommand } from './bpf-list.ts';
import { hostPort } from './bpf-lb-list.ts';

/**
 * `dyad service list`: the Services the router gave this node, one line per frontend (cluster
 * IP, port, protocol) with its backends and their state, as `cilium-dbg service list`.
 */
export const serviceListCommand = mapListCommand({
  words: ['service', 'list'],
  summary: "the node's Services: each frontend with its backends (ready or terminating)",
  api: 'services',
  header: ['SERVICE', 'FRONTEND', 'PROTO', 'BACKENDS', 'AFFINITY', 'TRAFFIC POLICY', 'PROBLEMS'],
  rows: (list) =>
    list.flatMap((s) => {
      const name = `${s.namespace}/${s.name}`;
      const affinity = s.affinityTimeoutSeconds ? `ClientIP ${s.affinityTimeoutSeconds}s` : '-';
      const problems = s.problems.map((p) => p.code).join(',') || '-';
      if (s.frontends.length === 0)
        return [[name, '(headless)', '-', '-', affinity, s.internalTrafficPolicy, problems]];
      return s.frontends.map((f) => [
        name,
        hostPort(f.address, f.port),
        f.protocol,
        f.backends.length === 0
          ? '(none: refused)'
          : f.backends
              .map(
                (b) =>
                  `${hostPort(b.address, b.port)}${b.state === 'ready' ? '' : ` (${b.state})`}`,
              )
              .join(', '),
        affinity,
        s.internalTrafficPolicy,
        problems,
      ]);
    }),
});
