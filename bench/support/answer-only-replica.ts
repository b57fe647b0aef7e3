// The floor under any ipam design, for `npm run bench -- ipam`: a replica that decodes each
// allocate request, answers it with a made-up pair and publishes the allocation event, through
// @dyad/bus like ipam, but allocates nothing and writes nothing. Prints "ready" when serving.
import { connectBus } from '@dyad/bus';
import {
  AddressesAllocated,
  AllocateRequest,
  Allocation,
  IpamEventKind,
  IpamSubject,
  ipamEventSubject,
} from '@dyad/contracts';
import { createLogger, createMetrics } from '@dyad/telemetry';

const url = process.env['NATS_URL'];
if (url === undefined) throw new Error('NATS_URL is not set');
const bus = await connectBus({
  servers: url,
  name: 'ipam-answer-only',
  logger: createLogger({ service: 'ipam-answer-only', level: 'silent' }),
  registry: createMetrics({ processMetrics: false }),
});
let n = 0;
bus.serve(
  AllocateRequest,
  IpamSubject.allocate,
  (d) => {
    const r = d.value;
    const i = ++n;
    const addresses = [
      {
        family: 'IPv4' as const,
        address: `198.18.${(i >> 8) & 255}.${i & 255}`,
        cidr: '198.18.0.0/15',
        gateway: '198.18.0.1',
      },
      {
        family: 'IPv6' as const,
        address: `fd00:d1ad::${i.toString(16)}`,
        cidr: 'fd00:d1ad::/104',
        gateway: 'fd00:d1ad::1',
      },
    ];
    const allocatedAt = new Date().toISOString();
    const owner = {
      node: r.node,
      namespace: r.namespace,
      pod: r.pod,
      podUid: r.podUid,
      containerId: r.containerId,
    };
    bus.publish(AddressesAllocated, ipamEventSubject(IpamEventKind.allocated), {
      ...owner,
      addresses: addresses.map((a) => ({ family: a.family, address: a.address })),
      allocatedAt,
    });
    return Promise.resolve({ ...owner, addresses, allocatedAt });
  },
  Allocation,
  { queue: 'ipam', concurrency: 1024 },
);
await bus.flush();
console.log('ready');
