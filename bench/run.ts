// `npm run bench -- NAME`: runs bench/NAME.ts, whose last stdout line is one JSON object.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3));
const [name, ...rest] = process.argv.slice(2);
if (name === undefined || !existsSync(join(here, `${name}.ts`))) {
  console.error(
    `usage: npm run bench -- NAME [args]   (NAME: ${available.join(', ') || 'none yet'})`,
  );
  process.exit(2);
}
const r = spawnSync(process.execPath, [join(here, `${name}.ts`), ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
