/** Ready-made topologies the tests and benchmarks share. */
import type { Lab, LinkEnd } from './lab.js';
import { masquerade } from './nft.js';

export interface TwoHosts {
  a: string;
  b: string;
  /** veth ends: [in a, in b]. */
  link: [LinkEnd, LinkEnd];
  /** Underlay addresses of a and b, without prefix length. */
  addrA: string;
  addrB: string;
  addr6A: string;
  addr6B: string;
}

export interface TwoHostsOptions {
  /** Underlay IPv4 /24 prefix. Default `192.168.77` (namespaces are private, so this never collides). */
  v4Prefix?: string;
  /** Underlay IPv6 /64 prefix. Default `fd77::`. */
  v6Prefix?: string;
  /** veth MTU, bytes. Default 1500. */
  mtu?: number;
}

/** A —veth— B with IPv4 and IPv6 addresses: the underlay of every tunnel test. */
export async function twoHosts(lab: Lab, opts: TwoHostsOptions = {}): Promise<TwoHosts> {
  const p4 = opts.v4Prefix ?? '192.168.77';
  const p6 = opts.v6Prefix ?? 'fd77::';
  const a = await lab.namespace('a');
  const b = await lab.namespace('b');
  const link = await lab.veth(
    { ns: a, addresses: [`${p4}.1/24`, `${p6}1/64`] },
    { ns: b, addresses: [`${p4}.2/24`, `${p6}2/64`] },
    opts.mtu !== undefined ? { mtu: opts.mtu } : {},
  );
  return { a, b, link, addrA: `${p4}.1`, addrB: `${p4}.2`, addr6A: `${p6}1`, addr6B: `${p6}2` };
}

export interface NatTopology {
  /** Host behind the NAT (10.0.1.2). */
  inside: string;
  /** The NAT router (10.0.1.1 inside, 203.0.113.1 outside). */
  router: string;
  /** Host outside (203.0.113.2); it has no route to 10.0.1.0/24, so only NAT lets replies back. */
  outside: string;
  insideAddr: string;
  routerOutsideAddr: string;
  outsideAddr: string;
  insideLink: [LinkEnd, LinkEnd];
  outsideLink: [LinkEnd, LinkEnd];
}

/** inside —veth— router(masquerade) —veth— outside. */
export async function natTopology(lab: Lab): Promise<NatTopology> {
  const inside = await lab.namespace('in');
  const router = await lab.namespace('nat');
  const outside = await lab.namespace('out');
  const insideLink = await lab.veth({ ns: inside, addresses: ['10.0.1.2/24'] }, { ns: router, addresses: ['10.0.1.1/24'] });
  const outsideLink = await lab.veth({ ns: router, addresses: ['203.0.113.1/24'] }, { ns: outside, addresses: ['203.0.113.2/24'] });
  await lab.addRoute(inside, 'default', { via: '10.0.1.1' });
  await masquerade(lab, router, outsideLink[0].name);
  return {
    inside,
    router,
    outside,
    insideAddr: '10.0.1.2',
    routerOutsideAddr: '203.0.113.1',
    outsideAddr: '203.0.113.2',
    insideLink,
    outsideLink,
  };
}
