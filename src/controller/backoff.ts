/**
 * Retry delays while the controller is away: exponential, capped, with jitter so a fleet of
 * vrouters that lost the controller together does not come back in lock step. "Equal jitter":
 * half of the capped exponential delay is fixed and half random, so no retry comes sooner than
 * half the step (full jitter could retry at once, again and again).
 */
export interface BackoffOptions {
  /** Milliseconds; the first retry's ceiling. Default 1000. */
  baseMs?: number;
  /** Milliseconds; no delay is longer. Default 60000. */
  maxMs?: number;
}

/** Delay before retry number `attempt` (1-based); `random()` in [0, 1). */
export function backoffDelay(attempt: number, o: BackoffOptions, random: () => number): number {
  const base = o.baseMs ?? 1000;
  const max = o.maxMs ?? 60_000;
  const cap = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.floor(cap / 2 + random() * (cap / 2));
}
