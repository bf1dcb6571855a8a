// charon's log lines (as 5.9.8 prints them at level 1) that the daemon turns into auth_failure
// events: which tunnel, which peer, and a reason that never carries a secret.
import t from 'tap';
import { authFailure, eapLoginRefusal } from '../../src/daemon/charon-events.js';

t.test('charon lines become auth failures with tunnel and reason', async (t) => {
  t.same(authFailure("08[IKE] <legacy|1> tried 1 shared key for 'ours.test.cvlan' - 'legacy.test.cvlan', but MAC mismatched"), {
    conn: 'legacy',
    remote: 'legacy.test.cvlan',
    reason: 'PSK mismatch',
  });
  t.same(authFailure('08[IKE] <legacy|1> EAP-MS-CHAPv2 verification failed, retry (1)'), { conn: 'legacy', reason: 'EAP-MSCHAPv2 password mismatch' });
  t.same(authFailure('10[IKE] <legacy|1> received a late AUTHENTICATION_FAILED: the peer refused our authentication'), { conn: 'legacy', reason: 'the peer refused our authentication' });
  t.same(authFailure('12[IKE] <site|3> EAP_MSCHAPV2 method failed'), { conn: 'site', reason: 'EAP failed' });
  t.same(authFailure("12[IKE] <site|3> EAP method EAP_MSCHAPV2 failed for peer 'legacy-site'"), { conn: 'site', reason: 'EAP failed' });
  t.same(authFailure("06[CFG] <5> no trusted ECDSA public key found for 'impostor.example'"), { remote: 'impostor.example', reason: 'no trusted public key for the peer' });
  t.equal(authFailure('09[IKE] <legacy|1> IKE_SA legacy[1] established between 192.0.2.1[a]...192.0.2.2[b]'), undefined);
  t.equal(authFailure('17[ENC] <legacy|1> parsed INFORMATIONAL request 5 [ ]'), undefined, 'a plain liveness check is no failure');
});

t.test('an EAP login is held to the tunnel user', async (t) => {
  const server = { method: 'eap', role: 'server', eapIdentity: 'alice' } as Parameters<typeof eapLoginRefusal>[0];
  t.equal(eapLoginRefusal(server, { 'remote-eap-id': 'alice', 'remote-id': 'client.example' }), undefined, 'the configured user stays');
  t.equal(eapLoginRefusal(server, { 'remote-eap-id': 'mallory', 'remote-id': 'alice' }), 'EAP identity "mallory" is not the tunnel\'s user');
  // charon omits remote-eap-id when the EAP identity equals the IKE identity.
  t.equal(eapLoginRefusal(server, { 'remote-id': 'alice' }), undefined, 'a login as the IKE identity is the IKE identity');
  t.equal(eapLoginRefusal(server, { 'remote-id': 'mallory' }), 'EAP identity "mallory" is not the tunnel\'s user', 'and is held to the user like any other');
  t.equal(eapLoginRefusal(server, {}), 'EAP identity null is not the tunnel\'s user', 'no identity at all is refused');
  t.equal(eapLoginRefusal({ method: 'psk' } as Parameters<typeof eapLoginRefusal>[0], { 'remote-id': 'x' }), undefined, 'not EAP: nothing to hold');
  t.equal(eapLoginRefusal({ method: 'eap', role: 'client', eapIdentity: 'alice' } as Parameters<typeof eapLoginRefusal>[0], {}), undefined, 'as the EAP client we are the user');
});
