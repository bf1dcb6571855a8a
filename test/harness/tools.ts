/**
 * Where the harness finds the programs it drives. Every path can be overridden by an environment
 * variable so a CI image or a developer machine with other install locations needs no code change.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

function pick(envName: string, fallback: string): string {
  const v = process.env[envName];
  return v !== undefined && v !== '' ? v : fallback;
}

/** Program paths; names without a slash are looked up in PATH. */
export const tools = {
  /** iproute2 `ip`. Env CVLAN_IP, default `ip`. */
  ip: pick('CVLAN_IP', 'ip'),
  /** wireguard-tools `wg`. Env CVLAN_WG, default `wg`. */
  wg: pick('CVLAN_WG', 'wg'),
  /** wireguard-go built with TUN/UDP offloads. Env CVLAN_WIREGUARD_GO. */
  wireguardGo: pick('CVLAN_WIREGUARD_GO', '/opt/cvlan-tools/bin/wireguard-go'),
  /** boringtun-cli 0.7. Env CVLAN_BORINGTUN. */
  boringtun: pick('CVLAN_BORINGTUN', '/opt/cvlan-tools/bin/boringtun-cli'),
  /** Env CVLAN_IPERF3, default `iperf3`. */
  iperf3: pick('CVLAN_IPERF3', 'iperf3'),
  /** Env CVLAN_PING, default `ping`. */
  ping: pick('CVLAN_PING', 'ping'),
  /** Env CVLAN_NFT, default `nft`. */
  nft: pick('CVLAN_NFT', 'nft'),
  /** strongSwan daemon. Env CVLAN_CHARON, default `/usr/lib/ipsec/charon`. */
  charon: pick('CVLAN_CHARON', '/usr/lib/ipsec/charon'),
  /** Env CVLAN_SWANCTL, default `swanctl`. */
  swanctl: pick('CVLAN_SWANCTL', 'swanctl'),
  /** strongSwan's PKI tool (certificates for IKE auth tests). Env CVLAN_PKI, default `pki`. */
  pki: pick('CVLAN_PKI', 'pki'),
  /** Node.js used to run cvlan-vrouter. Env CVLAN_NODE, default the running node. */
  node: pick('CVLAN_NODE', process.execPath),
  /** util-linux, used to give children a parent-death signal and a private mount namespace. */
  setpriv: pick('CVLAN_SETPRIV', 'setpriv'),
  unshare: pick('CVLAN_UNSHARE', 'unshare'),
  /** BIRD 2 (the BGP speaker, and the LAN/VPC router of routing tests). Env CVLAN_BIRD, default `bird`. */
  bird: pick('CVLAN_BIRD', 'bird'),
  /** Env CVLAN_BIRDC, default `birdc`. */
  birdc: pick('CVLAN_BIRDC', 'birdc'),
} as const;

export type ToolName = keyof typeof tools;

/** Absolute path of an executable, or undefined when it is not installed. */
export function resolveTool(path: string): string | undefined {
  const candidates = path.includes('/')
    ? [path]
    : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter).map((d) => join(d, path));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here; try the next PATH entry
    }
  }
  return undefined;
}

/**
 * Why a network test cannot run here, or undefined when it can: not root, or one of the named
 * tools missing. Tests pass the result to tap's `skip` so the reason is printed.
 */
export function missingPrerequisites(...names: ToolName[]): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'network tests need root (network namespaces, TUN, nftables)';
  }
  const missing = ['ip', ...names].filter((n) => resolveTool(tools[n as ToolName]) === undefined);
  if (missing.length > 0) {
    return `missing tools: ${missing.map((n) => `${n} (${tools[n as ToolName]})`).join(', ')}`;
  }
  return undefined;
}
