#!/usr/bin/env bash
# The whole test suite: setup, lints, Rust tests, TypeScript unit tests, network tests (root,
# namespaces, real peers). Ends with one line: "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
bash scripts/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed, 0 skipped"; exit 1; }

counts=$(mktemp)
trap 'rm -f "$counts" "${cargo_log:-}"' EXIT
check() { # name, command...: a lint or build gate counts as one test
  local name=$1; shift
  echo "=== $name"
  if "$@"; then echo "1 0 0" >>"$counts"; echo "ok - $name"; else echo "0 1 0" >>"$counts"; echo "not ok - $name"; fi
}

check "cargo fmt --check" cargo fmt --all -- --check
check "cargo clippy -D warnings" cargo clippy --workspace --all-targets --quiet -- -D warnings
check "tsc --noEmit" npx tsc -p tsconfig.json --noEmit
check "eslint" npx eslint --max-warnings 0 .

echo "=== cargo test"
# The output goes to our stdout and to a file that is counted afterwards (`tee /dev/stderr`
# would reopen, and so truncate, a log file that stderr is redirected to).
cargo_log=$(mktemp)
# Tests that need root are #[ignore = "needs root"]: as root they run, otherwise they count as
# skipped (the `ignored` figure of cargo's summary).
root_tests=()
[ "$(id -u)" -eq 0 ] && root_tests=(-- --include-ignored)
cargo test --workspace "${root_tests[@]}" 2>&1 | tee "$cargo_log"
awk '
  /^test result:/ { for (i=1;i<=NF;i++) { if ($(i+1) ~ /^passed/) p+=$i; if ($(i+1) ~ /^failed/) f+=$i; if ($(i+1) ~ /^ignored/) s+=$i } }
  /^error(\[|:)/ { e=1 }
  END { if (e && p+f==0) f=1; print p+0, f+0, s+0 }' "$cargo_log" >>"$counts"

echo "=== fuzz targets (a short run of each, docs/fuzzing.md)"
# One test per target: fails on any crash or hang it finds from its seed corpus.
fuzz_seconds=${CVLAN_FUZZ_SECONDS:-25}
fuzz_log=$(mktemp)
scripts/fuzz.sh --build-only >"$fuzz_log" 2>&1 || tail -n 40 "$fuzz_log"
rm -f "$fuzz_log"
for t in $(scripts/fuzz.sh --list); do
  check "fuzz $t (${fuzz_seconds} s)" scripts/fuzz.sh --no-build --seconds "$fuzz_seconds" "$t"
done

echo "=== TypeScript unit tests"
npx tap --reporter=tap --jobs=2 'test/unit/**/*.test.ts' | node scripts/tap-count.mjs "$counts"

echo "=== network tests (namespaces, real peers)"
npx tap --reporter=tap --jobs=1 'test/net/**/*.test.ts' | node scripts/tap-count.mjs "$counts"

read -r P F S < <(awk '{p+=$1; f+=$2; s+=$3} END {print p+0, f+0, s+0}' "$counts")
echo "${P} passed, ${F} failed, ${S} skipped"
[ "$F" -eq 0 ]
