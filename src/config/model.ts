/**
 * The desired state: what the vrouter should be doing, validated and normalized from the
 * controller JSON (`./controller.ts`) and the local TOML (`./local.ts`) by `./load.ts`.
 *
 * Everything here is frozen. Field names are camelCase (TypeScript), the input documents use
 * snake_case; `docs/configuration.md` maps one to the other. Every prefix is canonical: network
 * address (host bits zero), lower-case, IPv6 compressed (RFC 5952).
 *
 * Secrets (PSKs, EAP passwords, private keys) are `Secret` objects: bytes in sodium_malloc'd
 * memory that print as `<redacted>` through `util.inspect`, `JSON.stringify`, `String()` and
 * template literals; only `use()`/`text()` hand out the value, to the code that applies it.
 */

import { inspect } from 'node:util';
import { createRequire } from 'node:module';
import { secureBuffer, type SecureKey } from '../secrets/keys.js';

interface Sodium {
  sodium_memzero(buf: Buffer): void;
  crypto_generichash(out: Buffer, input: Buffer, key?: Buffer): void;
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

export const REDACTED = '<redacted>';

/** A secret value in secure memory. Never printed; `dispose()` zeroes it. */
export class Secret {
  #key: SecureKey | null;
  /** Where the value came from: the document in clear, a sealed box, or the vrouter's state dir. */
  readonly origin: 'plain' | 'sealed' | 'state';

  private constructor(key: SecureKey, origin: Secret['origin']) {
    this.#key = key;
    this.origin = origin;
    Object.freeze(this);
  }

  /** Takes ownership of `key` (secure memory). */
  static adopt(key: SecureKey, origin: Secret['origin']): Secret {
    return new Secret(key, origin);
  }

  /**
   * Copies `bytes` into secure memory. The caller still owns (and should zero) `bytes`. A
   * JavaScript string the value came from cannot be wiped; keep such strings short-lived.
   */
  static fromBytes(bytes: Buffer, origin: Secret['origin']): Secret {
    const k = secureBuffer(bytes.length);
    bytes.copy(k.bytes);
    return new Secret(k, origin);
  }

  static fromText(text: string, origin: Secret['origin']): Secret {
    const tmp = Buffer.from(text, 'utf8');
    try {
      return Secret.fromBytes(tmp, origin);
    } finally {
      sodium.sodium_memzero(tmp);
    }
  }

  get length(): number {
    return this.#live().bytes.length;
  }

  get disposed(): boolean {
    return this.#key === null;
  }

