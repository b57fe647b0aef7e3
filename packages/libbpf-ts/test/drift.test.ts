import { FamilyVersion } from '@dyad/netaddr';
import { beforeAll, describe, expect, test } from 'vitest';
import {
  ConfigFlags,
  CtFlags,
  Direction,
  EndpointFlags,
  EventFlags,
  EventType,
  Identity,
  IpcacheFlags,
  IpcachePrefix,
  LbBackendFlags,
  LbConst,
  LbRnatFlags,
  LbServiceFlags,
  LbSnatFlags,
  PolicyAction,
  PolicyPrefix,
  PolicyCidrPrefix,
  PolicyClass,
  Reason,
  datapathLayouts,
  datapathMapLayouts,
  fieldSize,
  Libbpf,
} from '../src/index.ts';
import { DATAPATH_OBJECT, ensureBpfBuilt, LAYOUTS_OBJECT } from './helpers/build.ts';

// Needs clang and libbpf (both part of the machine), not root: BTF is read from the ELF files.
describe('TypeScript layouts match the compiled C structs (BTF)', () => {
  let lib: Libbpf;

  beforeAll(() => {
    ensureBpfBuilt();
    lib = Libbpf.open();
  });

  test.each(datapathLayouts.map((l) => [l.cName, l] as const))(
    '%s: size, member names, offsets and sizes',
    (_name, layout) => {
      const btf = lib.readBtfStruct(LAYOUTS_OBJECT, layout.cName);
      expect(btf.members.every((m) => m.bitfieldSize === 0)).toBe(true);
      expect({
        size: btf.size,
        members: btf.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
      }).toEqual({
        size: layout.size,
        members: layout.fields.map((f) => ({ name: f.name, offset: f.offset, size: fieldSize(f) })),
      });
    },
  );

  test('the datapath object’s maps use those sizes', () => {
    using obj = lib.openObject(DATAPATH_OBJECT);
    for (const m of datapathMapLayouts) {
      const info = obj.mapInfo(m.map);
      if (m.key) expect({ map: m.map, key: info.keySize }).toEqual({ map: m.map, key: m.key.size });
      if (m.value)
        expect({ map: m.map, value: info.valueSize }).toEqual({ map: m.map, value: m.value.size });
      const inner = obj.innerMapInfo(m.map);
      expect({
        map: m.map,
        inner: inner && { type: inner.type, key: inner.keySize, value: inner.valueSize },
      }).toEqual({
        map: m.map,
        inner: m.inner && { type: m.inner.type, key: m.inner.key.size, value: m.inner.value.size },
      });
    }
  });
});

/** Each C enum of the contract, the prefix of its names, and the TypeScript object mirroring it. */
const ENUMS: ReadonlyArray<readonly [string, string, Readonly<Record<string, number>>]> = [
  // The family tags are netaddr's FamilyVersion (the one family vocabulary); C spells them V4, V6.
  ['dy_family', 'DY_FAMILY_', { V4: FamilyVersion.IPv4, V6: FamilyVersion.IPv6 }],
  ['dy_direction', 'DY_DIR_', Direction],
  ['dy_identity', 'DY_IDENTITY_', Identity],
  ['dy_endpoint_flags', 'DY_EP_F_', EndpointFlags],
  ['dy_reason', 'DY_REASON_', Reason],
  ['dy_event_type', 'DY_EVENT_', EventType],
  ['dy_event_flags', 'DY_EVENT_F_', EventFlags],
  ['dy_ipcache_prefix', 'DY_IPCACHE_PREFIX_', IpcachePrefix],
  ['dy_ipcache_flags', 'DY_IPCACHE_F_', IpcacheFlags],
  ['dy_policy_prefix', 'DY_POLICY_PREFIX_', PolicyPrefix],
  ['dy_policy_action', 'DY_POLICY_', PolicyAction],
  ['dy_policy_cidr_prefix', 'DY_POLICY_CIDR_PREFIX_', PolicyCidrPrefix],
  ['dy_policy_class', 'DY_POLICY_CLASS_', PolicyClass],
  ['dy_ct_flags', 'DY_CT_F_', CtFlags],
  ['dy_config_flags', 'DY_CFG_F_', ConfigFlags],
  ['dy_lb_const', 'DY_LB_', LbConst],
  ['dy_lb_service_flags', 'DY_LB_SVC_F_', LbServiceFlags],
  ['dy_lb_backend_flags', 'DY_LB_BE_F_', LbBackendFlags],
  ['dy_lb_rnat_flags', 'DY_LB_RNAT_F_', LbRnatFlags],
  ['dy_lb_snat_flags', 'DY_LB_SNAT_F_', LbSnatFlags],
];

describe('TypeScript constants match the C enums (BTF)', () => {
  let lib: Libbpf;

  beforeAll(() => {
    ensureBpfBuilt();
    lib = Libbpf.open();
  });

  test.each(ENUMS)('enum %s: every name and value, both ways', (cName, prefix, ts) => {
    const btf = lib.readBtfEnum(LAYOUTS_OBJECT, cName);
    const fromC = Object.fromEntries(
      [...btf].map(([name, value]) => {
        expect(name.startsWith(prefix), `${name} has prefix ${prefix}`).toBe(true);
        return [name.slice(prefix.length), value];
      }),
    );
    expect(fromC).toEqual({ ...ts });
  });
});
