/**
 * A tenant's remote access as charon is told about it: its pools (`load-pool`, with DNS servers and
 * search domains as pool attributes), its one connection (`load-conn`) that serves every client,
 * its users' EAP secrets (`load-shared`) and its CA and CRL (`load-cert`). Pure: the service
 * applies them.
 *
 * The connection leases from the tenant's pools (charon answers an exhausted pool with
 * INTERNAL_ADDRESS_FAILURE), carries the tenant's remote-access if_id on every CHILD_SA (the data
 * plane then routes a leased address to its client inside the tenant), and authenticates clients
 * in one round (EAP-MSCHAPv2, or the device certificate) or two (certificate, then EAP: RFC 4739
 * multiple authentication, swanctl's `remote-1` / `remote-2`). Device certificates must chain to
 * the tenant's CA (`cacerts`), so a certificate of another tenant's CA is refused.
 */
import type { ViciInputSection } from '../strongswan/vici/encoding.js';
import type { RemoteAccessAuth, RemoteAccessPoolSpec } from '../config/model.js';

/** IKEv2 configuration attribute INTERNAL_DNS_DOMAIN (RFC 8598 §4): charon takes numbered attributes raw. */
export const INTERNAL_DNS_DOMAIN = 25;

export interface RemoteAccessConn {
  id: string;
  ifId: number;
  localAddress: string;
  localId: string;
  auth: RemoteAccessAuth;
  /** PEM of our certificate, the tenant's CA (device certificates), its CRL. */
  certificate: string;
  ca?: string;
  crl?: string;
  pools: readonly RemoteAccessPoolSpec[];
  localSubnets: readonly string[];
  ikeProposals: readonly string[];
  espProposals: readonly string[];
}

/** `load-pool` message of one pool. */
export function poolSection(p: RemoteAccessPoolSpec): ViciInputSection {
  return {
    [p.name]: {
      addrs: p.range,
      ...(p.dns.length > 0 ? { dns: [...p.dns] } : {}),
      ...(p.searchDomains.length > 0 ? { [String(INTERNAL_DNS_DOMAIN)]: [...p.searchDomains] } : {}),
    },
  };
}

/** The remote authentication rounds for `auth`. */
function remoteRounds(auth: RemoteAccessAuth, ca: string | undefined): ViciInputSection {
  // eap_id %any: charon asks the client for its EAP identity, the user name of the database.
  const eap = { auth: 'eap-mschapv2', eap_id: '%any' };
  const cert = { auth: 'pubkey', ...(ca ? { cacerts: [ca] } : {}) };
  switch (auth) {
    case 'eap':
      return { remote: eap };
    case 'pubkey':
      return { remote: cert };
    case 'pubkey+eap':
      return { 'remote-1': cert, 'remote-2': eap };
  }
}

/** The `load-conn` section of a tenant's remote-access connection. */
export function remoteAccessConnSection(c: RemoteAccessConn, o: { udpEncap?: boolean } = {}): ViciInputSection {
  return {
    version: 2,
    local_addrs: [c.localAddress],
    remote_addrs: ['%any'],
    proposals: [...c.ikeProposals],
    encap: (o.udpEncap ?? true) ? 'yes' : 'no',
    mobike: 'no',
    dpd_delay: '30s',
    rekey_time: '14400s',
    // A client that connects again (new IKE_SA, same identity) replaces its old session, so its
    // lease goes back to it rather than a second address.
    unique: 'replace',
    keyingtries: 1,
    send_cert: 'always',
    pools: c.pools.map((p) => p.name),
    if_id_in: c.ifId,
    if_id_out: c.ifId,
    local: { id: c.localId, auth: 'pubkey', certs: [c.certificate] },
    ...remoteRounds(c.auth, c.ca),
    children: {
      [c.id]: {
        local_ts: [...c.localSubnets],
        // remote_ts stays `dynamic`: the client's leased address(es).
        esp_proposals: [...c.espProposals],
        mode: 'tunnel',
        start_action: 'none',
        dpd_action: 'clear',
        close_action: 'none',
        rekey_time: '3600s',
        if_id_in: c.ifId,
        if_id_out: c.ifId,
      },
    },
  };
}

/** The id of a user's EAP secret in charon (`load-shared`/`unload-shared`). */
export function userSecretId(conn: string, user: string): string {
  return `ra-${conn}-${Buffer.from(user).toString('hex')}`;
}
