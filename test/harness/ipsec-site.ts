/**
 * One IPsec site-to-site link for interop tests: cvlan-vrouter (`cvlan-vrouter run`) in one
 * namespace and strongSwan charon with kernel-libipsec (the legacy router) in another, each with
 * a /24 behind it (an address on the tunnel interface / loopback). Authentication by PSK, X.509
 * certificates from a throw-away CA, or EAP-MSCHAPv2 in either role.
 */
import { randomBytes } from 'node:crypto';
import { adminGet } from '../../src/api/client.js';
import type { TunnelView } from '../../src/api/state.js';
import type { Lab } from './lab.js';
import { strongswanPeer, type StrongswanAuth, type StrongswanPeer } from './strongswan.js';
import { vrouterRun, type VrouterRun } from './vrouter.js';
import { makePki } from './pki.js';
import { sleep } from './exec.js';

export const OURS = { lan: '10.88.1.1', net: '10.88.1.0/24', id: 'ours.test.cvlan' };
export const LEGACY = { lan: '10.88.2.1', net: '10.88.2.0/24', id: 'legacy.test.cvlan' };

/** `eap-server`: we verify the legacy router's EAP login; `eap-client`: we log in to it. */
export type SiteAuth = 'psk' | 'pubkey' | 'eap-server' | 'eap-client';

export interface SiteOptions {
  esp: string;
  weInitiate: boolean;
  /** [namespace, underlay address] of each side. */
  ours: [string, string];
  legacy: [string, string];
  /** The legacy router's address as we reach it (differs behind NAT). */
  legacyAddrSeenByUs?: string;
  /** Default `psk`. EAP puts the EAP client in the initiator role, whatever `weInitiate` says. */
  auth?: SiteAuth;
  /** Extra fields of our tunnel (`rekey`, `dpd_delay`). */
  tunnel?: Record<string, unknown>;
  /** Rekey times of the legacy router (swanctl syntax). */
  legacyRekey?: { ike?: string; child?: string };
  /** Extra lines in the legacy charon's `charon { }` section. */
  legacyCharonConf?: string;
  /** The legacy router's EAP password, when it should differ from ours (a failing login). */
  legacyEapSecret?: string;
  /** The legacy router's EAP login, when it should be another user's. */
  legacyEapLogin?: { identity: string; secret: string };
  /** The `auth =` the legacy router requires of us, when it should refuse what we use. */
  legacyRemoteAuth?: string;
  /** The EAP user name both sides are configured with. Default `legacy-site`. */
  eapUser?: string;
  /** More tunnels in our document; gets our `auth` object (our certificate, when there is one). */
  moreTunnels?: (auth: Record<string, unknown>) => object[];
  /** Our daemon's log level. Default `info`. */
  logLevel?: string;
  /** Our `[ipsec] esp_encapsulation`. Default the daemon's (`udp`). */
  espEncapsulation?: 'udp' | 'auto';
  /** Initiate the tunnel when the legacy router is the initiator. Default true. */
  initiate?: boolean;
}

export interface Site {
  ours: VrouterRun;
  legacy: StrongswanPeer;
  nsOurs: string;
  nsLegacy: string;
}

interface Credentials {
  ours: Record<string, unknown>;
  legacy: StrongswanAuth;
}

async function credentials(lab: Lab, auth: SiteAuth, user = 'legacy-site'): Promise<Credentials> {
  if (auth === 'psk') {
    const psk = randomBytes(24).toString('base64');
    return { ours: { method: 'psk', psk }, legacy: { method: 'psk', psk } };
  }
  const pki = await makePki(lab, [OURS.id, LEGACY.id]);
  const ours = pki.entities[OURS.id]!;
  const legacy = pki.entities[LEGACY.id]!;
  if (auth === 'pubkey') {
    return {
      ours: { method: 'pubkey', certificate: `file:${ours.cert}`, private_key: `file:${ours.key}`, ca: `file:${pki.ca}` },
      legacy: { method: 'pubkey', cert: legacy.cert, key: legacy.key, caCerts: [pki.ca] },
    };
  }
  const secret = randomBytes(18).toString('base64');
  if (auth === 'eap-server') {
    return {
      ours: { method: 'eap', eap_role: 'server', eap_identity: user, eap_secret: secret, certificate: `file:${ours.cert}`, private_key: `file:${ours.key}` },
      legacy: { method: 'eap', eapType: 'eap-mschapv2', identity: user, secret, caCerts: [pki.ca] },
    };
  }
  return {
    ours: { method: 'eap', eap_role: 'client', eap_identity: user, eap_secret: secret, ca: `file:${pki.ca}` },
    legacy: { method: 'eap', eapType: 'eap-mschapv2', identity: user, secret, server: true, serverCert: legacy.cert, serverKey: legacy.key },
  };
}