  /** Lends the bytes to `fn`; do not keep a reference past the call. */
  use<T>(fn: (bytes: Buffer) => T): T {
    return fn(this.#live().bytes);
  }

  /** The value as UTF-8 text, for APIs that only take strings (VICI `load-shared`, PEM parsers). */
  text(): string {
    return this.#live().bytes.toString('utf8');
  }

  /** Constant-time comparison of two secrets' values. */
  equals(other: Secret): boolean {
    const a = this.#live().bytes;
    const b = other.#live().bytes;
    if (a.length !== b.length) return false;
    let d = 0;
    for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
    return d === 0;
  }

  /** BLAKE2b-256 of the value keyed with `key` (16..64 bytes): lets a version hash cover secrets without revealing them. */
  keyedDigest(key: Buffer): string {
    const out = Buffer.alloc(32);
    sodium.crypto_generichash(out, this.#live().bytes, key);
    return out.toString('hex');
  }

  dispose(): void {
    this.#key?.dispose();
    this.#key = null;
  }

  #live(): SecureKey {
    if (this.#key === null) throw new Error('the secret was disposed');
    return this.#key;
  }

  toJSON(): string {
    return REDACTED;
  }
  toString(): string {
    return REDACTED;
  }
  [Symbol.toPrimitive](): string {
    return REDACTED;
  }
  [inspect.custom](): string {
    return REDACTED;
  }
}

/** A certificate, CA or private key: PEM text in the document, or a file the operator placed. */
export type PemSource = { kind: 'pem'; pem: string } | { kind: 'file'; path: string };
/** The same for private keys: the PEM is a secret. */
export type SecretPemSource = { kind: 'pem'; pem: Secret } | { kind: 'file'; path: string };

export type TunnelAuth =
  | {
      method: 'psk';
      psk: Secret;
      /** Shorter than `MIN_PSK_BYTES` and accepted only because the tunnel says `allow_weak_psk`. */
      weak: boolean;
    }
  | { method: 'pubkey'; certificate: PemSource; privateKey: SecretPemSource; ca: PemSource }
  | {
      method: 'eap';
      eapMethod: 'mschapv2';
      /** `server`: we verify the peer's EAP identity (and authenticate with our certificate). `client`: we log in to the peer. */
      role: 'server' | 'client';
      eapIdentity: string;
      eapSecret: Secret;
      certificate?: PemSource;
      privateKey?: SecretPemSource;
      ca?: PemSource;
    };

export interface IpsecTunnelSpec {
  /** Unique on the vrouter (it names the charon connection). */
  id: string;
  type: 'ipsec';
  remoteId: string;
  /** Host name or IP address we initiate to; undefined = responder only. */
  remoteAddress?: string;
  /** Our IKE identity; undefined = charon's default (our IP address). */
  localId?: string;
  auth: TunnelAuth;
  localSubnets: readonly string[];
  remoteSubnets: readonly string[];
  ikeProposals: readonly string[];
  espProposals: readonly string[];
  /** Dead-peer detection interval, s (0 = off); undefined = 30. */
  dpdDelay?: number;
  /** Rekey intervals; undefined = charon's defaults as set in ../ipsec/connections.ts (4 h IKE, 1 h CHILD, no volume limit). */
  ikeRekeySeconds?: number;
  childRekeySeconds?: number;
  childRekeyBytes?: number;
  childRekeyPackets?: number;
}

export interface WireguardPeerSpec {
  /** Base64 Curve25519 public key (the peer's identity within the tenant). */
  publicKey: string;
  name?: string;
  allowedIps: readonly string[];
  /** `host:port`, `ip:port` or `[ipv6]:port` as given (host names are resolved at apply time). */
  endpoint?: string;
  presharedKey?: Secret;
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
}

export interface WireguardInterfaceSpec {
  /** UDP port, 1..65535. */
  listenPort: number;
  /** Undefined when the document gives none and no state dir was available to keep a generated one. */
  privateKey?: Secret;
  /** Base64 public key of `privateKey`, for showing to operators and the controller. */
  publicKey?: string;
}

export interface TunSpec {
  /** Interface name, 1-15 characters. */
  name: string;
  /** Interface addresses (CIDR; host bits are the address). */
  addresses: readonly string[];
  /** Bytes. */
  mtu: number;
  /** Prefixes routed to this TUN inside the tenant. */
  subnets: readonly string[];
  /** Network namespace to create the device in; undefined = the daemon's. */
  netns?: string;
}

export type NextHop =
  | { kind: 'wireguard'; peer: string }
  | { kind: 'ipsec'; tunnel: string }
  | { kind: 'tun'; device: string };

/** One entry of the tenant's routing table (longest prefix wins; identical prefixes are refused). */
export interface RouteSpec {
  prefix: string;
  via: NextHop;
}

/** A tenant's BGP sessions and what it announces (validated by ./bgp.ts, rendered by ../routing/bird-conf.ts). */
export interface TenantBgpSpec {
  /** Local AS of this tenant's sessions. */
  asn: number;
  /** IPv4 router id for this tenant's sessions; undefined = the BGP speaker's own. */
  routerId?: string;
  neighbors: readonly {
    /** Unique in the tenant. */
    name: string;
    address: string;
    asn: number;
    /** Source address of the session; undefined = chosen by the kernel. */
    localAddress?: string;
    /** Seconds. */
    holdTime: number;
    /** TCP MD5 key (RFC 2385). */
    password?: Secret;
    /**
     * Learn routes from this neighbour: at most `maxPrefixes`, only inside `allow`; with `install`,
     * into the namespace's routing table (a vrouter of one tenant). Undefined = learn nothing.
     */
    import?: { maxPrefixes: number; allow: readonly string[]; install: boolean };
  }[];
  announce: {
    /** Announce remote subnets of IPsec tunnels that are up. */
    ipsec: boolean;
    /** Announce allowed IPs of WireGuard peers with a live session. */
    wireguard: boolean;
    /** Announce the subnets of the tenant's TUN devices. */
    tun: boolean;
    /** Announced instead of the reachable prefixes they cover (while any is reachable). */
    aggregate: readonly string[];
    /** Announced for as long as the speaker runs (an anycast service address behind ECMP). */
    static: readonly string[];
    /** RFC 1997 standard communities attached to every announcement. */
    communities: readonly (readonly [number, number])[];
    /** MULTI_EXIT_DISC attached to every announcement. */
    med?: number;
  };
}

/** A virtual-IP pool of a tenant's remote-access clients (charon `load-pool`). */
export interface RemoteAccessPoolSpec {
  /** Unique on the vrouter (names the charon pool). */
  name: string;
  /** Canonical prefix the addresses are leased from (charon skips the network and broadcast addresses). */
  range: string;
  /** DNS servers handed to clients of this pool (INTERNAL_IP4/6_DNS). */
  dns: readonly string[];
  /** DNS search domains (INTERNAL_DNS_DOMAIN, RFC 8598). */
  searchDomains: readonly string[];
}

/** How a remote-access client authenticates: EAP-MSCHAPv2, its device certificate, or both (RFC 4739). */
export type RemoteAccessAuth = 'eap' | 'pubkey' | 'pubkey+eap';

/** A tenant's remote-access clients: one charon connection that serves many (../remote-access/). */
export interface RemoteAccessSpec {
  /** Unique on the vrouter with the tunnel ids (names the charon connection). */
  id: string;
  /** Our IKE identity towards the clients (the SAN of `certificate`); unique on the vrouter: it picks the tenant. */
  localId: string;
  auth: RemoteAccessAuth;
  /** The certificate and key we authenticate with. */
  certificate: PemSource;
  privateKey: SecretPemSource;
  /** The tenant's CA that issues device certificates (required with `pubkey`). */
  ca?: PemSource;
  /** PEM certificate revocation list of `ca`. */
  crl?: string;
  pools: readonly RemoteAccessPoolSpec[];
  /** What clients reach (their CHILD_SA's local traffic selectors). */
  localSubnets: readonly string[];
  /** EAP-MSCHAPv2 users; names are unique on the vrouter (charon's EAP secrets are global). */
  users: readonly { name: string; secret: Secret }[];
  /** Devices allowed to log in with a certificate: the identity (a SAN of the certificate) and, when given, the certificate. */
  devices: readonly { id: string; certificate?: string; serial?: string }[];
  /** Most concurrent clients. */
  maxClients: number;
  ikeProposals: readonly string[];
  espProposals: readonly string[];
}

export interface TenantSpec {
  id: string;
  tunnels: readonly IpsecTunnelSpec[];
  wireguard?: WireguardInterfaceSpec;
  peers: readonly WireguardPeerSpec[];
  tuns: readonly TunSpec[];
  /** Derived from peers' allowed IPs, tunnels' remote subnets and TUN subnets; most specific first. */
  routes: readonly RouteSpec[];
  /** BGP announcements of what the tenant reaches; undefined = none. */
  bgp?: TenantBgpSpec;
  /** Remote-access clients (laptops, phones); undefined = none. */
  remoteAccess?: RemoteAccessSpec;
}

/** Allows packets from `fromPrefix` in `fromTenant` to `toPrefix` in `toTenant` (one direction). */
export interface InterTenantRule {
  fromTenant: string;
  fromPrefix: string;
  toTenant: string;
  toPrefix: string;
}

export interface LocalConfig {
  controller: {
    url?: string;
    tokenFile?: string;
    /** Seconds the controller holds a long poll (the longest a change waits unseen). */
    pollInterval: number;
    /** PEM file of the CA the controller's certificate must chain to; absent: the system trust store. */
    ca?: string;
    /** The credential `init` wrote; default `<state dir>/controller/credential.json`. */
    credentialFile?: string;
    /** Seconds between periodic status reports. */
    statusInterval: number;
    /** Seconds; the longest wait between retries while the controller is away. */
    backoffMax: number;
  };
  network: {
    publicInterface?: string;
    privateInterface?: string;
    listenAddress?: string;
  };
  ipsec: {
    backend: 'strongswan';
    strongswanSocket: string;
    charonPath: string;
    /** `udp`: every CHILD_SA uses ESP-in-UDP; `auto`: ESP without UDP unless NAT is detected. */
    espEncapsulation: 'udp' | 'auto';
  };
  performance: {
    workerThreads: number;
  };
  admin: {
    /** Unix socket path, or null for none. */
    socket: string | null;
    /** `host:port` of the optional TCP listener. */
    tcp?: { host: string; port: number };
    tokenFile?: string;
  };
  state: {
    dir: string;
  };
  /** Active-passive pair (docs/ha.md); absent without an `[ha]` table. */
  ha?: HaConfig;
}

/** `[ha]`: this node's half of an active-passive pair. Units are in the field names. */
export interface HaConfig {
  /** 1..255, distinct on the two nodes: names this node on the sync channel. */
  nodeId: number;
  /** This node's own address on the link to the peer (VRRP source, sync listener). */
  localAddress: string;
  /** The peer node's address (VRRP unicast peer, sync channel). */
  peerAddress: string;
  /** Interface VRRP runs on and the public VIPs live on. */
  interface: string;
  /** Floating addresses with prefix length on `interface` ("192.0.2.10/24"). */
  vips: readonly string[];
  /** Floating addresses on `privateInterface`. */
  privateVips: readonly string[];
  privateInterface?: string;
  /** VRRP virtual router id, 1..255, the same on both nodes and unique on the segment. */
  virtualRouterId: number;
  /** VRRP priority 1..254: the higher one is active when both start. */
  priority: number;
  /** Take the VIP back from a lower-priority active node (fail-back). */
  preempt: boolean;
  /** VRRP advertisement interval, milliseconds (keepalived resolution: 10 ms). */
  advertIntervalMs: number;
  /** File holding the 32-byte sync key, base64; must not be readable by group or others. */
  syncKeyFile: string;
  /** TCP port of the sync channel on both nodes. */
  syncPort: number;
  /** Largest interval between counter updates on the sync channel, milliseconds. */
  syncIntervalMs: number;
  /** Messages an outbound session/SA may send beyond what the standby acknowledged. */
  leaseMessages: number;
  /** Relay charon's `ha` plugin (IKE_SA state) through the sync channel. */
  charonHa: boolean;
  keepalivedPath: string;
}

export interface DesiredState {
  /** The vrouter the controller documents were written for (all documents must agree). */
  vrouterId?: string;
  local: LocalConfig;
  tenants: readonly TenantSpec[];
  rules: readonly InterTenantRule[];
}

/** Deep-freezes plain objects and arrays (Secret instances are already frozen). */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !(v instanceof Secret) && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

/** Every Secret inside `v`. */
export function secretsOf(v: unknown, out: Secret[] = []): Secret[] {
  if (v instanceof Secret) out.push(v);
  else if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) secretsOf(x, out);
  return out;
}

/** Zeroes every secret of a state that is no longer needed (after a newer one was applied). */
export function disposeDesiredState(state: DesiredState): void {
  for (const s of secretsOf(state)) s.dispose();
}
