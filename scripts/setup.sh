#!/usr/bin/env bash
# Installs and builds everything cvlan-vrouter needs on a fresh Debian 12 machine (run as root).
# Idempotent: every step checks what is already there and skips it.
#
#   Debian packages   iproute2, nftables, iperf3, wireguard-tools, BIRD 2, keepalived, strongSwan (charon, swanctl,
#                     kernel-libipsec), build tools for the charon plugin; for the deployment
#                     tests buildah/podman/debootstrap/uidmap (the container image), cloud-init
#                     (user-data schema), systemd (systemd-analyze)
#   peers for tests   wireguard-go (current, with offloads) and boringtun-cli, pinned, in /opt/cvlan-tools/bin
#   npm packages      `npm ci` from package-lock.json
#   fuzzing           AFL++ (Debian) and cargo-afl for the fuzz targets, jsfuzz in fuzz/js
#   native            the Node-API addon (napi build --release), the charon plugin (native/strongswan/build.sh)
#   TypeScript        tsc → dist/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=/opt/cvlan-tools/bin
WIREGUARD_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446
BORINGTUN_VERSION=0.7.1
CARGO_AFL_VERSION=0.18.2
export DEBIAN_FRONTEND=noninteractive
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the tests create network namespaces and TUN devices)"

PKGS=(iproute2 nftables iperf3 iputils-ping tcpdump socat procps psmisc util-linux kmod
      wireguard-tools bird2 keepalived
      strongswan-charon strongswan-swanctl strongswan-pki libcharon-extra-plugins
      libcharon-extauth-plugins libstrongswan-standard-plugins libstrongswan-extra-plugins
      dpkg-dev build-essential pkg-config bzip2 libgmp-dev libssl-dev gperf bison flex python3 python3-scapy ca-certificates git
      buildah podman debootstrap uidmap fuse-overlayfs cloud-init systemd curl
      afl++ libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v node >/dev/null || die "Node.js 20 is required (node not found)"
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || die "Node.js >= 20 required, found $(node --version)"
command -v cargo >/dev/null || die "Rust (cargo, via rustup) is required"
command -v go >/dev/null || die "Go is required to build wireguard-go for the interop tests"

mkdir -p "$TOOLS"
if ! go version -m "$TOOLS/wireguard-go" 2>/dev/null | grep -q "$WIREGUARD_GO_VERSION"; then
  say "building wireguard-go $WIREGUARD_GO_VERSION"
  tmp=$(mktemp -d)
  GOBIN="$tmp" GOFLAGS=-mod=mod go install "golang.zx2c4.com/wireguard@$WIREGUARD_GO_VERSION"
  install -m 0755 "$tmp/wireguard" "$TOOLS/wireguard-go"
  rm -rf "$tmp"
fi
if ! "$TOOLS/boringtun-cli" --version 2>/dev/null | grep -q "$BORINGTUN_VERSION"; then
  say "building boringtun-cli $BORINGTUN_VERSION"
  cargo install --quiet --locked boringtun-cli --version "$BORINGTUN_VERSION" --root /opt/cvlan-tools
fi

stamp=node_modules/.cvlan-lock-stamp
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# Fuzzing (docs/fuzzing.md): cargo-afl with the AFL++ it builds from its bundled source for
# the current Rust toolchain, and jsfuzz in its own package under fuzz/js.
if ! cargo afl --version 2>/dev/null | grep -q "^cargo-afl $CARGO_AFL_VERSION "; then
  say "installing cargo-afl $CARGO_AFL_VERSION"
  cargo install --quiet --locked cargo-afl --version "$CARGO_AFL_VERSION"
fi
if ! afl_out=$(cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$afl_out" || { printf '%s\n' "$afl_out" | tail -n 20 >&2; die "building AFL++ for cargo-afl failed"; }
fi
fuzz_stamp=fuzz/js/node_modules/.stamp
if [ ! -f "$fuzz_stamp" ] || ! cmp -s fuzz/js/package-lock.json "$fuzz_stamp"; then
  say "installing jsfuzz (fuzz/js)"
  npm ci --prefix fuzz/js --no-audit --no-fund --loglevel=error
  cp fuzz/js/package-lock.json "$fuzz_stamp"
fi

say "building the native addon"
mkdir -p build
npm run --silent build:native >build/native-build.log 2>&1 || { tail -n 60 build/native-build.log >&2; die "native addon build failed (log: build/native-build.log)"; }

if [ -x native/strongswan/build.sh ]; then
  say "building the charon plugin"
  native/strongswan/build.sh
fi

say "compiling TypeScript"
rm -rf dist
npx tsc -p tsconfig.json
say "ready ($ROOT)"
