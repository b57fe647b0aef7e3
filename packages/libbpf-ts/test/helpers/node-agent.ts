// A minimal node agent for the lab: run inside a node's netns, it loads the datapath (reusing
// pinned maps), attaches programs by ifindex, fills maps, prints one JSON line and exits.
// Programs stay attached and maps stay pinned after it is gone.
import { z } from 'zod';
import { Libbpf, loadDatapath, policyKeys, PolicyAction } from '../../src/index.ts';

const Spec = z.object({
  pinDir: z.string(),
  objectPath: z.string().optional(),
  /** entries of each endpoint's conntrack table */
  ctEntries: z.number().int().positive().optional(),
  attach: z
    .array(
      z.object({
        ifindex: z.number().int(),
        program: z.enum(['fromContainer', 'toContainer', 'fromNetdev']),
        direction: z.enum(['ingress', 'egress']),
      }),
    )
    .default([]),
  endpoints: z
    .array(
      z.object({
        address: z.string(),
        ifindex: z.number().int(),
        endpointId: z.number().int(),
        identity: z.number().int(),
        flags: z.number().int(),
        mac: z.string(),
        nodeMac: z.string(),
      }),
    )
    .default([]),
  ipcache: z
    .array(
      z.object({
        prefix: z.string(),
        identity: z.number().int(),
        nodeId: z.number().int().default(0),
        nodeAddress: z.string().optional(),
        flags: z.number().int().default(0),
      }),
    )
    .default([]),
  policy: z
    .array(
      z.object({
        endpointId: z.number().int(),
        identity: z.number().int(),
        direction: z.enum(['ingress', 'egress']),
        proto: z.number().int().optional(),
        ports: z
          .union([z.number().int(), z.object({ from: z.number().int(), to: z.number().int() })])
          .optional(),
      }),
    )
    .default([]),
  config: z
    .object({
      flags: z.number().int().default(0),
      ct_tcp_s: z.number().int().default(0),
      ct_tcp_close_s: z.number().int().default(0),
      ct_udp_s: z.number().int().default(0),
      ct_icmp_s: z.number().int().default(0),
    })
    .optional(),
});

const spec = Spec.parse(JSON.parse(process.argv[2] ?? '{}'));
const lib = Libbpf.open();
const dp = loadDatapath(lib, {
  pinDir: spec.pinDir,
  ...(spec.objectPath ? { objectPath: spec.objectPath } : {}),
});
try {
  if (spec.config) dp.maps.config.update(0, spec.config);
  for (const e of spec.endpoints) {
    const { address, ...info } = e;
    // the table first: the datapath tracks no flow of an endpoint without one
    dp.maps.conntrack.ensure(info.endpointId, spec.ctEntries);
    dp.maps.endpoints.update({ address }, info);
  }
  for (const e of spec.ipcache) {
    const { prefix, ...info } = e;
    dp.maps.ipcache.update({ prefix }, info);
  }
  for (const rule of spec.policy) {
    for (const key of policyKeys(rule))
      dp.maps.policy.update(key, { action: PolicyAction.ALLOW, ruleId: 1 });
  }
  const attachments = spec.attach.map((a) =>
    lib.tc.attach(dp[a.program].fd, { ifindex: a.ifindex, direction: a.direction, replace: true }),
  );
  process.stdout.write(`${JSON.stringify({ attachments })}\n`);
} finally {
  dp.close();
}
