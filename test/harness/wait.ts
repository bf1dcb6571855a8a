/** Polling for a condition in network tests, with the time it took (tests quote such figures). */

/**
 * Calls `fn` every `stepMs` until `ok` holds for its value; resolves with the value and the ms
 * it took, or rejects naming `what` and the last value after `timeoutMs`.
 */
export async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, stepMs = 100): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  let last: T | undefined;
  while (Date.now() - start < timeoutMs) {
    last = await fn();
    if (ok(last)) return { value: last, ms: Date.now() - start };
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`${what}: not reached within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}
