#!/bin/sh
# Makes a local stand-in for the Dockerfile's base image (node:20-bookworm-slim) where no image
# registry is reachable: a minimal Debian bookworm from debootstrap, this machine's Node.js 20
# (bookworm ships 18) and, when present, the machine's extra CA certificates so apt/npm/cargo
# inside a build trust the same TLS proxy the host does. Idempotent: the image is made once per
# tag and the debootstrap tree is cached.
#
#   deploy/container/local-base.sh [TAG]      default TAG: localhost/cvlan-base:bookworm-node20
#
# Environment: CVLAN_IMAGE_CACHE (default /var/cache/cvlan-test), DEBIAN_MIRROR.
set -eu
tag=${1:-localhost/cvlan-base:bookworm-node20}
cache=${CVLAN_IMAGE_CACHE:-/var/cache/cvlan-test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
node_bin=$(command -v node)
npm_dir=$(dirname "$(dirname "$node_bin")")/lib/node_modules/npm

die() { echo "local-base.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap)"
for t in debootstrap buildah; do command -v "$t" >/dev/null || die "$t is not installed (scripts/setup.sh installs it)"; done
"$node_bin" -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || die "Node.js >= 20 required on the host"

if buildah inspect --type image "$tag" >/dev/null 2>&1; then
  echo "local-base.sh: $tag exists" >&2
  exit 0
fi

mkdir -p "$cache"
root="$cache/bookworm-minbase"
if [ ! -f "$root/.complete" ]; then
  rm -rf "$root" "$root.tmp"
  echo "local-base.sh: debootstrap --variant=minbase bookworm ($mirror)" >&2
  debootstrap --variant=minbase bookworm "$root.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
  # What node:*-slim leaves out as well: apt lists, caches, docs.
  rm -rf "$root.tmp"/var/lib/apt/lists/* "$root.tmp"/var/cache/apt/*.bin "$root.tmp"/var/cache/apt/archives/*.deb \
         "$root.tmp"/usr/share/doc/* "$root.tmp"/usr/share/man/* "$root.tmp"/usr/share/info/*
  touch "$root.tmp/.complete"
  mv "$root.tmp" "$root"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctr=$(buildah from --quiet scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
mnt=$(buildah mount "$ctr")
tar -C "$root" --exclude=./.complete -cf - . | tar -C "$mnt" -xf -
install -m 0755 "$node_bin" "$mnt/usr/local/bin/node"
mkdir -p "$mnt/usr/local/lib/node_modules"
cp -a "$npm_dir" "$mnt/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
ca_env=
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mkdir -p "$mnt/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
  cat /usr/local/share/ca-certificates/*.crt >"$mnt/usr/local/share/ca-certificates/cvlan-local-bundle.pem"
  ca_env=/usr/local/share/ca-certificates/cvlan-local-bundle.pem
fi
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  ${ca_env:+--env NODE_EXTRA_CA_CERTS=$ca_env} \
  --cmd node "$ctr"
buildah commit --quiet --rm "$ctr" "$tag" >/dev/null
trap 'rm -rf "$work"' EXIT
echo "local-base.sh: made $tag" >&2
