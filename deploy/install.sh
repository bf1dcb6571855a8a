#!/bin/sh
# Installs cvlan-vrouter on a Debian 12 host from its release tarball (deploy/package.sh) and
# prepares, without starting, the systemd service. Idempotent: run it again to upgrade.
#
#   install.sh                      from the unpacked tarball this script is part of
#   install.sh URL|FILE.tar.gz      downloads/unpacks that tarball first
#
# What it does: Debian packages (strongSwan charon + swanctl + plugins, wireguard-tools,
# iproute2), /opt/cvlan-vrouter, the charon plugin, /usr/local/bin/{cvlan-vrouter,vrouterctl},
# the unit, the forwarding/rp_filter settings in /etc/sysctl.d/90-cvlan.conf, and
# /etc/strongswan.d/cvlan-swanctl.conf so `swanctl` reaches the vrouter's charon without --uri.
set -eu
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "install.sh: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root"
prefix=/opt/cvlan-vrouter

src=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  case "$1" in
    http://*|https://*) say "downloading $1"; curl -fsSL --retry 5 -o "$tmp/release.tar.gz" "$1" || die "cannot download $1" ;;
    *) cp "$1" "$tmp/release.tar.gz" ;;
  esac
  tar -C "$tmp" -xzf "$tmp/release.tar.gz"
  src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'cvlan-vrouter-*' | head -n1)
  [ -n "$src" ] || die "$1 is not a cvlan-vrouter release tarball"
fi
[ -f "$src/dist/src/cli/cvlan-vrouter.js" ] || die "$src holds no cvlan-vrouter release"

pkgs="iproute2 ca-certificates wireguard-tools strongswan-charon strongswan-swanctl libstrongswan-standard-plugins libcharon-extra-plugins"
missing=
for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; done
if [ -n "$missing" ]; then
  say "installing Debian packages:$missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Debian's own charon service would hold UDP 500/4500: the vrouter runs its own charon.
systemctl disable --now strongswan-starter.service strongswan.service 2>/dev/null || true

say "installing into $prefix"
rm -rf "$prefix.new"
mkdir -p "$prefix.new"
cp -a "$src/." "$prefix.new/"
rm -rf "$prefix.old"
[ -d "$prefix" ] && mv "$prefix" "$prefix.old"
mv "$prefix.new" "$prefix"
rm -rf "$prefix.old"
install -m 0644 "$prefix"/build/libstrongswan-cvlan.so /usr/lib/ipsec/plugins/libstrongswan-cvlan.so
for cmd in cvlan-vrouter vrouterctl; do
  # The daemon's V8 flags (src/cli/node-flags.ts): a young generation capped at 2 MiB per semi-space.
  flags=; [ "$cmd" = cvlan-vrouter ] && flags=' --max-semi-space-size=2'
  printf '#!/bin/sh\nexec %s/node/bin/node%s %s/dist/src/cli/%s.js "$@"\n' "$prefix" "$flags" "$prefix" "$cmd" >/usr/local/bin/$cmd
  chmod 0755 /usr/local/bin/$cmd
done
install -D -m 0644 "$prefix/deploy/systemd/cvlan-vrouter.service" /etc/systemd/system/cvlan-vrouter.service
install -d -m 0750 /etc/cvlan
install -d -m 0700 /var/lib/cvlan
# A minimal system may lack these (procps and strongSwan's packages usually make them).
mkdir -p /etc/strongswan.d /etc/sysctl.d
cat >/etc/strongswan.d/cvlan-swanctl.conf <<'CONF'
swanctl {
    socket = unix:///run/cvlan-vrouter/charon/charon.vici
}
CONF
cat >/etc/sysctl.d/90-cvlan.conf <<'CONF'
# cvlan-vrouter: packets to local subnets and the vrouter itself cross this host's IP stack.
net.ipv4.ip_forward = 1
net.ipv6.conf.all.forwarding = 1
# Loose reverse-path filtering: decapsulated packets arrive on TUN devices.
net.ipv4.conf.all.rp_filter = 2
net.ipv4.conf.default.rp_filter = 2
CONF
sysctl -q -p /etc/sysctl.d/90-cvlan.conf 2>/dev/null || say "could not apply /etc/sysctl.d/90-cvlan.conf now (applied at boot)"
systemctl daemon-reload 2>/dev/null || true
say "installed $("$prefix/node/bin/node" "$prefix/dist/src/cli/cvlan-vrouter.js" version 2>/dev/null || echo cvlan-vrouter)"
say "next: cvlan-vrouter init --controller URL --token TOKEN && systemctl enable --now cvlan-vrouter"
