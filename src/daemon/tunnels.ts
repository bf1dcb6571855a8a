/**
 * A configured IPsec tunnel (`../config/model.ts`) as charon is told about it
 * (`../ipsec/connections.ts`): secrets read from their files or secure memory, the tunnel's if_id,
 * and whether we initiate.
 */
import { readFile } from 'node:fs/promises';
import type { IpsecTunnelSpec, PemSource, SecretPemSource } from '../config/model.js';
import type { IpsecAuth, IpsecTunnel } from '../ipsec/connections.js';

async function pem(src: PemSource | SecretPemSource): Promise<string> {
  if (src.kind === 'file') return await readFile(src.path, 'utf8');
  return typeof src.pem === 'string' ? src.pem : src.pem.text();
}

async function ipsecAuth(spec: IpsecTunnelSpec): Promise<IpsecAuth> {
  const a = spec.auth;
  switch (a.method) {
    case 'psk':
      return { method: 'psk', psk: a.psk.text() };
    case 'pubkey':
      return { method: 'pubkey', certificate: await pem(a.certificate), privateKey: await pem(a.privateKey), ca: await pem(a.ca) };
    case 'eap':
      // The loader guarantees the server its certificate and key and the client its CA.
      return {
        method: 'eap',
        role: a.role,
        eapIdentity: a.eapIdentity,
        eapSecret: a.eapSecret.text(),
        ...(a.certificate ? { certificate: await pem(a.certificate) } : {}),
        ...(a.privateKey ? { privateKey: await pem(a.privateKey) } : {}),
        ...(a.ca ? { ca: await pem(a.ca) } : {}),
      };
  }
}

/** The charon-facing description of a configured tunnel. `ifId` tells tunnels apart in the data plane. */
export async function ipsecTunnelOf(spec: IpsecTunnelSpec, ifId: number, localAddress: string): Promise<IpsecTunnel> {
  return {
    id: spec.id,
    ifId,
    localAddress,
    ...(spec.remoteAddress !== undefined ? { remoteAddress: spec.remoteAddress } : {}),
    localId: spec.localId ?? localAddress,
    remoteId: spec.remoteId,
    auth: await ipsecAuth(spec),
    localSubnets: [...spec.localSubnets],
    remoteSubnets: [...spec.remoteSubnets],
    ikeProposals: [...spec.ikeProposals],
    espProposals: [...spec.espProposals],
    initiate: spec.remoteAddress !== undefined,
    ...(spec.dpdDelay !== undefined ? { dpdDelay: spec.dpdDelay } : {}),
    ...(spec.ikeRekeySeconds !== undefined ? { ikeRekeyTime: spec.ikeRekeySeconds } : {}),
    ...(spec.childRekeySeconds !== undefined ? { childRekeyTime: spec.childRekeySeconds } : {}),
    ...(spec.childRekeyBytes !== undefined ? { childRekeyBytes: spec.childRekeyBytes } : {}),
    ...(spec.childRekeyPackets !== undefined ? { childRekeyPackets: spec.childRekeyPackets } : {}),
  };
}
