/** `cvlan-vrouter version`: versions of the CLI, the package and the native addon. */
import { nativeInfo } from '../dataplane/index.js';
import { parseCommand } from './args.js';

export const HELP = `usage: cvlan-vrouter version [--json]

Prints the versions of cvlan-vrouter and of its native addon.

options:
  --json       as JSON
  -h, --help   this text
`;

export async function main(argv: string[]): Promise<number> {
  const args = parseCommand({ name: 'cvlan-vrouter version', help: HELP, options: { json: { type: 'boolean' } } }, argv);
  if (!args) return 0;
  const info = nativeInfo();
  process.stdout.write(
    args.values.json ? `${JSON.stringify({ version: info.version, addon: info.version, napi: info.napiVersion })}\n` : `cvlan-vrouter ${info.version} (native addon ${info.version}, N-API ${info.napiVersion})\n`,
  );
  return 0;
}
