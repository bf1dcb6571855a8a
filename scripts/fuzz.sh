#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a while (docs/fuzzing.md).
#
#   scripts/fuzz.sh [--seconds N] [--build-only] [--no-build] [--list] [TARGET...]
#
# Targets (all by default):
#   Rust (cargo-afl, AFL++)   wireguard esp charon_protocol ip_icmp offload
#   C    (AFL++, ASan)        charon_plugin   the plugin's decoding of what the data plane sends
#   TS   (jsfuzz)             vici uapi controller
#
# Each target starts from its seed corpus in fuzz/corpus/<target>/ and works in
# $CVLAN_FUZZ_OUT/<target>/ (default target/fuzz-out; emptied first): AFL++'s queue, crashes and
# hangs, or jsfuzz's corpus and crash file. One summary line per target:
#   fuzz <target>: <seconds> s, <execs> execs, <paths> paths, <edges> edges, 0 crashes, 0 hangs
# Exit status 1 if any target found a crash or hang (the input is kept in the output directory),
# 2 if a target could not be built or started.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

RUST_TARGETS=(wireguard esp charon_protocol ip_icmp offload)
C_TARGETS=(charon_plugin)
JS_TARGETS=(vici uapi controller)
ALL=("${RUST_TARGETS[@]}" "${C_TARGETS[@]}" "${JS_TARGETS[@]}")

