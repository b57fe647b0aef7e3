import { LibbpfError } from './errors.ts';
import type { LibbpfBindings } from './ffi.ts';

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
const BTF_TYPE_SIZE = 12;
const BTF_MEMBER_SIZE = 12;

/** Reads one struct's layout from an ELF object's .BTF section through libbpf's btf__ API. */
export function readBtfStruct(
  lib: LibbpfBindings,
  objectPath: string,
  structName: string,
): BtfStruct {
  const btf = lib.btfParse(objectPath, null);
  if (btf === null) throw new LibbpfError('btf__parse', lib.errno(), { detail: objectPath });
  try {
    const id = lib.btfFindByNameKind(btf, structName, BTF_KIND_STRUCT);
    if (id < 0)
      throw new LibbpfError('btf__find_by_name_kind', -id, {
        detail: `struct ${structName} in ${objectPath}`,
      });
    const t = lib.btfTypeById(btf, id);
    if (t === null) throw new LibbpfError('btf__type_by_id', lib.errno(), { detail: structName });
    const head = lib.copyOut(t, BTF_TYPE_SIZE);
    const info = head.readUInt32LE(4);
    const size = head.readUInt32LE(8);
    const vlen = info & 0xffff;
    const kindFlag = info >>> 31 === 1;
    const body = lib.copyOut(t, BTF_TYPE_SIZE + vlen * BTF_MEMBER_SIZE);
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
  } finally {
    lib.btfFree(btf);
  }
}
