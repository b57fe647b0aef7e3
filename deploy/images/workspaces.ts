/**
 * The workspaces whose production dependencies and sources the image carries: the services, the
 * CLI, and every workspace they depend on (deploy/test/image-workspaces.test.ts checks that list
 * against the package.json files: a missing one fails only at a service's start in a cluster).
 */
export const IMAGE_WORKSPACES = [
  'services/bootstrap',
  'services/datapath-agent',
  'services/ipam',
  'services/kube-bridge',
  'services/router',
  'services/policy',
  'services/nats-auth',
  'packages/bus',
  'packages/cli',
  'packages/contracts',
  'packages/libbpf-ts',
  'packages/netaddr',
  'packages/service',
  'packages/telemetry',
] as const;
