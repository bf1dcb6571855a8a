/**
 * nftables helpers: NAT and packet loss. The kernel here has no netem, so loss is injected with
 * `numgen random`; every table is named after the lab so parallel labs never touch each other's.
 */
import type { Lab, LinkEnd } from './lab.js';
import { LabError } from './errors.js';
import { randomSuffix } from './names.js';
import { runSync } from './exec.js';
import { tools } from './tools.js';

/** Loads an nft script in `ns` and removes `table` at teardown. */
async function loadTable(lab: Lab, ns: string | undefined, family: string, table: string, script: string): Promise<void> {
  const path = lab.writeFile(`nft-${table}.nft`, script);
  await lab.exec(ns, tools.nft, ['-f', path]);
  lab.onTeardown(`delete nft table ${family} ${table}`, () => {
    // a namespace already gone took the table with it
    runSync(tools.nft, ['delete', 'table', family, table], { ns });
  });
}

/**
 * Masquerades everything `ns` forwards out of `outIf`, and turns forwarding on: `ns` becomes a NAT
 * router between its other segments and the one behind `outIf`. Returns the table name.
 */
export async function masquerade(lab: Lab, ns: string, outIf: string): Promise<string> {
  const table = `cvlan_nat_${randomSuffix(5)}`;
  await lab.forwarding(ns);
  await loadTable(
    lab,
    ns,
    'inet',
    table,
    `table inet ${table} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${outIf}" masquerade
  }
}
`,
  );
  return table;
}

export interface LossOptions {
  /** Share of packets dropped, in percent (0–100). */
  percent: number;
  /**
   * `ingress` drops packets arriving on the interface (netdev ingress hook: forwarded and local
   * traffic alike); `egress` drops packets leaving it (inet postrouting). Default `ingress`.
   */
  direction?: 'ingress' | 'egress';
}

export interface LossRule {
  table: string;
  family: string;
  /** Packets the rule dropped so far (its nftables counter). */
  dropped(): Promise<number>;
}

/**
 * Drops `percent` % of the IP packets on `dev` at random (`numgen random mod 100 < N`). ARP is
 * spared on ingress: losing neighbour resolution stalls a link for seconds, which is not the
 * loss a tunnel test means to inject.
 */
export async function dropPercent(lab: Lab, dev: LinkEnd, opts: LossOptions): Promise<LossRule> {
  const n = opts.percent;
  if (!Number.isInteger(n) || n < 0 || n > 100) throw new LabError('CVLAN_LAB_ARG', `loss percent ${n}: integer 0-100`);
  const table = `cvlan_loss_${randomSuffix(5)}`;
  const dir = opts.direction ?? 'ingress';
  const family = dir === 'ingress' ? 'netdev' : 'inet';
  const chain =
    dir === 'ingress'
      ? `type filter hook ingress device "${dev.name}" priority filter; policy accept;
    meta protocol { ip, ip6 } numgen random mod 100 < ${n} counter drop`
      : `type filter hook postrouting priority filter; policy accept;
    oifname "${dev.name}" numgen random mod 100 < ${n} counter drop`;
  await loadTable(lab, dev.ns, family, table, `table ${family} ${table} {\n  chain loss {\n    ${chain}\n  }\n}\n`);
  return {
    table,
    family,
    dropped: async () => {
      const r = await lab.exec(dev.ns, tools.nft, ['list', 'table', family, table]);
      const m = /counter packets (\d+)/.exec(r.stdout);
      if (m === null) throw new LabError('CVLAN_LAB_PARSE', `no counter in nft table ${table}`);
      return Number(m[1]);
    },
  };
}
