/**
 * Unique names for namespaces and interfaces. Several engineers and CI jobs run network tests on the
 * same kernel at once, and `wg` finds userspace interfaces through a path that is not per namespace,
 * so every name carries a random suffix.
 */
import { randomBytes } from 'node:crypto';
import { LabError } from './errors.js';

/** Linux IFNAMSIZ minus the terminating NUL. */
export const MAX_IFNAME = 15;

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `n` random lowercase letters/digits (36^5 ≈ 6e7 for the default, ample for parallel runs). */
export function randomSuffix(n = 5): string {
  const bytes = randomBytes(n);
  let s = '';
  for (const b of bytes) s += ALPHABET[b % ALPHABET.length];
  return s;
}

/** An interface name `<prefix><suffix>` that fits IFNAMSIZ. */
export function ifName(prefix: string, suffix: string): string {
  const name = `${prefix}${suffix}`;
  if (name.length > MAX_IFNAME || !/^[A-Za-z0-9_.-]+$/.test(name)) {
    throw new LabError('CVLAN_LAB_ARG', `interface name ${JSON.stringify(name)} is invalid or longer than ${MAX_IFNAME}`);
  }
  return name;
}
