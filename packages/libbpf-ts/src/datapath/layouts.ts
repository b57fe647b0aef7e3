import type { StructLayout } from '../layout.ts';
import { configLayout } from './config.ts';
import { CT_TABLE_TYPE, ctEntryLayout, ctKeyLayout } from './conntrack.ts';
import { DatapathMaps } from './constants.ts';
import { endpointInfoLayout, endpointKeyLayout } from './endpoints.ts';
import { eventLayout } from './events.ts';
import { fragInfoLayout, fragKeyLayout } from './frags.ts';
import { ipcacheInfoLayout, ipcacheKeyLayout } from './ipcache.ts';
import {
  lbAffinityKeyLayout,
  lbAffinityLayout,
  lbBackendLayout,
  lbFlowKeyLayout,
  lbFlowLayout,
  lbMaglevLayout,
  lbRnatLayout,
  lbServiceKeyLayout,
  lbSnatLayout,
  lbServiceLayout,
} from './lb.ts';
import { metricsKeyLayout, metricsValueLayout } from './metrics.ts';
import { policyKeyLayout, policyValueLayout } from './policy.ts';
import { policyCidrKeyLayout, policyCidrValueLayout } from './policy-cidr.ts';

/** Every struct the TypeScript side mirrors, for the BTF drift check. */
export const datapathLayouts: readonly StructLayout[] = [
  endpointKeyLayout,
  endpointInfoLayout,
  ipcacheKeyLayout,
  ipcacheInfoLayout,
  policyKeyLayout,
  policyValueLayout,
  policyCidrKeyLayout,
  policyCidrValueLayout,
  ctKeyLayout,
  ctEntryLayout,
  fragKeyLayout,
  fragInfoLayout,
  metricsKeyLayout,
  metricsValueLayout,
  eventLayout,
  configLayout,
  lbServiceKeyLayout,
  lbServiceLayout,
  lbMaglevLayout,
  lbBackendLayout,
  lbFlowKeyLayout,
  lbFlowLayout,
  lbRnatLayout,
  lbSnatLayout,
  lbAffinityKeyLayout,
  lbAffinityLayout,
];

/** Which layouts each map of the datapath object uses as key and value. */
export const datapathMapLayouts: ReadonlyArray<{
  map: string;
  key?: StructLayout;
  value?: StructLayout;
  /** A map of maps: its inner maps' type and layouts (what user space creates them with). */
  inner?: { type: number; key: StructLayout; value: StructLayout };
}> = [
  { map: DatapathMaps.endpoints, key: endpointKeyLayout, value: endpointInfoLayout },
  { map: DatapathMaps.ipcache, key: ipcacheKeyLayout, value: ipcacheInfoLayout },
  { map: DatapathMaps.policy, key: policyKeyLayout, value: policyValueLayout },
  { map: DatapathMaps.policyCidr, key: policyCidrKeyLayout, value: policyCidrValueLayout },
  {
    map: DatapathMaps.conntrack,
    inner: { type: CT_TABLE_TYPE, key: ctKeyLayout, value: ctEntryLayout },
  },
  { map: DatapathMaps.frags, key: fragKeyLayout, value: fragInfoLayout },
  { map: DatapathMaps.metrics, key: metricsKeyLayout, value: metricsValueLayout },
  { map: DatapathMaps.config, value: configLayout },
  { map: DatapathMaps.lbServices, key: lbServiceKeyLayout, value: lbServiceLayout },
  { map: DatapathMaps.lbMaglev, value: lbMaglevLayout },
  { map: DatapathMaps.lbBackends, value: lbBackendLayout },
  { map: DatapathMaps.lbFlows, key: lbFlowKeyLayout, value: lbFlowLayout },
  { map: DatapathMaps.lbRnat, key: lbFlowKeyLayout, value: lbRnatLayout },
  { map: DatapathMaps.lbSnat, key: lbFlowKeyLayout, value: lbSnatLayout },
  { map: DatapathMaps.lbAffinity, key: lbAffinityKeyLayout, value: lbAffinityLayout },
];
