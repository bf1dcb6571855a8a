#!/bin/sh
# Builds the Dockerfile with buildah (chroot isolation, no Docker engine, no registry) from what
# this checkout already built on the host: dist/ (tsc), the native addon in build/, the charon
# plugin. Used by the container test and by anyone who wants an image on such a machine.
#
#   deploy/container/build-local.sh        prints the image name (localhost/cvlan-vrouter:<hash>)
#
# Every input (Dockerfile, deploy/container/, the built files, package-lock.json) goes into the
# tag's hash, so an unchanged tree reuses the image; `--layers` reuses the apt layer otherwise.
# Environment: CVLAN_IMAGE_CACHE (default /var/cache/cvlan-test).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${CVLAN_IMAGE_CACHE:-/var/cache/cvlan-test}
base=localhost/cvlan-base:bookworm-node20
die() { echo "build-local.sh: $*" >&2; exit 1; }
log() { echo "build-local.sh: $*" >&2; }

cd "$repo"
[ -f dist/src/cli/cvlan-vrouter.js ] || die "dist/ is missing: run npx tsc -p tsconfig.json"
addon=$(ls build/cvlan.linux-*.node 2>/dev/null | head -n1)
[ -n "$addon" ] || die "build/cvlan.linux-*.node is missing: run npm run build:native"
plugin=.cache/cvlan-plugin/libstrongswan-cvlan.so
[ -f "$plugin" ] || plugin=/usr/lib/ipsec/plugins/libstrongswan-cvlan.so
[ -f "$plugin" ] || die "the charon plugin is not built: run native/strongswan/build.sh"

# One build at a time: tests of several checkouts share the cache and buildah's storage.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
CVLAN_IMAGE_CACHE=$cache "$here/local-base.sh" "$base"

# Production dependencies once per package-lock.json (prebuilt binaries are in the packages).
lock=$(sha256sum package-lock.json | cut -c1-16)
mods="$cache/node-modules-$lock"
if [ ! -f "$mods/.complete" ]; then
  log "installing production npm packages ($lock)"
  rm -rf "$mods" && mkdir -p "$mods"
  cp package.json package-lock.json "$mods/"
  (cd "$mods" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  # Only this platform's prebuilt binaries, as the Dockerfile's build stage does.
  find "$mods/node_modules" -type d -name prebuilds -prune | while read -r d; do
    find "$d" -mindepth 1 -maxdepth 1 ! -name 'linux-x64*' -exec rm -rf {} +
  done
  touch "$mods/.complete"
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/src/build" "$stage/src/dist/test"
cp package.json "$stage/src/"
cp -a dist/src "$stage/src/dist/src"
cp -a dist/test/harness "$stage/src/dist/test/harness"
cp "$addon" "$plugin" "$stage/src/build/"
strip --strip-debug "$stage/src/build/"*
key=$( { sha256sum Dockerfile .dockerignore deploy/container/*; echo "$lock"; (cd "$stage" && find src -type f -print0 | sort -z | xargs -0 sha256sum); } | sha256sum | cut -c1-16)
image=localhost/cvlan-vrouter:$key
if buildah inspect --type image "$image" >/dev/null 2>&1; then
  log "$image is up to date"
  echo "$image"
  exit 0
fi

artifacts=localhost/cvlan-artifacts:$key
if ! buildah inspect --type image "$artifacts" >/dev/null 2>&1; then
  ctr=$(buildah from --quiet scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$stage/src" "$mnt/src"
  cp -a "$mods/node_modules" "$mnt/src/node_modules"
  buildah umount "$ctr" >/dev/null
  buildah commit --quiet --rm "$ctr" "$artifacts" >/dev/null
fi

log "building $image"
buildah build --isolation chroot --layers --force-rm --quiet --format docker \
  --build-arg RUNTIME_IMAGE="$base" --build-context build=docker-image://"$artifacts" \
  -t "$image" . >"$cache/build-$key.log" 2>&1 || { tail -n 30 "$cache/build-$key.log" >&2; die "image build failed (log: $cache/build-$key.log)"; }
# Older builds of this checkout's image are of no further use.
for old in $(buildah images --format '{{.Name}}:{{.Tag}}' | grep -E '^localhost/cvlan-(vrouter|artifacts):' | grep -v ":$key\$"); do
  buildah rmi "$old" >/dev/null 2>&1 || true
done
echo "$image"
