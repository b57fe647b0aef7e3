#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript, run by the pinned Node 24 (npx puts it first on PATH).
import { run } from '../src/main.ts';

process.exitCode = await run(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
});
