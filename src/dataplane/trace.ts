/**
 * The data plane's packet trace (crates/cvlan-dataplane/src/trace): which stages packets passed
 * on the workers, recorded in per-worker rings while started, filtered on the workers.
 */
import { fromNative } from '../errors.js';
import {
  loadBinding,
  type BindingTracePacket,
  type BindingTraceStage,
  type BindingTraceStartOptions,
  type BindingTraceStatus,
} from './binding.js';

export type TraceStartOptions = BindingTraceStartOptions;
export type TraceStatus = BindingTraceStatus;
export type TraceStage = BindingTraceStage;
export type TracePacket = BindingTracePacket;

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fromNative(e);
  }
}

/** Starts a trace (replacing a running one and clearing what was recorded). */
export function traceStart(opts: TraceStartOptions): void {
  call(() => loadBinding().traceStart(opts));
}

export function traceStop(): void {
  call(() => loadBinding().traceStop());
}

export function traceClear(): void {
  call(() => loadBinding().traceClear());
}

export function traceStatus(): TraceStatus {
  return call(() => loadBinding().traceStatus());
}

/** The traced packets of every worker, merged by time. */
export function traceRead(): TracePacket[] {
  return call(() => loadBinding().traceRead());
}
