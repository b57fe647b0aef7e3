#!/usr/bin/env node
// Thin launcher: the CLI's sources under Node 24's type stripping (npx puts the pinned Node first
// on PATH), or its compiled dist/ under the dyad-dist condition (the image sets it).
import { run } from '@dyad/cli/main';

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
