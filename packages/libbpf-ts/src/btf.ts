import { LibbpfError } from './errors.ts';
import type { LibbpfBindings, Ptr } from './ffi.ts';

export interface BtfMember {
  readonly name: string;
  /** Byte offset; bitfields are reported with bitfieldSize > 0 and their bit offset / 8. */
  readonly offset: number;
  readonly size: number;
  readonly bitOffset: number;
  readonly bitfieldSize: number;
}

export interface BtfStruct {
  readonly name: string;
  readonly size: number;
  readonly members: readonly BtfMember[];
}

const BTF_KIND_STRUCT = 4;
const BTF_KIND_ENUM = 6;
const BTF_TYPE_SIZE = 12;
const BTF_MEMBER_SIZE = 12;
const BTF_ENUM_SIZE = 8;

/** Runs `read` on an object's parsed BTF and frees it. */
function withBtf<T>(lib: LibbpfBindings, objectPath: string, read: (btf: Ptr) => T): T {
  const btf = lib.btfParse(objectPath, null);
  if (btf === null) throw new LibbpfError('btf__parse', lib.errno(), { detail: objectPath });
  try {
    return read(btf);
  } finally {
    lib.btfFree(btf);
  }
}

/** The head and `vlen` records of a named type of one kind. */
function typeRecords(
  lib: LibbpfBindings,
  btf: Ptr,
  name: string,
  kind: number,
  recordSize: number,
): { head: Buffer; body: Buffer; vlen: number; kindFlag: boolean } {
  const id = lib.btfFindByNameKind(btf, name, kind);
  if (id < 0) throw new LibbpfError('btf__find_by_name_kind', -id, { detail: name });
  const t = lib.btfTypeById(btf, id);
  if (t === null) throw new LibbpfError('btf__type_by_id', lib.errno(), { detail: name });
  const head = lib.copyOut(t, BTF_TYPE_SIZE);
  const info = head.readUInt32LE(4);
  const vlen = info & 0xffff;
  return {
    head,
    body: lib.copyOut(t, BTF_TYPE_SIZE + vlen * recordSize),
    vlen,
    kindFlag: info >>> 31 === 1,
  };
}

/**
 * Reads one enum's names and values from an ELF object's .BTF section: the datapath's constants
 * are C enums so that the drift test can compare them with the TypeScript ones.
 */
export function readBtfEnum(
  lib: LibbpfBindings,
  objectPath: string,
  enumName: string,
): ReadonlyMap<string, number> {
  return withBtf(lib, objectPath, (btf) => {
    const { body, vlen, kindFlag } = typeRecords(lib, btf, enumName, BTF_KIND_ENUM, BTF_ENUM_SIZE);
    const out = new Map<string, number>();
    for (let i = 0; i < vlen; i++) {
      const at = BTF_TYPE_SIZE + i * BTF_ENUM_SIZE;
      const name = lib.btfNameByOffset(btf, body.readUInt32LE(at)) ?? '';
      // kind_flag set: the enum is signed
      out.set(name, kindFlag ? body.readInt32LE(at + 4) : body.readUInt32LE(at + 4));
    }
    return out;
  });
}

/** Reads one struct's layout from an ELF object's .BTF section through libbpf's btf__ API. */
export function readBtfStruct(
  lib: LibbpfBindings,
  objectPath: string,
  structName: string,
): BtfStruct {
  return withBtf(lib, objectPath, (btf) => {
    const { head, body, vlen, kindFlag } = typeRecords(
      lib,
      btf,
      structName,
      BTF_KIND_STRUCT,
      BTF_MEMBER_SIZE,
    );
    const size = head.readUInt32LE(8);
    const members: BtfMember[] = [];
    for (let i = 0; i < vlen; i++) {
      const at = BTF_TYPE_SIZE + i * BTF_MEMBER_SIZE;
      const nameOff = body.readUInt32LE(at);
      const typeId = body.readUInt32LE(at + 4);
      const raw = body.readUInt32LE(at + 8);
      const bitOffset = kindFlag ? raw & 0xffffff : raw;
      const bitfieldSize = kindFlag ? raw >>> 24 : 0;
      const msize = Number(lib.btfResolveSize(btf, typeId));
      if (msize < 0)
        throw new LibbpfError('btf__resolve_size', -msize, { detail: `${structName} member ${i}` });
      members.push({
        name: lib.btfNameByOffset(btf, nameOff) ?? '',
        offset: Math.floor(bitOffset / 8),
        size: msize,
        bitOffset,
        bitfieldSize,
      });
    }
    return { name: structName, size, members };
  });
}
