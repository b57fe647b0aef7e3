// `npm run lab -- up|down|status`: see commands.ts and the lab README.
import { labMain } from './commands.ts';

process.exitCode = await labMain(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
});
