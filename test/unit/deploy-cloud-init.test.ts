// deploy/cloud-init/user-data.yaml, checked by cloud-init itself (`cloud-init schema -c`), as the
// template and as Terraform renders it (awkward values included); its bootstrap script is valid
// sh and does what the issue asks in order: install, `init --controller … --token …`, start.
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../harness/cvlan.js';
import { resolveTool } from '../harness/tools.js';

const exec = promisify(execFile);
const TEMPLATE = join(REPO_ROOT, 'deploy/cloud-init/user-data.yaml');
const text = readFileSync(TEMPLATE, 'utf8');
const skip = resolveTool('cloud-init') ? undefined : 'cloud-init is not installed (scripts/setup.sh installs it)';
/** The variables the template takes; the Terraform modules pass exactly these (hclcheck checks that side). */
export const TEMPLATE_VARS = ['controller_url', 'public_interface', 'release_url', 'token'];

function scratch(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'cvlan-cloud-init-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function schema(file: string): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await exec('cloud-init', ['schema', '-c', file]);
    return { ok: true, out: r.stdout + r.stderr };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return { ok: false, out: `${x.stdout ?? ''}${x.stderr ?? ''}` };
  }
}

/** What Terraform's templatefile() does for plain `${name}` interpolations. */
function render(vars: Record<string, string>): string {
  return text.replace(/\$\{([a-z_]+)\}/g, (_m, name: string) => {
    if (!(name in vars)) throw new Error(`template variable ${name} has no value`);
    return vars[name]!;
  });
}

/** The parsed YAML, through cloud-init's own YAML library (python3-yaml is its dependency). */
async function parse(yamlText: string, dir: string): Promise<{ write_files: { path: string; content: string }[]; runcmd: string[][] }> {
  const f = join(dir, 'parse.yaml');
  writeFileSync(f, yamlText);
  const r = await exec('python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', f]);
  return JSON.parse(r.stdout) as { write_files: { path: string; content: string }[]; runcmd: string[][] };
}

void t.test('the template is valid cloud-config', { skip }, async (t) => {
  t.match(text, /^#cloud-config\n/, 'starts with #cloud-config');
  const r = await schema(TEMPLATE);
  t.ok(r.ok, `cloud-init schema -c: ${r.out.trim()}`);
  const used = [...new Set([...text.matchAll(/\$\{([a-z_]+)\}/g)].map((m) => m[1]!))].sort();
  t.same(used, TEMPLATE_VARS, 'the template takes exactly the documented variables');
});

void t.test('rendered with awkward values it stays valid and carries them intact', { skip }, async (t) => {
  const dir = scratch(t);
  const vars = {
    release_url: 'https://releases.example.net/cvlan-vrouter-0.1.0-linux-x64.tar.gz?sig=a:b#c',
    controller_url: 'https://controller.example.net:8443/api',
    token: 'cvt_Zm9v: "bar" #baz',
    public_interface: 'ens5',
  };
  const rendered = render(vars);
  const f = join(dir, 'user-data');
  writeFileSync(f, rendered);
  const r = await schema(f);
  t.ok(r.ok, `rendered: ${r.out.trim()}`);
  const doc = await parse(rendered, dir);
  t.equal(doc.write_files.find((w) => w.path.endsWith('/token'))?.content.trim(), vars.token, 'the token arrives verbatim');
  t.same(doc.runcmd[0]!.slice(2), [vars.release_url, vars.controller_url, vars.public_interface], 'runcmd passes the values as arguments, never spliced into shell text');
});

void t.test('the bootstrap: valid sh; install, then init with controller and token, then the unit', async (t) => {
  const dir = scratch(t);
  const doc = await parse(render({ release_url: 'u', controller_url: 'c', token: 't', public_interface: 'eth0' }), dir);
  const script = doc.write_files.find((w) => w.path.endsWith('bootstrap.sh'))!.content;
  const f = join(dir, 'bootstrap.sh');
  writeFileSync(f, script);
  await exec('sh', ['-n', f]);
  t.pass('sh -n accepts it');
  const at = (re: RegExp): number => script.split('\n').findIndex((l) => re.test(l));
  const install = at(/install\.sh \/run\/cvlan-bootstrap\/release\.tar\.gz/);
  const init = at(/cvlan-vrouter init --controller "\$controller_url" --token "\$\(cat \/run\/cvlan-bootstrap\/token\)"/);
  const start = at(/systemctl enable --now cvlan-vrouter\.service/);
  t.ok(install >= 0 && init > install && start > init, 'install → init --controller --token → start');
  t.ok(at(/rm -f \/run\/cvlan-bootstrap\/token/) > init, 'the token is removed after init');
  t.match(doc.write_files.find((w) => w.path.endsWith('/token'))!.path, /^\/run\//, 'the token only ever lives on tmpfs');
});

void t.test('the check fails on broken cloud-config', { skip }, async (t) => {
  const dir = scratch(t);
  const f = join(dir, 'bad');
  writeFileSync(f, text.replace(/^runcmd:/m, 'runcmd: 3\nunused:'));
  const r = await schema(f);
  t.notOk(r.ok, 'refused');
  t.match(r.out, /runcmd: 3 is not of type 'array'/, 'naming the key and the reason');
});