export async function site(lab: Lab, o: SiteOptions): Promise<Site> {
  const auth = o.auth ?? 'psk';
  const weInitiate = auth === 'eap-client' ? true : auth === 'eap-server' ? false : o.weInitiate;
  const creds = await credentials(lab, auth, o.eapUser);
  if (o.legacyEapSecret !== undefined && creds.legacy.method === 'eap') creds.legacy = { ...creds.legacy, secret: o.legacyEapSecret };
  if (o.legacyEapLogin !== undefined && creds.legacy.method === 'eap') creds.legacy = { ...creds.legacy, ...o.legacyEapLogin };
  const [nsOurs, ourAddr] = o.ours;
  const [nsLegacy, legacyAddr] = o.legacy;
  await lab.addAddress(nsLegacy, 'lo', `${LEGACY.lan}/32`);
  const startOurs = async (): Promise<VrouterRun> => {
    const ours = await vrouterRun(lab, nsOurs, {
      listenAddress: ourAddr,
      logLevel: o.logLevel ?? 'info',
      ...(o.espEncapsulation ? { espEncapsulation: o.espEncapsulation } : {}),
      document: {
        vrouter_id: 'ours',
        tenant_id: 't1',
        tunnels: [
          {
            id: 'legacy',
            type: 'ipsec',
            local_id: OURS.id,
            remote_id: LEGACY.id,
            ...(weInitiate ? { remote_address: o.legacyAddrSeenByUs ?? legacyAddr } : {}),
            auth: creds.ours,
            local_subnets: [OURS.net],
            remote_subnets: [LEGACY.net],
            proposals: { ike: ['aes256gcm16-prfsha256-ecp256', 'aes256gcm16-prfsha384-x25519'], esp: [o.esp] },
            ...o.tunnel,
          },
          ...(o.moreTunnels?.(creds.ours) ?? []),
        ],
      },
    });
    await lab.addAddress(nsOurs, ours.ready.ipsec!.interface, `${OURS.lan}/32`);
    return ours;
  };
  const startLegacy = (): Promise<StrongswanPeer> =>
    strongswanPeer(lab, nsLegacy, {
      localAddr: legacyAddr,
      remoteAddr: ourAddr,
      localId: LEGACY.id,
      remoteId: OURS.id,
      localTs: [LEGACY.net],
      remoteTs: [OURS.net],
      auth: creds.legacy,
      ikeProposals: 'aes256gcm16-prfsha256-ecp256',
      espProposals: o.esp,
      forceEncap: true,
      ...(o.legacyRekey?.ike ? { ikeRekeyTime: o.legacyRekey.ike } : {}),
      ...(o.legacyRekey?.child ? { childRekeyTime: o.legacyRekey.child } : {}),
      ...(o.legacyCharonConf ? { extraCharonConf: o.legacyCharonConf } : {}),
      ...(o.legacyRemoteAuth !== undefined ? { remoteAuth: o.legacyRemoteAuth } : {}),
    });
  // Whoever answers is started first, so the initiator's first attempt already meets a peer.
  let ours: VrouterRun;
  let legacy: StrongswanPeer;
  if (weInitiate) {
    legacy = await startLegacy();
    ours = await startOurs();
  } else {
    ours = await startOurs();
    legacy = await startLegacy();
    if (o.initiate ?? true) await legacy.initiate(20);
  }
  return { ours, legacy, nsOurs, nsLegacy };
}

export async function tunnels(s: Site): Promise<TunnelView[]> {
  return (JSON.parse((await adminGet({ kind: 'unix', socketPath: s.ours.admin }, '/v1/tunnels')).body) as { tunnels: TunnelView[] }).tunnels;
}

/**
 * Resolves with the tunnel's view once it is up. The default wait outlasts one failed first
 * attempt: the daemon looks at a tunnel whose IKE_SA went down again after 20 s
 * (`initiator.ts`, `settleMs`) and starts it then.
 */
export async function waitUp(s: Site, timeoutMs = 35_000): Promise<TunnelView> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = (await tunnels(s))[0];
    if (v?.state === 'up') return v;
    // With both sides' last lines: a tunnel that stays down says why there (charon's IKE lines).
    if (Date.now() > end) throw new Error(`tunnel not up: ${JSON.stringify(v)}\nours:\n${s.ours.process.lastOutput(40)}\nlegacy:\n${s.legacy.process.lastOutput(40)}`);
    await sleep(250);
  }
}
