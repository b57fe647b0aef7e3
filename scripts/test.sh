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
echo '[test] vitest' >&2
exec vitest run "$@"
