// Container health: the admin API's /readyz over its unix socket (200 = configuration applied,
// every device and charon up). Exit 0 healthy, 1 not ready or unreachable, with one line saying why.
import http from 'node:http';

const socketPath = process.env.CVLAN_ADMIN_SOCKET || '/run/cvlan/admin.sock';
const req = http.get({ socketPath, path: '/readyz', timeout: 4000 }, (res) => {
  res.resume();
  res.on('end', () => {
    if (res.statusCode === 200) process.exit(0);
    process.stderr.write(`not ready: /readyz answered ${res.statusCode}\n`);
    process.exit(1);
  });
});
req.on('timeout', () => req.destroy(new Error('timed out')));
req.on('error', (e) => {
  process.stderr.write(`admin API unreachable on ${socketPath}: ${e.message}\n`);
  process.exit(1);
});
