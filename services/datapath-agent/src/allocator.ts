import type { Bus } from '@dyad/bus';
import { NoRespondersError, RemoteError, RequestTimeoutError } from '@dyad/bus';
import {
  AllocateRequest,
  Allocation,
  IpamErrorCode,
  IpamSubject,
  ReleaseRequest,
  ReleaseResult,
} from '@dyad/contracts';
import type { Family } from './cni/request.ts';
import { CniCode } from './cni/spec.ts';
import type { EndpointAddress } from './endpoint.ts';
import { AllocatorError, CniError } from './errors.ts';

export interface AllocationRequest {
  readonly node: string;
  readonly namespace: string;
  readonly pod: string;
  readonly podUid: string;
  readonly containerId: string;
  /** Undefined: every family the cluster enables. */
  readonly families?: readonly Family[];
}

export interface Allocated {
  readonly ipv4?: EndpointAddress;
  readonly ipv6?: EndpointAddress;
}

/** Where pod addresses come from; the agent holds no pool of its own. */
export interface AddressAllocator {
  /** Same request, same answer: a repeated ADD gets the addresses it already has. */
  allocate(req: AllocationRequest): Promise<Allocated>;
  /**
   * `released` when IPAM freed addresses now; `already-released` when an earlier release had;
   * `not-allocated` when the container held nothing.
   */
  release(
    node: string,
    containerId: string,
  ): Promise<'released' | 'already-released' | 'not-allocated'>;
}

/** Transport failures and IPAM's own "retry" answers. */
const TRANSIENT = new Set<string>([
  IpamErrorCode.unavailable,
  IpamErrorCode.unknownNode,
  'no-responders',
  'timeout',
  'disconnected',
  'internal',
]);

export function isTransient(e: unknown): boolean {
  return e instanceof AllocatorError && TRANSIENT.has(e.code);
}

function translate(e: unknown, what: string): AllocatorError {
  if (e instanceof AllocatorError) return e;
  if (e instanceof RemoteError) return new AllocatorError(e.code, e.message, { cause: e });
  if (e instanceof NoRespondersError)
    return new AllocatorError('no-responders', `${what}: no IPAM service answers`, { cause: e });
  if (e instanceof RequestTimeoutError)
    return new AllocatorError('timeout', `${what}: IPAM did not answer in time`, { cause: e });
  return new AllocatorError(
    'disconnected',
    `${what}: ${e instanceof Error ? e.message : String(e)}`,
    {
      cause: e,
    },
  );
}

/** The CNI error an allocator failure becomes (see the README's error table). */
export function allocatorCniError(e: unknown): CniError {
  const err = translate(e, 'ipam');
  if (TRANSIENT.has(err.code))
    return new CniError(CniCode.tryAgainLater, 'IPAM unavailable, try again later', err.message, {
      cause: err,
    });
  switch (err.code) {
    case IpamErrorCode.exhausted:
      return new CniError(CniCode.addressesExhausted, 'no free address', err.message, {
        cause: err,
      });
    case IpamErrorCode.familyDisabled:
      return new CniError(
        CniCode.invalidConfig,
        'invalid network configuration: family not enabled in IPAM',
        err.message,
        { cause: err },
      );
    case IpamErrorCode.ownerMismatch:
      return new CniError(
        CniCode.invalidEnvironment,
        'CNI_CONTAINERID is in use by another pod',
        err.message,
        { cause: err },
      );
    case 'bad-request':
      return new CniError(
        CniCode.invalidEnvironment,
        'IPAM refused the request (check CNI_ARGS pod names)',
        err.message,
        { cause: err },
      );
    default:
      return new CniError(CniCode.internal, `IPAM error ${err.code}`, err.message, { cause: err });
  }
}

/** IPAM over NATS request/reply (`dyad.ipam.v1.allocate` / `.release`). */
export class NatsAllocator implements AddressAllocator {
  readonly #bus: () => Bus | undefined;
  readonly #timeoutMs: number;

  /** `bus` returns undefined until the first connection is up. */
  constructor(bus: () => Bus | undefined, timeoutMs: number) {
    this.#bus = bus;
    this.#timeoutMs = timeoutMs;
  }

  #connected(what: string): Bus {
    const bus = this.#bus();
    if (bus === undefined || !bus.isConnected())
      throw new AllocatorError('disconnected', `${what}: not connected to NATS`);
    return bus;
  }

  async allocate(req: AllocationRequest): Promise<Allocated> {
    const bus = this.#connected('allocate');
    try {
      const reply = await bus.request(
        AllocateRequest,
        IpamSubject.allocate,
        {
          node: req.node,
          namespace: req.namespace,
          pod: req.pod,
          podUid: req.podUid,
          containerId: req.containerId,
          ...(req.families ? { families: [...req.families] } : {}),
        },
        Allocation,
        { timeoutMs: this.#timeoutMs },
      );
      let ipv4: EndpointAddress | undefined;
      let ipv6: EndpointAddress | undefined;
      for (const a of reply.addresses) {
        const addr = { address: a.address, cidr: a.cidr, gateway: a.gateway };
        if (a.family === 'IPv4') ipv4 = addr;
        else ipv6 = addr;
      }
      return { ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) };
    } catch (e) {
      throw translate(e, 'allocate');
    }
  }

  async release(
    node: string,
    containerId: string,
  ): Promise<'released' | 'already-released' | 'not-allocated'> {
    const bus = this.#connected('release');
    try {
      const r = await bus.request(
        ReleaseRequest,
        IpamSubject.release,
        { node, containerId },
        ReleaseResult,
        { timeoutMs: this.#timeoutMs },
      );
      if (r.released.length > 0) return 'released';
      return r.alreadyReleased ? 'already-released' : 'not-allocated';
    } catch (e) {
      const err = translate(e, 'release');
      if (err.code === IpamErrorCode.notAllocated) return 'not-allocated';
      throw err;
    }
  }
}
