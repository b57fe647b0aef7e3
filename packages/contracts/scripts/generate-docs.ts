// Writes docs/events/ from the contracts: `npm run contracts:docs`.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateEventDocs } from '../src/docs.ts';

const outDir = join(dirname(fileURLToPath(import.meta.url)), '../../../docs/events');
const files = generateEventDocs();
rmSync(join(outDir, 'schemas'), { recursive: true, force: true });
for (const [rel, text] of files) {
  const path = join(outDir, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}
console.log(
  `wrote ${files.size} files to docs/events (${readdirSync(join(outDir, 'schemas')).length} schemas)`,
);
