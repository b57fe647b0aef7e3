import { mapListCommand } from './bpf-list.ts';
import { hostPort } from './bpf-lb-list.ts';

/**
 * `dyad service list`: the Services the router gave this node, one line per frontend (cluster
 * IP, or the node's address and nodePort, with the protocol) with its type, its backends and
 * their state, as `cilium-dbg service list`. TRAFFIC POLICY is the internal one for a cluster
 * IP, the external one for a NodePort.
 */
export const serviceListCommand = mapListCommand({
  words: ['service', 'list'],
  summary: "the node's Services: each frontend with its backends (ready or terminating)",
  api: 'services',
  header: [
    'SERVICE',
    'FRONTEND',
    'PROTO',
    'TYPE',
    'BACKENDS',
    'AFFINITY',
    'TRAFFIC POLICY',
    'PROBLEMS',
  ],
  rows: (list) =>
    list.flatMap((s) => {
      const name = `${s.namespace}/${s.name}`;
      const affinity = s.affinityTimeoutSeconds ? `ClientIP ${s.affinityTimeoutSeconds}s` : '-';
      const problems = s.problems.map((p) => p.code).join(',') || '-';
      if (s.frontends.length === 0)
        return [[name, '(headless)', '-', '-', '-', affinity, s.internalTrafficPolicy, problems]];
      return s.frontends.map((f) => [
        name,
        hostPort(f.address, f.port),
        f.protocol,
        f.type ?? 'ClusterIP',
        f.backends.length === 0
          ? f.externalTrafficPolicy === 'Local'
            ? '(none here: dropped)'
            : '(none: refused)'
          : f.backends
              .map(
                (b) =>
                  `${hostPort(b.address, b.port)}${b.state === 'ready' ? '' : ` (${b.state})`}`,
              )
              .join(', '),
        affinity,
        f.type === 'NodePort' ? (f.externalTrafficPolicy ?? 'Cluster') : s.internalTrafficPolicy,
        problems,
      ]);
    }),
});
