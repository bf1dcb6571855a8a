// Line numbers of JSON values and syntax errors (src/config/load.ts): what `cvlan-vrouter check`
// prints instead of V8's character offsets.
import t from 'tap';
import { jsonValueLines, lineOfPath, parseJsonWithLines } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

const text = `{
  "tenant_id": "a\\"b{[",
  "empty": {}, "list": [],
  "tunnels": [
    {
      "id": "x",
      "remote_subnets": [
        "10.0.0.0/8",

        "10.1.0.0/16"
      ]
    },
    { "id": "y", "n": -1.5e3, "t": true, "z": null }
  ]
}`;

t.test('each value has the line of its key or of itself in an array', async (t) => {
  const lines = jsonValueLines(text);
  t.equal(lines.get('(document)'), 1);
  t.equal(lines.get('tenant_id'), 2, 'a string with an escaped quote and brackets');
  t.equal(lines.get('empty'), 3);
  t.equal(lines.get('list'), 3);
  t.equal(lines.get('tunnels[0]'), 5);
  t.equal(lines.get('tunnels[0].remote_subnets[0]'), 8);
  t.equal(lines.get('tunnels[0].remote_subnets[1]'), 10, 'a blank line counted');
  t.equal(lines.get('tunnels[1].z'), 13);
  t.same(lineOfPath(lines, 'tunnels[1].auth.psk'), 13, 'a missing field: the line of the nearest value that exists');
  t.same(lineOfPath(lines, 'colour'), 1, 'a missing top-level field: the document');
  t.same(parseJsonWithLines(text, 'f.json').doc, JSON.parse(text), 'the document is what JSON.parse gives');
});

t.test('syntax errors: FILE:LINE:COLUMN and what was expected', async (t) => {
  const cases: Array<[string, string, RegExp]> = [
    ['{\n  "a": 1,\n}', 'f.json:3:1', /unexpected "}", expected a property name in double quotes/],
    ['{"a": [1, 2\n', 'f.json:2:1', /unexpected end of input, expected ',' or '\]'/],
    ['{"a": 01}', 'f.json:1:8', /expected ',' or '}'/],
    ['{"a": "x\ny"}', 'f.json:1:7', /expected a string/],
    ['{"a": tru}', 'f.json:1:7', /expected true, false or null/],
    ['{} {}', 'f.json:1:4', /expected end of input/],
    ['', 'f.json:1:1', /unexpected end of input, expected a value/],
  ];
  for (const [input, path, reason] of cases) {
    try {
      parseJsonWithLines(input, 'f.json');
      t.fail(`${JSON.stringify(input)} should not parse`);
    } catch (e) {
      t.ok(e instanceof ConfigError);
      const i = (e as ConfigError).issues[0]!;
      t.equal(i.path, path, `${JSON.stringify(input)}: ${path}`);
      t.match(i.reason, /^JSON syntax error: /);
      t.match(i.reason, reason);
    }
  }
});
