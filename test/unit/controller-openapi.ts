/**
 * Checks HTTP exchanges against api/controller.openapi.json with a real JSON Schema validator
 * (ajv, draft 2020-12 as OpenAPI 3.1 uses), so tests hold the client and the reference
 * controller to the document rather than to each other.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { loadOpenapi, type Exchange } from '../../src/controller/reference/server.js';

type ValidateFn = ((v: unknown) => boolean) & { errors?: { instancePath: string; message?: string }[] | null };

type Obj = Record<string, unknown>;
export const openapi = loadOpenapi() as unknown as { paths: Record<string, Record<string, Obj>>; components: Obj };
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
ajv.addSchema({ $id: 'openapi.json', components: openapi.components });

const compiled = new Map<string, ValidateFn>();
function validator(schema: Obj): ValidateFn {
  // Schemas in the document refer to `#/components/...`; resolve them inside the registered copy.
  const text = JSON.stringify(schema).replace(/"#\/components\//g, '"openapi.json#/components/');
  let v = compiled.get(text);
  if (!v) {
    v = ajv.compile(JSON.parse(text) as Obj);
    compiled.set(text, v);
  }
  return v;
}

function deref(v: Obj): Obj {
  const ref = v.$ref;
  if (typeof ref !== 'string') return v;
  let x: unknown = openapi;
  for (const part of ref.replace(/^#\//, '').split('/')) x = (x as Obj)[part];
  return deref(x as Obj);
}

function check(schema: Obj, value: unknown, where: string, out: string[]): void {
  const v = validator(schema);
  if (!v(value)) out.push(`${where}: ${(v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ')}`);
}

/** Every way `e` departs from the document (empty: it conforms). */
export function problems(e: Exchange): string[] {
  const out: string[] = [];
  const path = e.route.replace(/:([a-z_]+)/g, '{$1}');
  const op = openapi.paths[path]?.[e.method.toLowerCase()];
  if (!op) return [`${e.method} ${path} is not in the document`];
  const name = `${String(op.operationId)}`;
  for (const p of (op.parameters as Obj[] | undefined) ?? []) {
    const param = deref(p);
    if (param.in !== 'header') continue;
    const value = e.requestHeaders[String(param.name).toLowerCase()];
    if (value === undefined) {
      if (param.required) out.push(`${name} request: header ${String(param.name)} missing`);
    } else check(param.schema as Obj, value, `${name} request header ${String(param.name)}`, out);
  }
  if (op.security && !/^CVLAN-Ed25519 id=[^,]+,ts=\d+,sig=[A-Za-z0-9+/]{86}==$/.test(String(e.requestHeaders.authorization ?? ''))) out.push(`${name} request: no signature`);
  const body = (op.requestBody as Obj | undefined)?.content as Obj | undefined;
  if (body && e.status < 400) check((body['application/json'] as Obj).schema as Obj, e.requestBody, `${name} request body`, out);
  const resp = (op.responses as Obj)[String(e.status)];
  if (!resp) return [...out, `${name}: status ${e.status} is not in the document`];
  const r = deref(resp as Obj);
  for (const [h, spec] of Object.entries((r.headers as Obj | undefined) ?? {})) {
    const hs = deref(spec as Obj);
    const value = e.responseHeaders[h.toLowerCase()];
    if (value === undefined) {
      if (hs.required) out.push(`${name} ${e.status}: header ${h} missing`);
    } else check(hs.schema as Obj, String(value), `${name} ${e.status} header ${h}`, out);
  }
  const content = r.content as Obj | undefined;
  if (content) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(e.responseBody);
    } catch {
      return [...out, `${name} ${e.status}: body is not JSON`];
    }
    check((content['application/json'] as Obj).schema as Obj, parsed, `${name} ${e.status} body`, out);
  } else if (e.responseBody.length > 0) out.push(`${name} ${e.status}: a body where the document has none`);
  return out;
}
