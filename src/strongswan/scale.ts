/**
 * charon's settings for many tunnels, and which of its lines say an IKE negotiation failed.
 *
 * charon keeps its IKE_SAs in one hash table whose size defaults to 1 bucket in 1 segment (one
 * list, one lock): every packet, event and `list-sas` then walks all IKE_SAs under one mutex. The
 * table is sized for the Large count (2000 tunnels, a few IKE_SAs each while rekeying) and split
 * so that the threads working on different IKE_SAs rarely wait on each other.
 */
import type { ConfScalar } from './conf.js';

/** Top-level `charon.*` settings of the production instance. */
export function charonSettings(): Record<string, ConfScalar> {
  return {
    // Routes and virtual IPs belong to the daemon (the TUN), not to charon.
    install_routes: 'no',
    install_virtual_ip: 'no',
    // A lost packet is sent again after 2, 3.6, 6.5 s; given up after ~24 s: within a peer's 30 s
    // half-open timeout, so the initiator's next try starts afresh rather than too late.
    retransmit_tries: 3,
    retransmit_timeout: 2,
    ikesa_table_size: 4096,
    ikesa_table_segments: 16,
  };
}

// charon's level-1 lines (src/libcharon/sa/...) for negotiations that end without SAs. Not the
// `sending retransmit` lines: a storm of those says nothing a `giving up` line does not.
const FAILURE_RE =
  /giving up after|establishing (IKE|CHILD)_SA failed|peer not responding|failed to establish|received [A-Z_]+ notify error|notify error|no (IKE|peer|matching) config|no shared key found|MAC mismatched|half open IKE_SA|INVALID_IKE_SPI|unable to (install|create|allocate)|deleting half open/;

/** True for a charon log line that says an IKE_SA or CHILD_SA could not be negotiated. */
export function isIkeFailureLine(line: string): boolean {
  return FAILURE_RE.test(line);
}
