import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ClosedError, LibbpfError } from './errors.ts';
import type { MapCodec } from './codec.ts';
import { rawMapCodec } from './codec.ts';
import type { LibbpfBindings, Ptr } from './ffi.ts';
import { BpfMap } from './map.ts';
import type { Liveness } from './map.ts';
import type { MapInfo } from './map-types.ts';

/** A program of a loaded object; its fd lives as long as the object. */
export class BpfProgram {
  readonly name: string;
  readonly #lib: LibbpfBindings;
  readonly #ptr: Ptr;
  readonly #owner: Liveness;

  constructor(lib: LibbpfBindings, ptr: Ptr, owner: Liveness) {
    this.#lib = lib;
    this.#ptr = ptr;
    this.#owner = owner;
    this.name = lib.programName(ptr);
  }

  get fd(): number {
    if (!this.#owner.open) throw new ClosedError(this.#owner.what);
    const fd = this.#lib.programFd(this.#ptr);
    if (fd < 0)
      throw new LibbpfError('bpf_program__fd', -fd, {
        detail: `program ${this.name} (not loaded?)`,
      });
    return fd;
  }
  /**
   * Runs the program `repeat` times on one packet in the kernel (BPF_PROG_TEST_RUN), as if it had
   * arrived on its hook: maps and helpers behave as for real traffic. For benches and tests.
   */
  testRun(packet: Buffer, repeat = 1): { retval: number; durationNs: number } {
    const opts = {
      sz: 80,
      data_in: packet,
      data_out: null,
      data_size_in: packet.length,
      data_size_out: 0,
      ctx_in: null,
      ctx_out: null,
      ctx_size_in: 0,
      ctx_size_out: 0,
      retval: 0,
      repeat,
      duration: 0,
      flags: 0,
      cpu: 0,
      batch_size: 0,
    };
    const rc = this.#lib.progTestRun(this.fd, opts);
    if (rc < 0) throw new LibbpfError('bpf_prog_test_run_opts', -rc, { detail: this.name });
    return { retval: opts.retval, durationNs: opts.duration };
  }
}

export interface OpenObjectOptions {
  /** Pin every map at <pinDir>/<map name>; existing pins are reused at load, so a restarted
   *  loader picks up the kernel's state. */
  readonly pinDir?: string;
  /** max_entries overrides by map name, applied before load. */
  readonly maxEntries?: Readonly<Record<string, number>>;
  /** Load only these programs (others are left out of the kernel). */
  readonly programs?: readonly string[];
}

/**
 * An ELF object opened through libbpf. Configure maps (size, pin path) before load(); find maps
 * and programs after. close() unloads what nothing else holds (pins and tc attachments keep
 * their maps and programs alive in the kernel).
 */
export class BpfObject implements Disposable {
  readonly path: string;
  readonly #lib: LibbpfBindings;
  #ptr: Ptr;
  #loaded = false;
  readonly #live: Liveness;

  constructor(lib: LibbpfBindings, path: string, opts: OpenObjectOptions = {}) {
    this.#lib = lib;
    this.path = path;
    const ptr = lib.objectOpenFile(path, null);
    if (ptr === null) throw new LibbpfError('bpf_object__open_file', lib.errno(), { detail: path });
    this.#ptr = ptr;
    this.#live = { open: true, what: `bpf object ${path}` };
    try {
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) this.setMaxEntries(name, n);
      if (opts.pinDir !== undefined) this.pinMapsUnder(opts.pinDir);
      if (opts.programs !== undefined) {
        const keep = new Set(opts.programs);
        for (const p of this.programNames()) this.#setAutoload(p, keep.has(p));
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  #obj(): Ptr {
    if (!this.#live.open) throw new ClosedError(this.#live.what);
    return this.#ptr;
  }

  #mapPtr(name: string): Ptr {
    const m = this.#lib.objectFindMap(this.#obj(), name);
    if (m === null)
      throw new LibbpfError('bpf_object__find_map_by_name', 2, {
        detail: `no map ${name} in ${this.path}`,
      });
    return m;
  }

  #progPtr(name: string): Ptr {
    const p = this.#lib.objectFindProgram(this.#obj(), name);
    if (p === null)
      throw new LibbpfError('bpf_object__find_program_by_name', 2, {
        detail: `no program ${name} in ${this.path}`,
      });
    return p;
  }

