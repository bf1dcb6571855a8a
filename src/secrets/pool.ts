/**
 * Secure memory for many small secrets: slabs of sodium_malloc'd memory cut into fixed-size slots.
 *
 * sodium_malloc gives every allocation its own mapping with guard pages around it (≥ 2 resident
 * pages and 4 kernel mappings for a 32-byte key). With a PSK per tunnel that was 16 MiB of RSS and
 * 8000 mappings at 2000 tunnels, and every fork of the daemon (each `ip`, charon) copied the
 * mappings. Here a slab of 64 KiB holds up to 2048 secrets behind the same guard pages and mlock.
 * What it gives up: a guard page between two secrets of the same slab (JavaScript bounds-checks
 * every Buffer; the native code it reaches takes pointer and length from the same view), and the
 * fault a view used after `release` met once sodium_free had unmapped it — such a view now reads
 * zeros, or a later secret; `Secret` hands its bytes out only inside `use()` for that reason.
 *
 * Stages: alloc picks the size class → a slab of that class with a free slot (a new slab when none
 * has one) → a Buffer view of exactly the requested length; free zeroes the whole slot → returns it
 * to its slab → unmaps a slab left empty unless it is its class's last.
 */

import { createRequire } from 'node:module';

interface Sodium {
  sodium_malloc(size: number): Buffer;
  sodium_free(buf: Buffer): void;
  sodium_memzero(buf: Buffer): void;
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium;

/** Bytes per slab: 16 pages, one mapping (plus sodium's guard and canary pages). */
export const SLAB_BYTES = 64 * 1024;
/** Slot sizes, bytes; a secret larger than the last gets a sodium_malloc of its own. */
export const SLOT_CLASSES = [32, 64, 128, 256, 512, 1024] as const;

class Slab {
  readonly memory: Buffer;
  /** Offsets of the free slots, taken from the end. */
  readonly free: number[];
  readonly slots: number;

  constructor(readonly slot: number) {
    this.memory = sodium.sodium_malloc(SLAB_BYTES);
    sodium.sodium_memzero(this.memory);
    this.slots = SLAB_BYTES / slot;
    this.free = Array.from({ length: this.slots }, (_, i) => (this.slots - 1 - i) * slot);
  }

  get empty(): boolean {
    return this.free.length === this.slots;
  }
}

/** A slot lent out: the view, and how to give it back (zeroed). */
export interface PooledBuffer {
  readonly bytes: Buffer;
  release(): void;
}

/** Slabs by slot size; one per process (`secureBuffer` in `./keys.ts`). */
export class SecretPool {
  readonly #slabs = new Map<number, Slab[]>();

  /** Secure memory of `size` bytes, zero-filled; undefined when `size` is above the largest slot. */
  alloc(size: number): PooledBuffer | undefined {
    const slot = SLOT_CLASSES.find((c) => c >= size);
    if (slot === undefined) return undefined;
    let slabs = this.#slabs.get(slot);
    if (!slabs) this.#slabs.set(slot, (slabs = []));
    let slab = slabs.find((s) => s.free.length > 0);
    if (!slab) slabs.push((slab = new Slab(slot)));
    const offset = slab.free.pop()!;
    const owner = slab;
    const bytes = owner.memory.subarray(offset, offset + size);
    // As sodium_malloc marks its buffers (sodium-native's `secure`): the view is secure memory too.
    Object.defineProperty(bytes, 'secure', { value: true });
    let live = true;
    return {
      bytes,
      release: () => {
        if (!live) return;
        live = false;
        sodium.sodium_memzero(owner.memory.subarray(offset, offset + slot));
        owner.free.push(offset);
        this.#drop(owner);
      },
    };
  }

  /** Slabs mapped and slots lent, by slot size (for tests and diagnostics). */
  stats(): { slot: number; slabs: number; used: number }[] {
    return [...this.#slabs].map(([slot, slabs]) => ({ slot, slabs: slabs.length, used: slabs.reduce((n, s) => n + s.slots - s.free.length, 0) }));
  }

  #drop(slab: Slab): void {
    const slabs = this.#slabs.get(slab.slot)!;
    // Keep a class's last slab: a secret replaced on reload would otherwise map it again at once.
    if (!slab.empty || slabs.length === 1) return;
    slabs.splice(slabs.indexOf(slab), 1);
    sodium.sodium_free(slab.memory);
  }
}
