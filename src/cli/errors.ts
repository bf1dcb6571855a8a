/** How a command's failure is shown: code, message and, for a configuration, its issues. */
import { ConfigError, CvlanError } from '../errors.js';

export function describeError(e: unknown): { code?: string; message: string; issues?: unknown } {
  if (e instanceof ConfigError) return { code: e.code, message: e.message, issues: e.issues };
  if (e instanceof CvlanError) return { code: e.code, message: e.message };
  return { message: e instanceof Error ? e.message : String(e) };
}
