/**
 * The daemon's event log lines (`tunnel_up`, `tunnel_down`, `auth_failure`, `config_applied`, …:
 * the lines of `log.ts` that carry an `event` field) for `GET /v1/events` and `vrouterctl logs`.
 *
 * The stream is a pino destination next to stdout, so it receives each line after the logger's
 * redaction and secret scrubbing: what it holds is exactly what the log says, never more. It
 * keeps the last `capacity` events in a ring; each follower gets new lines as they are written
 * and is cut off (not waited for) when it falls `maxBehind` lines behind, so a slow client never
 * makes the daemon buffer without bound or block a log call.
 */
import type { DestinationStream } from 'pino';

export interface EventFollower {
  /** Called with each new event line (JSON, no newline). */
  line(text: string): void;
  /** Called once when the stream drops this follower (it fell behind or the stream closed). */
  end(reason: string): void;
}

export interface EventStreamOptions {
  /** Events kept for readers that arrive later. Default 1000. */
  capacity?: number;
  /** Longest line kept, bytes; longer lines are left out of the stream (they stay in the log). Default 64 KiB. */
  maxLineBytes?: number;
}

export class EventStream implements DestinationStream {
  readonly #capacity: number;
  readonly #maxLineBytes: number;
  readonly #ring: string[] = [];
  readonly #followers = new Set<EventFollower>();
  #dropped = 0;

  constructor(opts: EventStreamOptions = {}) {
    this.#capacity = opts.capacity ?? 1000;
    this.#maxLineBytes = opts.maxLineBytes ?? 64 << 10;
  }

  /** pino's destination interface: one serialized line per call. */
  write(chunk: string): void {
    const text = chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk;
    // Cheap test first: most log lines are not events.
    if (!text.includes('"event":') || Buffer.byteLength(text) > this.#maxLineBytes) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof parsed !== 'object' || parsed === null || typeof (parsed as { event?: unknown }).event !== 'string') return;
    this.#ring.push(text);
    if (this.#ring.length > this.#capacity) {
      this.#ring.shift();
      this.#dropped++;
    }
    for (const f of this.#followers) f.line(text);
  }

  /** The kept events, oldest first. */
  recent(): string[] {
    return [...this.#ring];
  }

  /** Events that fell out of the ring since the start. */
  get dropped(): number {
    return this.#dropped;
  }

  follow(f: EventFollower): () => void {
    this.#followers.add(f);
    return () => {
      this.#followers.delete(f);
    };
  }

  get followers(): number {
    return this.#followers.size;
  }

  /** Ends every follower (the daemon stops). */
  close(): void {
    for (const f of [...this.#followers]) {
      this.#followers.delete(f);
      f.end('the daemon is stopping');
    }
  }
}
