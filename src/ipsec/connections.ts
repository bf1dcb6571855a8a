/**
 * IPsec tunnels as the control plane describes them, and their translation into charon's VICI
 * `load-conn` sections and `load-shared` secrets. Pure functions: the service applies them.
 *
 * Every CHILD_SA carries the tunnel's `if_id` (in and out), which the data plane uses to tell
 * tunnels (and later tenants) apart. By default UDP encapsulation is forced (`encap = yes`): ESP
 * then always arrives on the NAT-T port the data plane owns, which works with every peer and
 * through NAT, and takes the UDP GSO/GRO fast path. With a raw ESP socket (local
 * `[ipsec] esp_encapsulation = "auto"`) charon encapsulates only where it detects NAT.
 */
import type { ViciInputSection } from '../strongswan/vici/encoding.js';

export type IpsecAuth =
  | { method: 'psk'; psk: string }
  | {
      method: 'pubkey';
      /** Our certificate (PEM) and private key (PEM); the CA that signs the peer's certificate. */
      certificate: string;
      privateKey: string;
      ca: string;
    }
  | {
      method: 'eap';
      /** EAP-MSCHAPv2 user name and password. */
      eapIdentity: string;
      eapSecret: string;
      /** `server`: we verify the peer's EAP identity and authenticate ourselves with `certificate`.
       * `client`: we log in with EAP and verify the server's certificate against `ca`. */
      role: 'server' | 'client';
      certificate?: string;
      privateKey?: string;
      ca?: string;
    };

export interface IpsecTunnel {
  /** Stable id; the VICI connection and child are named after it. */
  id: string;
  /** Data-plane tunnel identity (CHILD_SA if_id in/out), unique per vrouter, 1..2^32-2. */
  ifId: number;
  /** Our IKE address (the data plane's listen address). */
  localAddress: string;
  /** The peer's address; absent = we only respond. */
  remoteAddress?: string;
  localId: string;
  remoteId: string;
  auth: IpsecAuth;
  localSubnets: string[];
  remoteSubnets: string[];
  /** IKE proposals, e.g. `aes256gcm16-prfsha256-x25519`. */
  ikeProposals: string[];
  /** ESP proposals, e.g. `aes256gcm16`, `aes256-sha256-esn`. */
  espProposals: string[];
  /** Start the tunnel from our side as soon as it is loaded (and restart it when it drops). */
  initiate: boolean;
  /** Dead-peer detection interval, s. Default 30. */
  dpdDelay?: number;
  /** CHILD_SA rekey after this many seconds. Default 3600. */
  childRekeyTime?: number;
  /** IKE_SA rekey after this many seconds. Default 14400. */
  ikeRekeyTime?: number;
  /** CHILD_SA rekey after this many bytes (0 = off). */
  childRekeyBytes?: number;
  /** CHILD_SA rekey after this many packets (0 = off). */
  childRekeyPackets?: number;
}

/** Where a responder tunnel's peer was last seen: its last IKE_SA's remote address and port. */
export interface LastPeer {
  address: string;
  port: number;
}

/**
 * The `load-conn` section for one tunnel. `udpEncap` (default) forces ESP-in-UDP; off, charon
 * uses ESP without UDP unless it detects NAT (the data plane then needs its raw ESP socket).
 *
 * `reach`: a responder tunnel that can also initiate to where its peer was last seen (after a
 * charon restart, see `IpsecService`): charon initiates to the first address of `remote_addrs`
 * and, as responder, still accepts any address (the two ranges).
 */
export function connSection(t: IpsecTunnel, o: { udpEncap?: boolean; reach?: LastPeer; start?: boolean } = {}): ViciInputSection {
  const local: ViciInputSection = { id: t.localId };
  const remote: ViciInputSection = { id: t.remoteId };
  switch (t.auth.method) {
    case 'psk':
      local.auth = 'psk';
      remote.auth = 'psk';
      break;
    case 'pubkey':
      local.auth = 'pubkey';
      local.certs = [t.auth.certificate];
      remote.auth = 'pubkey';
      break;
    case 'eap':
      if (t.auth.role === 'server') {
        local.auth = 'pubkey';
        if (t.auth.certificate) local.certs = [t.auth.certificate];
        remote.auth = 'eap-mschapv2';
        // Ask for the identity (EAP-Identity); the daemon holds it to eapIdentity once up.
        remote.eap_id = '%any';
      } else {
        local.auth = 'eap-mschapv2';
        local.eap_id = t.auth.eapIdentity;
        remote.auth = 'pubkey';
      }
      break;
  }
  const child: ViciInputSection = {
    local_ts: t.localSubnets,
    remote_ts: t.remoteSubnets,
    esp_proposals: t.espProposals,
    mode: 'tunnel',
    // Started by charon on load only within the service's window (`initiator.ts`), never all at once.
    start_action: t.initiate && o.start ? 'start' : 'none',
    dpd_action: t.initiate ? 'restart' : 'clear',
    close_action: t.initiate ? 'start' : 'none',
    rekey_time: `${t.childRekeyTime ?? 3600}s`,
    rekey_bytes: t.childRekeyBytes ?? 0,
    rekey_packets: t.childRekeyPackets ?? 0,
    if_id_in: t.ifId,
    if_id_out: t.ifId,
  };
  return {
    version: 2,
    local_addrs: [t.localAddress],
    remote_addrs: t.remoteAddress !== undefined ? [t.remoteAddress] : o.reach ? [o.reach.address, '0.0.0.0/0', '::/0'] : ['%any'],
    ...(t.remoteAddress === undefined && o.reach ? { remote_port: o.reach.port } : {}),
    proposals: t.ikeProposals,
    encap: (o.udpEncap ?? true) ? 'yes' : 'no',
    mobike: 'no',
    dpd_delay: `${t.dpdDelay ?? 30}s`,
    // DPD on an idle IKE_SA only: charon asks query_sa for last use, so ESP traffic counts as life.
    rekey_time: `${t.ikeRekeyTime ?? 14400}s`,
    unique: 'replace',
    // An initiating tunnel keeps trying (0 = forever, with charon's backoff): a peer that is down
    // at start or after a charon restart is reached once it is back, as a gateway must.
    keyingtries: t.initiate ? 0 : 1,
    if_id_in: t.ifId,
    if_id_out: t.ifId,
    local,
    remote,
    children: { [t.id]: child },
  };
}

export interface SharedSecret {
  id: string;
  type: 'IKE' | 'EAP';
  data: string;
  owners: string[];
}

/** The secrets charon needs for one tunnel (PSK, or EAP password). */
export function sharedSecrets(t: IpsecTunnel): SharedSecret[] {
  switch (t.auth.method) {
    case 'psk':
      return [{ id: `psk-${t.id}`, type: 'IKE', data: t.auth.psk, owners: [t.localId, t.remoteId] }];
    case 'eap':
      return [{ id: `eap-${t.id}`, type: 'EAP', data: t.auth.eapSecret, owners: [t.auth.eapIdentity] }];
    default:
      return [];
  }
}
