import { LibbpfError } from './errors.ts';
import type { LibbpfBindings } from './ffi.ts';

export type TcDirection = 'ingress' | 'egress';

export interface TcHookRef {
  readonly ifindex: number;
  readonly direction: TcDirection;
}

export interface TcFilterRef extends TcHookRef {
  readonly handle: number;
  readonly priority: number;
}

export interface TcAttachOptions extends TcHookRef {
  readonly handle?: number;
  readonly priority?: number;
  /** Swap the program of an existing filter atomically (agent restart / upgrade). */
  readonly replace?: boolean;
}

export interface TcAttachment extends TcFilterRef {
  readonly progId: number;
}

const HOOK_SIZE = 24; // struct bpf_tc_hook: sz, ifindex, attach_point, parent, size_t:0
const OPTS_SIZE = 32; // struct bpf_tc_opts: sz, prog_fd, flags, prog_id, handle, priority, size_t:0
const BPF_TC_INGRESS = 1;
const BPF_TC_EGRESS = 2;
const BPF_TC_F_REPLACE = 1;
const EEXIST = 17;
const ENOENT = 2;

function hookBuf(ref: TcHookRef, attachPoint?: number): Buffer {
  const b = Buffer.alloc(HOOK_SIZE);
  b.writeBigUInt64LE(BigInt(HOOK_SIZE), 0);
  b.writeInt32LE(ref.ifindex, 8);
  b.writeUInt32LE(
    attachPoint ?? (ref.direction === 'ingress' ? BPF_TC_INGRESS : BPF_TC_EGRESS),
    12,
  );
  return b;
}

function optsBuf(fields: {
  progFd?: number;
  flags?: number;
  handle?: number;
  priority?: number;
}): Buffer {
  const b = Buffer.alloc(OPTS_SIZE);
  b.writeBigUInt64LE(BigInt(OPTS_SIZE), 0);
  b.writeInt32LE(fields.progFd ?? 0, 8);
  b.writeUInt32LE(fields.flags ?? 0, 12);
  b.writeUInt32LE(fields.handle ?? 0, 20);
  b.writeUInt32LE(fields.priority ?? 0, 24);
  return b;
}

/** tc (clsact) attachment through libbpf's netlink helpers. Works in the caller's network
 *  namespace: a node's programs are attached by a process running inside that netns. */
export class Tc {
  readonly #lib: LibbpfBindings;

  constructor(lib: LibbpfBindings) {
    this.#lib = lib;
  }

  /** Creates the clsact qdisc if missing. */
  ensureClsact(ifindex: number): void {
    const rc = this.#lib.tcHookCreate(hookBuf({ ifindex, direction: 'ingress' }));
    if (rc < 0 && rc !== -EEXIST)
      throw new LibbpfError('bpf_tc_hook_create', -rc, { detail: `ifindex ${ifindex}` });
  }

  /** Removes clsact and with it every filter on both directions. */
  destroyClsact(ifindex: number): void {
    const rc = this.#lib.tcHookDestroy(
      hookBuf({ ifindex, direction: 'ingress' }, BPF_TC_INGRESS | BPF_TC_EGRESS),
    );
    if (rc < 0 && rc !== -ENOENT)
      throw new LibbpfError('bpf_tc_hook_destroy', -rc, { detail: `ifindex ${ifindex}` });
  }

  /** Attaches a direct-action BPF filter. The filter stays after this process exits. */
  attach(progFd: number, opts: TcAttachOptions): TcAttachment {
    this.ensureClsact(opts.ifindex);
    const o = optsBuf({
      progFd,
      flags: opts.replace ? BPF_TC_F_REPLACE : 0,
      handle: opts.handle ?? 1,
      priority: opts.priority ?? 1,
    });
    const rc = this.#lib.tcAttach(hookBuf(opts), o);
    if (rc < 0)
      throw new LibbpfError('bpf_tc_attach', -rc, {
        detail: `ifindex ${opts.ifindex} ${opts.direction}`,
      });
    return {
      ifindex: opts.ifindex,
      direction: opts.direction,
      progId: o.readUInt32LE(16),
      handle: o.readUInt32LE(20),
      priority: o.readUInt32LE(24),
    };
  }

  detach(ref: TcFilterRef): void {
    const rc = this.#lib.tcDetach(
      hookBuf(ref),
      optsBuf({ handle: ref.handle, priority: ref.priority }),
    );
    if (rc < 0)
      throw new LibbpfError('bpf_tc_detach', -rc, {
        detail: `ifindex ${ref.ifindex} ${ref.direction}`,
      });
  }

  /** Program id attached at the filter, or undefined when there is none. */
  query(ref: TcFilterRef): number | undefined {
    const o = optsBuf({ handle: ref.handle, priority: ref.priority });
    const rc = this.#lib.tcQuery(hookBuf(ref), o);
    if (rc === -ENOENT || rc === -22 /* EINVAL: no clsact */) return undefined;
    if (rc < 0)
      throw new LibbpfError('bpf_tc_query', -rc, {
        detail: `ifindex ${ref.ifindex} ${ref.direction}`,
      });
    return o.readUInt32LE(16);
  }
}
