#!/usr/bin/env bash
# The one test command (`npm test`): installs what is missing, then type-checks, lints and runs
# every test tier. Kernel tests skip when not root unless DYAD_REQUIRE_KERNEL=1 (CI sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
export PATH="$PWD/node_modules/.bin:$PATH"
echo '[test] typecheck' >&2
tsc -p tsconfig.json
echo '[test] lint' >&2
eslint .
echo '[test] format' >&2
prettier --check . >/dev/null
echo '[test] vitest' >&2
results=$(mktemp -t dyad-vitest-XXXXXX.json)
trap 'rm -f "$results"' EXIT
rc=0
vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || rc=$?
# One plain closing line, whatever the runner printed above it.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$results" || true
exit "$rc"
