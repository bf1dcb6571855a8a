#!/bin/sh
# Makes the release tarball a VM installs from (deploy/install.sh): everything that runs, built on
# this machine — the compiled TypeScript, the native addon, the charon plugin, production npm
# packages, and the Node.js 20 binary itself (distributions ship other versions) — plus the
# systemd unit and the installer. Built on Debian 12, it runs on Debian 12 (glibc 2.36) and later.
#
#   deploy/package.sh [OUT.tar.gz]     default: cvlan-vrouter-<version>-linux-x64.tar.gz
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
die() { echo "package.sh: $*" >&2; exit 1; }
version=$(node -p 'require("./package.json").version')
out=${1:-$repo/cvlan-vrouter-$version-linux-x64.tar.gz}
[ -f dist/src/cli/cvlan-vrouter.js ] || die "dist/ is missing: run npx tsc -p tsconfig.json"
addon=$(ls build/cvlan.linux-*.node 2>/dev/null | head -n1)
[ -n "$addon" ] || die "the native addon is missing: run npm run build:native"
plugin=.cache/cvlan-plugin/libstrongswan-cvlan.so
[ -f "$plugin" ] || plugin=/usr/lib/ipsec/plugins/libstrongswan-cvlan.so
[ -f "$plugin" ] || die "the charon plugin is not built: run native/strongswan/build.sh"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
top="$stage/cvlan-vrouter-$version"
mkdir -p "$top/build" "$top/dist/test" "$top/node/bin" "$top/deploy/systemd" "$top/docs"
cp package.json package-lock.json "$top/"
cp -a dist/src "$top/dist/src"
cp -a dist/test/harness "$top/dist/test/harness"
cp "$addon" "$plugin" "$top/build/"
strip --strip-debug "$top/build/"*
cp "$(command -v node)" "$top/node/bin/node"
cp deploy/install.sh "$top/"
cp deploy/systemd/cvlan-vrouter.service "$top/deploy/systemd/"
cp docs/deployment.md docs/configuration.md "$top/docs/"
(cd "$top" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
find "$top/node_modules" -type d -name prebuilds -prune | while read -r d; do
  find "$d" -mindepth 1 -maxdepth 1 ! -name 'linux-x64*' -exec rm -rf {} +
done
tar -C "$stage" -czf "$out" "cvlan-vrouter-$version"
echo "$out"
