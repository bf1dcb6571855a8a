// After a charon restart, responder tunnels are negotiated again towards their last peer: which
// tunnels had an IKE_SA (src/ipsec/last-peers.ts), and the connection that can reach the peer
// while still answering anyone (connSection's `reach`).
import t from 'tap';
import { LastPeers } from '../../src/ipsec/last-peers.js';
import { connSection, type IpsecTunnel } from '../../src/ipsec/connections.js';
import { parseIkeSa } from '../../src/strongswan/vici/types.js';

const responder: IpsecTunnel = {
  id: 'legacy',
  ifId: 3,
  localAddress: '192.0.2.1',
  localId: 'ours.example',
  remoteId: 'legacy.example',
  auth: { method: 'psk', psk: 'a-pre-shared-key-of-24-b' },
  localSubnets: ['10.1.0.0/24'],
  remoteSubnets: ['10.2.0.0/24'],
  ikeProposals: ['aes256gcm16-prfsha256-x25519'],
  espProposals: ['aes256gcm16'],
  initiate: false,
};

t.test('a tunnel is remembered while it has an IKE_SA, with the peer of the newest', async (t) => {
  const p = new LastPeers();
  p.up('legacy', '1', '192.0.2.2', 500);
  p.up('legacy', '2', '198.51.100.9', 4500); // a replacing IKE_SA comes up first …
  p.down('legacy', '1'); // … then the old one goes down
  p.up('gone', '3', '192.0.2.3', 500);
  p.down('gone', '3'); // deleted by its peer: not negotiated again
  const had = p.take();
  t.same([...had], [['legacy', { address: '198.51.100.9', port: 4500 }]]);
  t.same([...p.take()], [], 'taken once: the new charon starts empty');
});

t.test('a tunnel negotiated again stays remembered until its IKE_SA is up', async (t) => {
  const p = new LastPeers();
  p.pending('legacy', { address: '192.0.2.2', port: 500 });
  t.same([...p.take()], [['legacy', { address: '192.0.2.2', port: 500 }]], 'charon died again first: still known');
  p.pending('legacy', { address: '192.0.2.2', port: 500 });
  p.up('legacy', '1', '192.0.2.2', 4500);
  p.down('legacy', '1');
  t.same([...p.take()], [], 'once up, only real IKE_SAs count: deleted by the peer, not negotiated again');
});

t.test('list-sas reads only add established IKE_SAs of known tunnels', async (t) => {
  const p = new LastPeers();
  p.up('a', '1', '192.0.2.2', 500);
  p.seen(
    [
      parseIkeSa('b', { uniqueid: '7', state: 'ESTABLISHED', 'remote-host': '192.0.2.7', 'remote-port': '4500' }),
      parseIkeSa('c', { uniqueid: '8', state: 'CONNECTING', 'remote-host': '192.0.2.8' }),
      parseIkeSa('stranger', { uniqueid: '9', state: 'ESTABLISHED', 'remote-host': '192.0.2.9' }),
    ],
    (id) => id !== 'stranger',
  );
  p.seen([], () => true); // an empty read (a fresh charon) erases nothing
  t.same(Object.fromEntries(p.take()), { a: { address: '192.0.2.2', port: 500 }, b: { address: '192.0.2.7', port: 4500 } });
});

t.test('reach: initiate to the last peer, still answer any address', async (t) => {
  const plain = connSection(responder);
  t.same(plain.remote_addrs, ['%any']);
  t.equal(plain.remote_port, undefined);
  const again = connSection(responder, { reach: { address: '198.51.100.9', port: 4500 } });
  t.same(again.remote_addrs, ['198.51.100.9', '0.0.0.0/0', '::/0'], 'charon initiates to the first address; the ranges keep it a responder to anyone');
  t.equal(again.remote_port, 4500, 'through the NAT mapping the peer keeps alive');
  const child = (again.children as Record<string, Record<string, unknown>>).legacy!;
  t.equal(child.start_action, 'none', 'still not started by charon on every load');
  const initiator = connSection({ ...responder, remoteAddress: '192.0.2.2', initiate: true }, { reach: { address: '198.51.100.9', port: 4500 } });
  t.same(initiator.remote_addrs, ['192.0.2.2'], 'a configured peer address is never replaced');
});
