import { describe, expect, it } from 'vitest';
import type { RouterServiceEntryValue } from '@dyad/contracts';
import { LbBackendFlags, LbServiceFlags, LbConst } from '@dyad/libbpf-ts';
import { LbIds, desiredLb } from '../src/datapath/desired-lb.ts';

const svc = (over: Partial<RouterServiceEntryValue> = {}): RouterServiceEntryValue => ({
  namespace: 'shop',
  name: 'web',
  frontends: [
    {
      family: 'IPv4',
      address: '198.18.96.10',
      port: 80,
      protocol: 'TCP',
      portName: '',
      backends: [
        { address: '198.18.1.5', port: 8080, state: 'ready' },
        { address: '198.18.2.5', port: 8080, state: 'terminating' },
      ],
    },
    {
      family: 'IPv6',
      address: 'fd00:96::a',
      port: 80,
      protocol: 'TCP',
      portName: '',
      backends: [],
    },
  ],
  internalTrafficPolicy: 'Cluster',
  problems: [],
  ...over,
});

describe('desiredLb', () => {
  it('one frontend entry and Maglev table per cluster IP and port; terminating backends kept out of the table', () => {
    const ids = new LbIds();
    const d = desiredLb({ synced: true, entries: new Map([['shop/web', svc()]]) }, ids);
    expect(d.services).toHaveLength(2);
    const [k4, v4] = d.services[0] ?? [];
    expect(k4).toEqual({ address: '198.18.96.10', port: 80, protocol: 'TCP' });
    expect(v4).toMatchObject({ backends: 1, flags: 0 });
    expect(d.services[1]?.[1]).toMatchObject({ backends: 0 });
    const ready = ids.backend('198.18.1.5|8080');
    const term = ids.backend('198.18.2.5|8080');
    expect(d.backends).toEqual(
      expect.arrayContaining([
        [ready, { address: '198.18.1.5', port: 8080, flags: 0 }],
        [term, { address: '198.18.2.5', port: 8080, flags: LbBackendFlags.TERMINATING }],
      ]),
    );
    const table = d.maglev.find(([id]) => id === v4?.id)?.[1] ?? [];
    expect(table).toHaveLength(LbConst.MAGLEV_M);
    expect(new Set(table)).toEqual(new Set([ready]));
    expect(d.maglev.find(([id]) => id === d.services[1]?.[1].id)?.[1].every((x) => x === 0)).toBe(
      true,
    );
  });

  it('NodePort frontends carry the NODEPORT flag, and LOCAL with externalTrafficPolicy Local', () => {
    const np = (etp: 'Cluster' | 'Local', port: number) => ({
      family: 'IPv4' as const,
      address: '198.19.7.11',
      port,
      protocol: 'UDP' as const,
      portName: '',
      backends: [{ address: '198.18.1.5', port: 8080, state: 'ready' as const }],
      type: 'NodePort' as const,
      externalTrafficPolicy: etp,
    });
    const d = desiredLb(
      {
        synced: true,
        entries: new Map([
          ['shop/web', svc({ frontends: [np('Cluster', 30080), np('Local', 30081)] })],
        ]),
      },
      new LbIds(),
    );
    expect(d.services.map(([k, v]) => [k.port, v.flags, v.backends])).toEqual([
      [30080, LbServiceFlags.NODEPORT, 1],
      [30081, LbServiceFlags.NODEPORT | LbServiceFlags.LOCAL, 1],
    ]);
  });

  it('affinity sets the flag and timeout', () => {
    const d = desiredLb(
      { synced: true, entries: new Map([['shop/web', svc({ affinityTimeoutSeconds: 30 })]]) },
      new LbIds(),
    );
    expect(d.services[0]?.[1]).toMatchObject({
      affinityTimeoutS: 30,
      flags: LbServiceFlags.AFFINITY,
    });
  });

  it('ids stay the same from pass to pass, follow a seed, and are never handed out twice', () => {
    const ids = new LbIds();
    ids.seed('frontend', '198.18.96.10|80|TCP', 40);
    const state = { synced: true, entries: new Map([['shop/web', svc()]]) };
    const a = desiredLb(state, ids);
    const b = desiredLb(state, ids);
    expect(a).toEqual(b);
    expect(a.services[0]?.[1].id).toBe(40);
    const used = new Set([...a.services.map(([, v]) => v.id), ...a.backends.map(([id]) => id)]);
    expect(used.size).toBe(a.services.length + a.backends.length);
    ids.retain(new Set(), new Set());
    const c = desiredLb(state, ids);
    for (const [, v] of c.services) expect(used.has(v.id)).toBe(false);
  });

  it('two Services claiming one frontend: the first by namespace/name keeps it', () => {
    const claim = {
      family: 'IPv6' as const,
      address: 'fd00:96::a',
      port: 80,
      protocol: 'TCP' as const,
      portName: '',
      backends: [{ address: 'fd00:18:1::5', port: 8080, state: 'ready' as const }],
    };
    const d = desiredLb(
      {
        synced: true,
        entries: new Map([
          ['shop/zz', svc({ name: 'zz', frontends: [claim] })],
          ['shop/aa', svc({ name: 'aa' })],
        ]),
      },
      new LbIds(),
    );
    const v6 = d.services.find(([k]) => k.address === 'fd00:96::a');
    expect(d.services).toHaveLength(2);
    // aa's frontend has no backend; zz's would have one
    expect(v6?.[1].backends).toBe(0);
  });
});
