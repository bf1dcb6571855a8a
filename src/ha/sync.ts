/**
 * The data planes' sync channel as the control plane sees it: the `HaSync` class of the native
 * binding (crates/cvlan-node/src/ha.rs, docs/ha.md), typed here so that the role logic can be
 * built and tested against exactly that surface.
 */

import type { HaRole } from './role.js';

export type HaSyncEventKind = 'peer-up' | 'peer-down' | 'rejected' | 'takeover' | 'lease-exhausted' | 'snapshot-done';

export interface HaSyncEvent {
  kind: HaSyncEventKind;
  reason?: string;
  detail?: object;
}

export interface HaSyncStatus {
  role: HaRole;
  peerConnected: boolean;
  /** Absent (or null) until the peer said it. */
  peerRole?: HaRole | null;
  peerGeneration?: number | null;
  /** Milliseconds since the last authenticated frame from the peer. */
  lastSyncAgeMs?: number | null;
  syncedWgSessions: number;
  syncedEspSas: number;
  framesSent: number | bigint;
  framesReceived: number | bigint;
  rejectedForged: number | bigint;
  rejectedReplayed: number | bigint;
  leaseExhausted: number | bigint;
}

export interface HaSyncOptions {
  /** "ip:port" the TCP listener binds. */
  listen: string;
  /** "ip:port" of the peer's listener. */
  peer: string;
  /** 32 bytes; the caller zeroes its copy after the constructor returns. */
  key: Buffer;
  nodeId: number;
  syncIntervalMs?: number;
  leaseMessages?: number;
  relay?: { bind: string; deliverTo: string };
}

/** The part of `HaSync` the role logic drives. */
export interface HaSyncHandle {
  setGeneration(generation: number): void;
  setRole(role: HaRole): void;
  status(): HaSyncStatus;
  close(): void;
}

export type HaSyncFactory = (options: HaSyncOptions, onEvent: (ev: HaSyncEvent) => void) => HaSyncHandle;
