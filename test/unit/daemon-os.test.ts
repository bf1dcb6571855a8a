// The host plumbing's one error path (src/daemon/os.ts): what `ip` is asked, and a failure that
// names what was being done and carries ip's own message. Needs `ip`, not root.
import t from 'tap';
import { CvlanError } from '../../src/errors.js';
import { ip, routeArgs } from '../../src/daemon/os.js';

t.test('route arguments: replace to add, del to remove, -6 for IPv6', async (t) => {
  t.same(routeArgs('add', '10.1.0.0/24', 'wg-acme'), ['route', 'replace', '10.1.0.0/24', 'dev', 'wg-acme']);
  t.same(routeArgs('remove', 'fd00::/64', 'ipsec-acme'), ['-6', 'route', 'del', 'fd00::/64', 'dev', 'ipsec-acme']);
});

t.test('a failing ip command is CVLAN_ERR_TUN with the context and ip\'s message', async (t) => {
  const err = await ip(['link', 'show', 'dev', 'cvlan-no-such0'], 'tenant acme, TUN cvlan-no-such0: cannot bring it up').then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof CvlanError, 'a CvlanError');
  t.equal((err as CvlanError).code, 'CVLAN_ERR_TUN');
  t.match((err as CvlanError).message, /^tenant acme, TUN cvlan-no-such0: cannot bring it up: .*cvlan-no-such0/, 'context first, then ip\'s stderr');
});