seconds=60
build=1
run=1
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) seconds=$2; shift 2 ;;
    --build-only) run=0; shift ;;
    --no-build) build=0; shift ;;
    --list) printf '%s\n' "${ALL[@]}"; exit 0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${ALL[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target $t (one of: ${ALL[*]})" >&2; exit 2; }
done
kind() { # rust | c | js
  [[ " ${RUST_TARGETS[*]} " == *" $1 "* ]] && { echo rust; return; }
  [[ " ${C_TARGETS[*]} " == *" $1 "* ]] && { echo c; return; }
  echo js
}
wants() { for t in "${targets[@]}"; do [ "$(kind "$t")" = "$1" ] && return 0; done; return 1; }

AFL_DIR=$ROOT/target/afl
OUT=${CVLAN_FUZZ_OUT:-$ROOT/target/fuzz-out}
C_BIN=$AFL_DIR/c/charon_plugin
SS_SRC=${CVLAN_SS_SRC:-}

# The configured strongSwan tree native/strongswan/build.sh unpacks (headers of the installed charon).
find_ss_src() {
  [ -n "$SS_SRC" ] && return 0
  local v
  v=$(/usr/lib/ipsec/charon --version 2>/dev/null | sed -n 's/.*strongSwan \([0-9][0-9.]*\).*/\1/p' | head -n1)
  local d=${CVLAN_SS_CACHE:-$ROOT/.cache}/strongswan-$v
  [ -f "$d/config.h" ] && { SS_SRC=$d; return 0; }
  echo "fuzz.sh: no configured strongSwan source tree (run native/strongswan/build.sh, or set CVLAN_SS_SRC)" >&2
  return 1
}

build_rust() {
  echo "[fuzz] building the Rust targets (cargo afl build)"
  CARGO_TARGET_DIR=$AFL_DIR cargo afl build --quiet --release -p cvlan-fuzz --features afl --bins
}

build_c() {
  find_ss_src || return 1
  echo "[fuzz] building the C target (afl-clang-fast, ASan) against $SS_SRC"
  mkdir -p "$(dirname "$C_BIN")"
  AFL_QUIET=1 AFL_USE_ASAN=1 afl-clang-fast -O1 -g -std=gnu99 -Wall -Wno-unused-parameter \
    -include "$SS_SRC/config.h" -I"$SS_SRC/src/libstrongswan" -I"$SS_SRC/src/libcharon" \
    -o "$C_BIN" fuzz/c/ipc_frames.c \
    -L/usr/lib/ipsec -l:libcharon.so.0 -l:libstrongswan.so.0 -lpthread -Wl,-rpath,/usr/lib/ipsec
}

build_js() {
  echo "[fuzz] preparing the TypeScript targets (tsc, jsfuzz)"
  if [ ! -f fuzz/js/node_modules/.stamp ] || ! cmp -s fuzz/js/package-lock.json fuzz/js/node_modules/.stamp; then
    npm ci --prefix fuzz/js --no-audit --no-fund --loglevel=error >/dev/null || return 1
    cp fuzz/js/package-lock.json fuzz/js/node_modules/.stamp
  fi
  npx tsc -p tsconfig.json
}

if [ $build = 1 ]; then
  if wants rust; then build_rust || { echo "[fuzz] Rust build failed" >&2; exit 2; }; fi
  if wants c; then build_c || { echo "[fuzz] C build failed" >&2; exit 2; }; fi
  if wants js; then build_js || { echo "[fuzz] TypeScript preparation failed" >&2; exit 2; }; fi
fi
[ $run = 1 ] || exit 0

# AFL++ on a shared machine: no core pinning, no CPU governor or core_pattern demands, no UI;
# a test case that runs 5 s is a hang.
export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
HANG_MS=5000

stat_of() { sed -n "s/^$2 *: *//p" "$1" | head -n1; }

run_afl() { # target, binary, afl-fuzz command...
  local t=$1 bin=$2; shift 2
  local out=$OUT/$t
  rm -rf "$out" && mkdir -p "$out"
  "$@" -V "$seconds" -t "$HANG_MS" -m none -i "fuzz/corpus/$t" -o "$out" -- "$bin" >"$out/afl.log" 2>&1
  local rc=$? stats=$out/default/fuzzer_stats
  if [ ! -f "$stats" ]; then
    tail -n 20 "$out/afl.log" >&2
    echo "fuzz $t: afl-fuzz did not start (exit $rc, log $out/afl.log)"
    return 2
  fi
  local crashes hangs
  crashes=$(stat_of "$stats" saved_crashes); crashes=${crashes:-$(stat_of "$stats" unique_crashes)}
  hangs=$(stat_of "$stats" saved_hangs); hangs=${hangs:-$(stat_of "$stats" unique_hangs)}
  echo "fuzz $t: $(stat_of "$stats" run_time) s, $(stat_of "$stats" execs_done) execs," \
    "$(stat_of "$stats" corpus_count) paths, $(stat_of "$stats" edges_found) edges" \
    "($(stat_of "$stats" bitmap_cvg) of the map), ${crashes:-?} crashes, ${hangs:-?} hangs"
  if [ "${crashes:-1}" != 0 ] || [ "${hangs:-1}" != 0 ]; then
    echo "fuzz $t: findings in $out/default/crashes and $out/default/hangs" >&2
    return 1
  fi
}

run_js() {
  local t=$1
  local out=$OUT/$t
  rm -rf "$out" && mkdir -p "$out/corpus"
  cp fuzz/corpus/"$t"/* "$out/corpus/"
  local start=$SECONDS
  # jsfuzz runs until it finds a crash; the time limit ends it otherwise (exit 124). Its
  # first test case also loads and instruments the modules, hence the generous hang limit.
  (cd fuzz/js && timeout --kill-after=10 "$seconds" \
    node node_modules/jsfuzz/build/src/index.js "targets/$t.js" "$out/corpus" \
    --exact-artifact-path="$out/crash" --rss-limit-mb=2048 --timeout=60) >"$out/jsfuzz.log" 2>&1
  local elapsed=$((SECONDS - start))
  local last execs cov
  last=$(grep -E '^#[0-9]+ ' "$out/jsfuzz.log" | tail -n1)
  execs=$(sed -n 's/^#\([0-9]*\) .*/\1/p' <<<"$last")
  cov=$(sed -n 's/.*cov: \([0-9]*\).*/\1/p' <<<"$last")
  local paths
  paths=$(find "$out/corpus" -type f | wc -l)
  if [ -e "$out/crash" ] || grep -q -e '^crash was written' -e '^=====' "$out/jsfuzz.log"; then
    echo "fuzz $t: ${elapsed} s, ${execs:-0} execs, $paths paths, ${cov:-0} coverage points, 1 crash"
    grep -A 12 '^=====' "$out/jsfuzz.log" | head -n 20 >&2
    echo "fuzz $t: crash input in $out/crash (log $out/jsfuzz.log)" >&2
    return 1
  fi
  if [ -z "$last" ]; then
    tail -n 20 "$out/jsfuzz.log" >&2
    echo "fuzz $t: jsfuzz did not run (log $out/jsfuzz.log)"
    return 2
  fi
  echo "fuzz $t: ${elapsed} s, $execs execs, $paths paths, $cov coverage points, 0 crashes, 0 hangs"
}

status=0
for t in "${targets[@]}"; do
  case $(kind "$t") in
    rust)
      bin=$AFL_DIR/release/$t
      [ -x "$bin" ] || { echo "fuzz $t: $bin not built"; status=2; continue; }
      run_afl "$t" "$bin" cargo afl fuzz ;;
    c)
      [ -x "$C_BIN" ] || { echo "fuzz $t: $C_BIN not built"; status=2; continue; }
      run_afl "$t" "$C_BIN" afl-fuzz ;;
    js)
      run_js "$t" ;;
  esac
  rc=$?
  [ $rc -gt $status ] && status=$rc
done
exit $status
