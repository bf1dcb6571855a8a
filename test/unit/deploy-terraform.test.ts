// The Terraform modules (deploy/terraform/{aws,gcp,azure}) read by HashiCorp's HCL parser:
// tools/hclcheck is built with Go and run on the tree, then on copies with one thing broken each
// time, which it must name. `terraform fmt -check` too where a terraform binary is installed
// (`terraform validate` needs the providers, which are not downloadable everywhere).
import t from 'tap';
import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../harness/cvlan.js';
import { resolveTool } from '../harness/tools.js';

const exec = promisify(execFile);
const go = resolveTool('go') ?? (resolveTool('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
const skip = go ? undefined : 'Go is not installed';
const work = mkdtempSync(join(tmpdir(), 'cvlan-hclcheck-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const binary = join(work, 'hclcheck');

async function hclcheck(dir: string): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await exec(binary, ['-dir', dir]);
    return { ok: true, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** A copy of deploy/ (modules + the cloud-init template they render) with `file` edited. */
function broken(name: string, file: string, edit: (text: string) => string): string {
  const root = join(work, name);
  cpSync(join(REPO_ROOT, 'deploy'), join(root, 'deploy'), { recursive: true });
  const path = join(root, 'deploy', file);
  const before = readFileSync(path, 'utf8');
  const after = edit(before);
  if (after === before) throw new Error(`${name}: the edit changed nothing in ${file}`);
  writeFileSync(path, after);
  return join(root, 'deploy', 'terraform');
}

void t.test('hclcheck builds (hashicorp/hcl/v2 from the Go module proxy) and passes on the modules', { skip }, async (t) => {
  await exec(go!, ['build', '-o', binary, '.'], { cwd: join(REPO_ROOT, 'tools/hclcheck'), env: { ...process.env, GOFLAGS: '-mod=mod' }, timeout: 300_000 });
  const r = await hclcheck(join(REPO_ROOT, 'deploy/terraform'));
  t.ok(r.ok, r.out.trim());
  t.match(r.out, /(\d+) files in 3 modules \(aws, azure, gcp\) parsed and checked/);
});

const cases: [string, string, (s: string) => string, RegExp][] = [
  ['syntax', 'terraform/gcp/main.tf', (s) => s.replace('can_ip_forward = true', 'can_ip_forward = = true'), /gcp\/main\.tf:\d+: /],
  ['aws-src-dst', 'terraform/aws/main.tf', (s) => s.replace('source_dest_check = false', 'source_dest_check = true'), /aws_network_interface\.public: source_dest_check must be false/],
  ['aws-esp', 'terraform/aws/main.tf', (s) => s.replace('protocol    = "50"', 'protocol    = "51"'), /no rule opens 50 0/],
  ['gcp-forward', 'terraform/gcp/main.tf', (s) => s.replace('can_ip_forward = true', 'can_ip_forward = false'), /can_ip_forward must be true/],
  ['gcp-esp', 'terraform/gcp/main.tf', (s) => s.replace('protocol = "esp"', 'protocol = "ah"'), /no rule opens esp \*/],
  ['azure-forward', 'terraform/azure/main.tf', (s) => s.replace('ip_forwarding_enabled = true\n\n  ip_configuration {\n    name                          = "private"', 'ip_forwarding_enabled = false\n\n  ip_configuration {\n    name                          = "private"'), /azurerm_network_interface\.private: ip_forwarding_enabled must be true/],
  ['azure-wg', 'terraform/azure/main.tf', (s) => s.replace('destination_port_range     = "51820"', 'destination_port_range     = "51821"'), /no rule opens Udp 51820/],
  ['undeclared', 'terraform/aws/variables.tf', (s) => s.replace('variable "key_name"', 'variable "ssh_key_name"'), /var\.key_name is not declared/],
  ['template-var', 'cloud-init/user-data.yaml', (s) => s.replace("'${public_interface}'", "'${public_interface}' '${private_interface}'"), /passes \[controller_url public_interface release_url token\], the template uses \[controller_url private_interface public_interface release_url token\]/],
  ['token-source', 'terraform/azure/main.tf', (s) => s.replace('token            = var.registration_tokens[count.index]', 'token            = var.controller_url'), /token must come from var\.registration_tokens/],
  ['no-ha', 'terraform/gcp/main.tf', (s) => s.replace('count = var.ha ? 2 : 1', 'count = 1'), /count must follow var\.ha/],
  ['token-not-sensitive', 'terraform/aws/variables.tf', (s) => s.replace('  sensitive   = true\n', ''), /registration_tokens must be sensitive/],
];

for (const [name, file, edit, want] of cases) {
  void t.test(`hclcheck names a broken module: ${name}`, { skip }, async (t) => {
    const r = await hclcheck(broken(name, file, edit));
    t.notOk(r.ok, 'exit status 1');
    t.match(r.out, want, r.out.trim().split('\n')[0] ?? '');
  });
}

void t.test('terraform fmt -check', { skip: resolveTool('terraform') ? undefined : 'terraform is not installed' }, async (t) => {
  const r = await exec('terraform', ['fmt', '-check', '-recursive', join(REPO_ROOT, 'deploy/terraform')]).then(
    (x) => ({ ok: true, out: x.stdout }),
    (e: { stdout?: string }) => ({ ok: false, out: e.stdout ?? '' }),
  );
  t.ok(r.ok, `formatted ${r.out.trim()}`);
});
