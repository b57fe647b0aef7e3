import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LibbpfError } from './errors.ts';
import { rawMapCodec } from './codec.ts';
import type { MapCodec } from './codec.ts';
import { readBtfEnum, readBtfStruct } from './btf.ts';
import type { BtfStruct } from './btf.ts';
import { bindLibbpf } from './ffi.ts';
import type { LibbpfBindings } from './ffi.ts';
import { BpfMap } from './map.ts';
import type { MapInfo } from './map-types.ts';
import { BpfObject } from './object.ts';
import type { OpenObjectOptions } from './object.ts';
import { RingBufferReader } from './ringbuf.ts';
import type { RingBufferOptions } from './ringbuf.ts';
import { Tc } from './tc.ts';

const MAP_INFO_SIZE = 88; // struct bpf_map_info up to map_extra

export interface CreateMapSpec {
  readonly type: number;
  readonly name?: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags?: number;
}

export interface LibbpfOptions {
  /** Path or soname of libbpf (default libbpf.so.1, the Debian libbpf1 package). */
  readonly libbpfPath?: string;
  readonly libcPath?: string;
}

/** Entry point: one binding to the system libbpf, from which objects, maps, tc and ring
 *  buffers are opened. Create one per process and pass it where needed. */
export class Libbpf {
  readonly native: LibbpfBindings;
  readonly tc: Tc;

  constructor(native: LibbpfBindings) {
    this.native = native;
    this.tc = new Tc(native);
  }

  static open(opts: LibbpfOptions = {}): Libbpf {
    return new Libbpf(bindLibbpf(opts.libbpfPath, opts.libcPath));
  }

  openObject(path: string, opts?: OpenObjectOptions): BpfObject {
    return new BpfObject(this.native, path, opts);
  }

  /** Kernel-side facts of a map fd (type, sizes, name). */
  mapInfoByFd(fd: number): MapInfo {
    const buf = Buffer.alloc(MAP_INFO_SIZE);
    const len = [MAP_INFO_SIZE];
    const rc = this.native.objGetInfoByFd(fd, buf, len);
    if (rc < 0) throw new LibbpfError('bpf_obj_get_info_by_fd', -rc);
    const nameBytes = buf.subarray(24, 40);
    const nul = nameBytes.indexOf(0);
    return {
      type: buf.readUInt32LE(0),
      id: buf.readUInt32LE(4),
      keySize: buf.readUInt32LE(8),
      valueSize: buf.readUInt32LE(12),
      maxEntries: buf.readUInt32LE(16),
      flags: buf.readUInt32LE(20),
      name: nameBytes.subarray(0, nul < 0 ? 16 : nul).toString('utf8'),
    };
  }

  /** Opens a pinned map by path; the returned map owns its fd. */
  openPinnedMap<K = Buffer, V = Buffer>(path: string, codec?: MapCodec<K, V>): BpfMap<K, V> {
    const fd = this.native.objGet(path);
    if (fd < 0) throw new LibbpfError('bpf_obj_get', -fd, { detail: path });
    return this.#own(fd, codec);
  }

  /** Opens a map by its kernel id (e.g. an inner map id read from a map of maps). */
  openMapById<K = Buffer, V = Buffer>(id: number, codec?: MapCodec<K, V>): BpfMap<K, V> {
    const fd = this.native.mapGetFdById(id);
    if (fd < 0) throw new LibbpfError('bpf_map_get_fd_by_id', -fd, { detail: `map id ${id}` });
    return this.#own(fd, codec);
  }

  #own<K, V>(fd: number, codec?: MapCodec<K, V>): BpfMap<K, V> {
    try {
      const info = this.mapInfoByFd(fd);
      const c = codec ?? (rawMapCodec(info.keySize, info.valueSize) as unknown as MapCodec<K, V>);
      return new BpfMap(this.native, fd, info, c, { ownsFd: true });
    } catch (e) {
      this.native.close(fd);
      throw e;
    }
  }

  /** Creates a standalone map (not from an object); it owns its fd. */
  createMap<K = Buffer, V = Buffer>(spec: CreateMapSpec, codec?: MapCodec<K, V>): BpfMap<K, V> {
    let opts: Buffer | null = null;
    if (spec.flags) {
      opts = Buffer.alloc(48);
      opts.writeBigUInt64LE(48n, 0);
      opts.writeUInt32LE(spec.flags, 28);
    }
    const fd = this.native.mapCreate(
      spec.type,
      spec.name ?? null,
      spec.keySize,
      spec.valueSize,
      spec.maxEntries,
      opts,
    );
    if (fd < 0) throw new LibbpfError('bpf_map_create', -fd, { detail: spec.name ?? 'anonymous' });
    return this.#own(fd, codec);
  }

  /** Pins any BPF object fd (map or program) at a bpffs path. */
  pinFd(fd: number, path: string): void {
    mkdirSync(dirname(path), { recursive: true });
    const rc = this.native.objPin(fd, path);
    if (rc < 0) throw new LibbpfError('bpf_obj_pin', -rc, { detail: path });
  }

  ringBuffer<T>(
    map: BpfMap<unknown, unknown> | number,
    decode: (record: Buffer) => T,
    opts?: RingBufferOptions,
  ): RingBufferReader<T> {
    const fd = typeof map === 'number' ? map : map.fd;
    const { maxEntries } = this.mapInfoByFd(fd);
    return new RingBufferReader(this.native, fd, maxEntries, decode, opts);
  }

  readBtfStruct(objectPath: string, structName: string): BtfStruct {
    return readBtfStruct(this.native, objectPath, structName);
  }

  /** An enum's names and values from an object's BTF. */
  readBtfEnum(objectPath: string, enumName: string): ReadonlyMap<string, number> {
    return readBtfEnum(this.native, objectPath, enumName);
  }

  numPossibleCpus(): number {
    return this.native.numPossibleCpus();
  }
}
