// Opens a node's pinned maps from a separate process and prints what it finds as JSON.
import { Libbpf, openPinnedDatapath } from '../../src/index.ts';

const pinDir = process.argv[2] ?? '';
const lib = Libbpf.open();
const maps = openPinnedDatapath(lib, pinDir);
try {
  process.stdout.write(
    `${JSON.stringify({
      endpoints: [...maps.endpoints.entries()],
      ipcache: [...maps.ipcache.entries()],
      endpointsMapId: maps.endpoints.info.id,
    })}\n`,
  );
} finally {
  maps.close();
}
