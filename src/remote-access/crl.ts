/**
 * The serial numbers an X.509 CRL revokes (RFC 5280 §5.1), read from its DER. charon verifies
 * and enforces the CRL itself for new logins; the vrouter needs only the serials, to end the live
 * sessions of devices a new CRL revokes (charon never re-checks an established IKE_SA).
 */

/** One DER TLV: tag, start of contents, end of contents. */
interface Tlv {
  tag: number;
  start: number;
  end: number;
}

function tlv(b: Buffer, off: number, limit: number): Tlv {
  if (off + 2 > limit) throw new Error('truncated DER');
  const tag = b[off]!;
  let len = b[off + 1]!;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new Error('DER length overruns its container');
  return { tag, start, end: start + len };
}

/** The DER inside the first `-----BEGIN X509 CRL-----` block. */
export function crlDer(pem: string): Buffer {
  const m = /-----BEGIN X509 CRL-----([\s\S]*?)-----END X509 CRL-----/.exec(pem);
  if (!m) throw new Error('no "-----BEGIN X509 CRL-----" block');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}

/** Revoked serial numbers as upper-case hex without leading zeros (as `X509Certificate.serialNumber`, normalized). */
export function revokedSerials(pem: string): string[] {
  const der = crlDer(pem);
  const outer = tlv(der, 0, der.length); // CertificateList
  if (outer.tag !== 0x30) throw new Error('not a CertificateList');
  const tbs = tlv(der, outer.start, outer.end); // TBSCertList
  if (tbs.tag !== 0x30) throw new Error('not a TBSCertList');
  let off = tbs.start;
  const fields: Tlv[] = [];
  while (off < tbs.end) {
    const f = tlv(der, off, tbs.end);
    fields.push(f);
    off = f.end;
  }
  // version? signature issuer thisUpdate nextUpdate? revokedCertificates? [0] extensions?
  let i = fields[0]?.tag === 0x02 ? 1 : 0;
  i += 3; // signature, issuer, thisUpdate
  if (fields[i] && (fields[i]!.tag === 0x17 || fields[i]!.tag === 0x18)) i++; // nextUpdate
  const list = fields[i];
  if (!list || list.tag !== 0x30) return [];
  const out: string[] = [];
  for (let e = list.start; e < list.end; ) {
    const entry = tlv(der, e, list.end);
    const serial = tlv(der, entry.start, entry.end);
    if (serial.tag !== 0x02) throw new Error('a revoked entry without a serial number');
    out.push(normalizeSerial(der.subarray(serial.start, serial.end).toString('hex')));
    e = entry.end;
  }
  return out;
}

export function normalizeSerial(hex: string): string {
  return hex.toUpperCase().replace(/^0+(?=.)/, '');
}