  #setAutoload(name: string, on: boolean): void {
    const rc = this.#lib.programSetAutoload(this.#progPtr(name), on);
    if (rc < 0) throw new LibbpfError('bpf_program__set_autoload', -rc, { detail: name });
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  mapNames(): string[] {
    const out: string[] = [];
    const obj = this.#obj();
    for (
      let m = this.#lib.objectNextMap(obj, null);
      m !== null;
      m = this.#lib.objectNextMap(obj, m)
    ) {
      out.push(this.#lib.mapName(m));
    }
    return out;
  }

  programNames(): string[] {
    const out: string[] = [];
    const obj = this.#obj();
    for (
      let p = this.#lib.objectNextProgram(obj, null);
      p !== null;
      p = this.#lib.objectNextProgram(obj, p)
    ) {
      out.push(this.#lib.programName(p));
    }
    return out;
  }

  /** Declared sizes, readable before load (the drift test uses this on the datapath object). */
  mapInfo(name: string): MapInfo {
    return this.#info(name, this.#mapPtr(name));
  }

  /** The declared prototype of a map-of-maps' inner maps; undefined for other maps. */
  innerMapInfo(name: string): MapInfo | undefined {
    const inner = this.#lib.mapInnerMap(this.#mapPtr(name));
    return inner === null ? undefined : this.#info(`${name}.inner`, inner);
  }

  #info(name: string, m: Ptr): MapInfo {
    return {
      name,
      id: 0,
      type: this.#lib.mapType(m),
      keySize: this.#lib.mapKeySize(m),
      valueSize: this.#lib.mapValueSize(m),
      maxEntries: this.#lib.mapMaxEntries(m),
      flags: 0,
    };
  }

  setMaxEntries(name: string, n: number): void {
    const rc = this.#lib.mapSetMaxEntries(this.#mapPtr(name), n);
    if (rc < 0) throw new LibbpfError('bpf_map__set_max_entries', -rc, { detail: name });
  }

  setPinPath(name: string, path: string): void {
    const rc = this.#lib.mapSetPinPath(this.#mapPtr(name), path);
    if (rc < 0)
      throw new LibbpfError('bpf_map__set_pin_path', -rc, { detail: `${name} -> ${path}` });
  }

  pinPath(name: string): string | null {
    return this.#lib.mapPinPath(this.#mapPtr(name));
  }

  isPinned(name: string): boolean {
    return this.#lib.mapIsPinned(this.#mapPtr(name));
  }

  /** Sets every map's pin path to <dir>/<name> and creates dir on bpffs. */
  pinMapsUnder(dir: string): void {
    mkdirSync(dir, { recursive: true });
    for (const name of this.mapNames()) {
      // libbpf's internal maps (.rodata, .bss) have dotted names that are not valid pin names
      if (name.includes('.')) continue;
      this.setPinPath(name, join(dir, name));
    }
  }

  /** Removes a map's pin (the map lives on while anything holds it). */
  unpinMap(name: string): void {
    const rc = this.#lib.mapUnpin(this.#mapPtr(name), null);
    if (rc < 0) throw new LibbpfError('bpf_map__unpin', -rc, { detail: name });
  }

  load(): void {
    if (this.#loaded) return;
    const rc = this.#lib.objectLoad(this.#obj());
    if (rc < 0) throw new LibbpfError('bpf_object__load', -rc, { detail: this.path });
    this.#loaded = true;
  }

  map<K = Buffer, V = Buffer>(name: string, codec?: MapCodec<K, V>): BpfMap<K, V> {
    const m = this.#mapPtr(name);
    const fd = this.#lib.mapFd(m);
    if (fd < 0)
      throw new LibbpfError('bpf_map__fd', -fd, { detail: `${name} (object not loaded?)` });
    const info = this.mapInfo(name);
    const c = codec ?? (rawMapCodec(info.keySize, info.valueSize) as unknown as MapCodec<K, V>);
    return new BpfMap(this.#lib, fd, info, c, { ownsFd: false, owner: this.#live, mapPtr: m });
  }

  program(name: string): BpfProgram {
    return new BpfProgram(this.#lib, this.#progPtr(name), this.#live);
  }

  close(): void {
    if (!this.#live.open) return;
    this.#live.open = false;
    this.#lib.objectClose(this.#ptr);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
