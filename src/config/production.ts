/**
 * Guard of the production configuration loader: a document meant for the daemon must never
 * select a test-only transport, wherever in the document it appears. The full controller
 * model is validated after this check.
 */
import { ConfigError, type ConfigIssue } from '../errors.js';
import { TEST_ONLY_TRANSPORT } from './testbed.js';

/** Throws CVLAN_ERR_CONFIG_TEST_ONLY naming every field that selects a test-only transport. */
export function refuseTestOnly(doc: unknown, path = ''): void {
  const issues: ConfigIssue[] = [];
  const walk = (v: unknown, p: string): void => {
    if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${p}[${i}]`));
    else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v)) walk(x, p ? `${p}.${k}` : k);
    } else if (v === TEST_ONLY_TRANSPORT) {
      issues.push({ path: p, reason: `"${TEST_ONLY_TRANSPORT}" is for tests and benchmarks only and is refused in production` });
    }
  };
  walk(doc, path);
  if (issues.length) throw new ConfigError(issues, 'CVLAN_ERR_CONFIG_TEST_ONLY');
}
