import { beforeAll, describe, expect, test } from 'vitest';
import { datapathLayouts, datapathMapLayouts, fieldSize, Libbpf } from '../src/index.ts';
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
    }
  });
});
