#!/bin/sh
# Builds the charon plugin "cvlan" against the upstream source of the strongSwan
# version that is installed, and installs it into charon's plugin directory.
#
# Idempotent: the source is fetched and configured once (cached under .cache/ in
# the repository); the plugin is recompiled only when a source file changed and
# reinstalled only when the built file differs from the installed one.
#
# Environment:
#   CVLAN_SS_CACHE       cache directory        (default: <repo>/.cache)
#   CVLAN_SS_PLUGIN_DIR  install directory      (default: /usr/lib/ipsec/plugins)
#   CVLAN_SS_NO_INSTALL  set to 1 to build only
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${CVLAN_SS_CACHE:-$repo/.cache}
plugin_dir=${CVLAN_SS_PLUGIN_DIR:-/usr/lib/ipsec/plugins}
charon_bin=/usr/lib/ipsec/charon

die() { echo "build.sh: $*" >&2; exit 1; }
log() { echo "build.sh: $*" >&2; }

# The plugin uses charon's structures directly (no stable ABI), so
# the headers must come from exactly the installed upstream version.
installed_version() {
    if [ -x "$charon_bin" ]; then
        v=$("$charon_bin" --version 2>/dev/null | sed -n 's/.*strongSwan \([0-9][0-9.]*\).*/\1/p' | head -n1)
        [ -n "$v" ] && { echo "$v"; return; }
    fi
    v=$(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null | sed 's/^[0-9]*://; s/-[^-]*$//')
    [ -n "$v" ] && { echo "$v"; return; }
    die "cannot find the installed charon ($charon_bin); install strongswan-charon"
}

version=$(installed_version)
src="$cache/strongswan-$version"
log "installed charon is strongSwan $version"

ensure_deb_src() {
    if grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ 2>/dev/null \
        || grep -qs '^deb-src' /etc/apt/sources.list 2>/dev/null; then
        return
    fi
    [ -f /etc/apt/sources.list.d/debian.sources ] || die "no deb-src entry and no /etc/apt/sources.list.d/debian.sources to derive one from"
    [ "$(id -u)" = 0 ] || die "need root to add a deb-src entry to /etc/apt/sources.list.d/"
    log "adding /etc/apt/sources.list.d/debian-src.sources"
    sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > /etc/apt/sources.list.d/debian-src.sources
    apt-get update -qq >&2 || die "apt-get update failed"
}

fetch_source() {
    dl="$cache/download"
    mkdir -p "$dl"
    orig=$(ls "$dl"/strongswan_"$version".orig.tar.* 2>/dev/null | head -n1 || true)
    if [ -z "$orig" ]; then
        ensure_deb_src
        pkgver=$(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null || true)
        spec=strongswan
        [ -n "$pkgver" ] && spec="strongswan=$pkgver"
        log "downloading the source tarball of $spec"
        # Only the upstream tarball matters; the Debian patch tarball of a
        # security update may be missing from the mirror, so its failure is
        # tolerated as long as the upstream tarball arrived.
        (cd "$dl" && apt-get source --download-only --tar-only "$spec" >&2) || true
        orig=$(ls "$dl"/strongswan_"$version".orig.tar.* 2>/dev/null | head -n1 || true)
        [ -n "$orig" ] || die "apt-get source did not deliver strongswan_$version.orig.tar.*"
    fi
    log "unpacking $(basename "$orig")"
    tmp="$cache/unpack.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    tar -xf "$orig" -C "$tmp"
    [ -d "$tmp/strongswan-$version" ] || { rm -rf "$tmp"; die "$(basename "$orig") does not contain strongswan-$version/"; }
    mv "$tmp/strongswan-$version" "$src"
    rm -rf "$tmp"
}

[ -f "$src/configure" ] || fetch_source

src_version=$(sed -n 's/^AC_INIT(\[strongSwan\],\[\([^]]*\)\].*/\1/p' "$src/configure.ac" | head -n1)
[ "$src_version" = "$version" ] || die "source in $src is strongSwan '$src_version' but the installed charon is $version; a plugin compiled against other headers would not match charon's structures (remove $src and rerun)"

if [ ! -f "$src/config.h" ]; then
    log "configuring $src (once)"
    (cd "$src" && ./configure --disable-defaults --enable-charon --enable-ikev2 --enable-vici >"$cache/configure-$version.log" 2>&1) \
        || die "configure failed, see $cache/configure-$version.log"
fi

make -C "$here" SS_SRC="$src" BUILD="$cache/cvlan-plugin" >&2

so="$cache/cvlan-plugin/libstrongswan-cvlan.so"
if [ "${CVLAN_SS_NO_INSTALL:-0}" = 1 ]; then
    log "built $so (not installed)"
    exit 0
fi
dest="$plugin_dir/libstrongswan-cvlan.so"
if cmp -s "$so" "$dest"; then
    log "$dest is up to date"
else
    [ -w "$plugin_dir" ] || die "cannot write $plugin_dir (run as root, or set CVLAN_SS_NO_INSTALL=1)"
    # Install by rename so a running charon keeps its mapped copy intact.
    install -m 0644 "$so" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    log "installed $dest"
fi
