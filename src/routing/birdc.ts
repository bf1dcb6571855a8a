/**
 * A client of BIRD's control socket (the protocol `birdc` speaks), and parsers for the replies the
 * vrouter reads. Our own, small: BIRD ships no library, and spawning `birdc` per scrape would
 * cost a process per request.
 *
 * Wire format (BIRD's doc/prog "Remote control"): the server greets with `0001 BIRD x ready.`;
 * every reply line starts with a 4-digit code and `-` (more lines follow) or ` ` (last line of
 * the reply); a line starting with a space continues the previous code. Codes 0xxx end a reply
 * successfully, 8xxx (run-time) and 9xxx (parse) end it with an error, 1xxx/2xxx carry data.
 */

import net from 'node:net';
import { CvlanError } from '../errors.js';

export interface BirdReply {
  /** The final code (0xxx success). */
  code: number;
  /** Every line of the reply with its code (continuation lines carry the code of their block). */
  lines: { code: number; text: string }[];
}

/** Largest reply kept, bytes: `show route` of a tenant table stays far below; a bigger one is refused. */
const MAX_REPLY_BYTES = 16 * 1024 * 1024;
const TIMEOUT_MS = 10_000;

/** One connection per command: BIRD answers in order, and a fresh connection never inherits a half-read reply. */
export async function birdCommand(socketPath: string, command: string, timeoutMs = TIMEOUT_MS): Promise<BirdReply> {
  if (/[\n\r]/.test(command)) throw new CvlanError('CVLAN_ERR_INVALID_ARG', 'a BIRD command is one line');
  return new Promise<BirdReply>((resolve, reject) => {
    const sock = net.createConnection({ path: socketPath });
    let buf = '';
    let greeted = false;
    let size = 0;
    let lastCode = 0;
    const lines: BirdReply['lines'] = [];
    const fail = (err: Error): void => {
      sock.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(new CvlanError('CVLAN_ERR_ROUTING', `BIRD did not answer "${command}" within ${timeoutMs} ms`)), timeoutMs);
    timer.unref();
    sock.setEncoding('utf8');
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new CvlanError('CVLAN_ERR_ROUTING', `BIRD control socket ${socketPath}: ${err.message}`, { cause: err }));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new CvlanError('CVLAN_ERR_ROUTING', `BIRD closed the control socket during "${command}"`));
    });
    sock.on('data', (chunk: string) => {
      size += chunk.length;
      if (size > MAX_REPLY_BYTES) return fail(new CvlanError('CVLAN_ERR_ROUTING', `BIRD's reply to "${command}" exceeds ${MAX_REPLY_BYTES} bytes`));
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /^(\d{4})([ -])(.*)$/.exec(line);
        if (!greeted) {
          if (m?.[1] !== '0001') return fail(new CvlanError('CVLAN_ERR_ROUTING', `unexpected BIRD greeting: ${JSON.stringify(line.slice(0, 80))}`));
          greeted = true;
          sock.write(`${command}\n`);
          continue;
        }
        if (m === null) {
          // A continuation of the previous code's block (starts with a space).
          lines.push({ code: lastCode, text: line.startsWith(' ') ? line.slice(1) : line });
          continue;
        }
        lastCode = Number(m[1]);
        lines.push({ code: lastCode, text: m[3] as string });
        const first = (m[1] as string)[0];
        if (m[2] === ' ' && (first === '0' || first === '8' || first === '9')) {
          clearTimeout(timer);
          sock.removeAllListeners('close');
          sock.end();
          if (first !== '0') return reject(new CvlanError('CVLAN_ERR_ROUTING', `BIRD refused "${command}": ${m[3] as string}`, { details: { code: lastCode } }));
          return resolve({ code: lastCode, lines });
        }
      }
    });
  });
}

/** One BGP session as `show protocols all` describes it. */
export interface BgpSessionStatus {
  /** The protocol's name (our symbol). */
  protocol: string;
  /** `description` as configured: `<tenant>/<neighbour>`. */
  description: string;
  /** BIRD's protocol state (up, start, down…). */
  state: string;
  /** BGP FSM state (Idle, Connect, Active, OpenSent, OpenConfirm, Established). */
  bgpState: string;
  /** Why it is not up, as BIRD says (last error), if any. */
  info: string;
  since: string;
  imported: number;
  exported: number;
  /** Import updates received / rejected by the limit / filtered out (counts since the session came up). */
  received: number;
  rejected: number;
  filtered: number;
  /** The import limit was hit (further routes are blocked). */
  importLimitHit: boolean;
}

/** Parses `show protocols all` (the reply of birdCommand) into its BGP sessions. */
export function parseBgpSessions(reply: BirdReply): BgpSessionStatus[] {
  const out: BgpSessionStatus[] = [];
  let cur: BgpSessionStatus | null = null;
  for (const { code, text } of reply.lines) {
    if (code === 1002) {
      // name proto table state since info
      const f = text.trim().split(/\s+/);
      cur = null;
      if (f[1] !== 'BGP') continue;
      cur = {
        protocol: f[0] as string,
        description: '',
        state: f[3] ?? '',
        since: f[4] ?? '',
        info: f.slice(5).join(' '),
        bgpState: '',
        imported: 0,
        exported: 0,
        received: 0,
        rejected: 0,
        filtered: 0,
        importLimitHit: false,
      };
      out.push(cur);
      continue;
    }
    if (cur === null || code !== 1006) continue;
    const t = text.trim();
    let m: RegExpExecArray | null;
    if ((m = /^Description:\s+(.*)$/.exec(t))) cur.description = m[1] as string;
    else if ((m = /^BGP state:\s+(\S+)/.exec(t))) cur.bgpState = m[1] as string;
    else if ((m = /^Routes:\s+(\d+) imported, (?:\d+ filtered, )?(\d+) exported/.exec(t))) {
      cur.imported += Number(m[1]);
      cur.exported += Number(m[2]);
    } else if ((m = /^Import updates:\s+(\d+)\s+(\d+)\s+(\d+)/.exec(t))) {
      cur.received += Number(m[1]);
      cur.rejected += Number(m[2]);
      cur.filtered += Number(m[3]);
    } else if (/^Import limit:.*\[HIT\]/.test(t)) cur.importLimitHit = true;
  }
  return out;
}

/** The prefixes of a `show route [table T] [protocol P]` reply. */
export function parseRoutePrefixes(reply: BirdReply): string[] {
  const out: string[] = [];
  for (const { code, text } of reply.lines) {
    if (code !== 1007) continue;
    const m = /^([0-9a-fA-F:.]+\/\d+)\s/.exec(text);
    if (m) out.push(m[1] as string);
  }
  return out;
}
