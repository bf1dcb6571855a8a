#!/usr/bin/env bash
# The main job: sets everything up, then runs the demo on the embedded default configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/cvlan-vrouter.js demo "$@"
