/**
 * The controller loop, in processing order: fetch (long poll) → validate → plan → apply →
 * report. Validation, planning and applying are the caller's `apply` (the same path as a
 * SIGHUP reload: `loadDesiredState` → `Vrouter.reconcile`, stored as the last known good);
 * this module owns the rhythm:
 *
 *   - a long poll with the ETag of the last generation seen, so a change arrives at once;
 *   - a refused generation is reported with field and reason and not fetched again; the
 *     running state stays;
 *   - a status report after every applied or refused generation and every `statusIntervalS`;
 *   - while the controller is away, retries with exponential backoff and jitter; nothing in
 *     the data plane waits for it;
 *   - the credential is rotated when less than `rotateBeforeS` of its life is left.
 *
 * Time and randomness are arguments (`clock`, `random`), so tests drive the backoff exactly.
 */
import type { Logger } from 'pino';
import { CvlanError } from '../errors.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';
import type { ControllerClient } from './client.js';
import { writeCredential, type Credential } from './credential.js';
import type { StatusReport } from './protocol.js';

export type ApplyResult = { applied: true; version: string } | { applied: false; issues: { field: string; reason: string }[] };

export interface Clock {
  /** Unix milliseconds. */
  now(): number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    }),
};

export interface ControllerLoopOptions {
  client: ControllerClient;
  credential: Credential;
  /** Where a rotated credential is written. */
  credentialPath: string;
  /** Validates, plans and applies one generation (`etag` as the controller sent it, to be stored with it); never throws for a bad document. */
  apply(generation: number, document: unknown, etag: string): Promise<ApplyResult>;
  /** Tunnels, peers and counters as they are now. */
  observe(): Pick<StatusReport, 'tunnels' | 'peers' | 'counters'>;
  /** The generation running now (from the stored last known good), if any. */
  applied?: { generation: number; etag: string; version: string };
  /** Seconds a long poll is held by the controller. Default 30. */
  pollWaitS?: number;
  /** Seconds between periodic status reports. Default 60. */
  statusIntervalS?: number;
  /** Seconds before expiry at which the credential is rotated. Default 7 days. */
  rotateBeforeS?: number;
  backoff?: BackoffOptions;
  clock?: Clock;
  random?: () => number;
  logger: Logger;
}

export class ControllerLoop {
  readonly #o: ControllerLoopOptions;
  readonly #clock: Clock;
  readonly #stop = new AbortController();
  #credential: Credential;
  #etag: string | undefined;
  #applied: { generation: number; version: string } | undefined;
  #refused: StatusReport['refused'] = null;
  #reporting: Promise<void> = Promise.resolve();
  #polling: Promise<void> | undefined;
  #statusTimer: Promise<void> | undefined;
  /** Delays slept between failed attempts, for logs and tests. */
  readonly delays: number[] = [];

  constructor(o: ControllerLoopOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#credential = o.credential;
    if (o.applied) {
      this.#etag = o.applied.etag;
      this.#applied = { generation: o.applied.generation, version: o.applied.version };
    }
  }

  get appliedGeneration(): number | undefined {
    return this.#applied?.generation;
  }

  get credential(): Credential {
    return this.#credential;
  }

  start(): void {
    this.#polling ??= this.#poll();
    this.#statusTimer ??= this.#periodic();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    this.#o.client.close();
    await Promise.allSettled([this.#polling, this.#statusTimer, this.#reporting]);
  }

  get #stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  /** One report with what runs now; queued behind the previous one. Failures are logged, not thrown. */
  report(): Promise<void> {
    this.#reporting = this.#reporting.then(async () => {
      if (this.#stopped) return;
      const report: StatusReport = {
        reported_at: new Date(this.#clock.now()).toISOString(),
        applied_generation: this.#applied?.generation ?? null,
        config_version: this.#applied?.version ?? null,
        refused: this.#refused,
        ...this.#o.observe(),
      };
      try {
        await this.#o.client.reportStatus(this.#credential, report);
      } catch (e) {
        if (!this.#stopped) this.#o.logger.warn({ event: 'controller_status_failed', err: describe(e) }, 'status report failed');
      }
    });
    return this.#reporting;
  }

  async #periodic(): Promise<void> {
    const every = (this.#o.statusIntervalS ?? 60) * 1000;
    while (!this.#stopped) {
      await this.#clock.sleep(every, this.#stop.signal);
      if (!this.#stopped) await this.report();
    }
  }

  async #rotateIfDue(): Promise<void> {
    const left = Date.parse(this.#credential.expiresAt) - this.#clock.now();
    if (!(left < (this.#o.rotateBeforeS ?? 7 * 86400) * 1000)) return;
    const next = await this.#o.client.rotate(this.#credential);
    // The controller already forgot the old key: keep the new one in memory even if the disk fails.
    this.#credential = next;
    try {
      writeCredential(this.#o.credentialPath, next);
      this.#o.logger.info({ event: 'controller_credential_rotated', expires_at: next.expiresAt }, 'controller credential rotated');
    } catch (e) {
      this.#o.logger.error({ event: 'controller_credential_rotated', err: describe(e) }, 'credential rotated but not stored; a restart will need `cvlan-vrouter init`');
    }
  }

  async #poll(): Promise<void> {
    let attempt = 0;
    let first = true;
    while (!this.#stopped) {
      try {
        await this.#rotateIfDue();
        const asked = this.#clock.now();
        // The first request answers at once, so a freshly started vrouter reports without waiting a poll.
        const answer = await this.#o.client.getConfig(this.#credential, { ...(this.#etag !== undefined ? { etag: this.#etag } : {}), waitS: first ? 0 : (this.#o.pollWaitS ?? 30) });
        if (attempt > 0) this.#o.logger.info({ event: 'controller_reachable', after_attempts: attempt }, 'controller reachable again');
        attempt = 0;
        if (first) {
          first = false;
          if (!answer.changed) void this.report();
        }
        if (!answer.changed) {
          this.#etag = answer.etag;
          // A controller that answers a long poll at once must not make this a busy loop.
          if (this.#clock.now() - asked < 1000) await this.#clock.sleep(1000, this.#stop.signal);
          continue;
        }
        this.#etag = answer.etag;
        if (answer.generation === this.#applied?.generation) {
          void this.report();
          continue;
        }
        const result = await this.#o.apply(answer.generation, answer.document, answer.etag);
        if (result.applied) {
          this.#applied = { generation: answer.generation, version: result.version };
          this.#refused = null;
          this.#o.logger.info({ event: 'controller_generation_applied', generation: answer.generation, version: result.version }, 'controller generation applied');
        } else {
          this.#refused = { generation: answer.generation, issues: result.issues };
          this.#o.logger.error({ event: 'controller_generation_refused', generation: answer.generation, issues: result.issues }, 'controller generation refused; the running configuration stays');
        }
        void this.report();
      } catch (e) {
        if (this.#stopped) break;
        attempt++;
        const delay = backoffDelay(attempt, this.#o.backoff ?? {}, this.#o.random ?? Math.random);
        this.delays.push(delay);
        this.#o.logger.warn({ event: 'controller_unreachable', attempt, retry_in_ms: delay, err: describe(e) }, 'controller request failed; forwarding continues on the running configuration');
        await this.#clock.sleep(delay, this.#stop.signal);
      }
    }
  }
}

function describe(e: unknown): { code?: string; message: string } {
  return e instanceof CvlanError ? { code: e.code, message: e.message } : { message: e instanceof Error ? e.message : String(e) };
}
