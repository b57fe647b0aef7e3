import { Family } from '@dyad/netaddr';
import type { FlagSpecs } from '../command.ts';
import { UsageError } from '../errors.ts';
import type { FlowFilter } from './flow-view.ts';

/** The filters `dyad observe` and `dyad monitor` share, named as `hubble observe` names them. */
export const FLOW_FILTER_FLAGS = {
  namespace: {
    type: 'string',
    short: 'n',
    value: 'NAMESPACE',
    description: 'flows with a pod of this namespace at either end',
  },
  pod: {
    type: 'string',
    value: 'POD',
    description: 'flows with this pod at either end: NAME (with --namespace) or NAMESPACE/NAME',
  },
  verdict: {
    type: 'string',
    value: 'VERDICT',
    description: 'forwarded or dropped',
    choices: ['forwarded', 'dropped'],
  },
  family: {
    type: 'string',
    value: 'FAMILY',
    description: 'IPv4 or IPv6',
    choices: ['IPv4', 'IPv6', 'ipv4', 'ipv6'],
  },
  max: { type: 'string', value: 'N', description: 'stop after N flows' },
} as const satisfies FlagSpecs;

export function flowFilter(flags: {
  namespace?: string;
  pod?: string;
  verdict?: string;
  family?: string;
}): FlowFilter {
  return {
    ...(flags.namespace === undefined ? {} : { namespace: flags.namespace }),
    ...(flags.pod === undefined ? {} : { pod: flags.pod }),
    ...(flags.verdict === undefined
      ? {}
      : { verdict: flags.verdict === 'dropped' ? ('DROPPED' as const) : ('FORWARDED' as const) }),
    ...(flags.family === undefined
      ? {}
      : {
          ipVersion: flags.family.toLowerCase() === 'ipv6' ? Family.IPv6 : Family.IPv4,
        }),
  };
}

/** A positive count flag, or undefined. */
export function countFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new UsageError(`--${name} takes a positive integer, not ${v}`);
  return n;
}
