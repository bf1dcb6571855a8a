#!/usr/bin/env bash
# Compiles the TypeScript and runs the throughput benchmark; arguments go to bench/throughput.ts
# (--systems, --rounds, --duration, --flows, --omit, --baseline, --no-write). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
exec node dist/bench/throughput.js "$@"
