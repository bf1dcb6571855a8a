/**
 * Errors of the network test harness. They follow the project's convention (a stable, literal-typed
 * `code`) but live apart from src/errors.ts: they describe the test bench, not the product, and
 * must not grow the product's pinned code list.
 */

export const LabErrorCodes = {
  CVLAN_LAB_COMMAND: 'a command run by the harness exited with an error',
  CVLAN_LAB_TIMEOUT: 'a process did not become ready in time',
  CVLAN_LAB_EXITED: 'a process exited before it became ready',
  CVLAN_LAB_NOT_ROOT: 'network tests need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)',
  CVLAN_LAB_TOOL_MISSING: 'a peer binary or tool is not installed',
  CVLAN_LAB_TORN_DOWN: 'the lab was already torn down',
  CVLAN_LAB_PARSE: 'the output of a tool could not be parsed',
  CVLAN_LAB_ARG: 'an argument passed to the harness is invalid',
} as const;

export type LabErrorCode = keyof typeof LabErrorCodes;

export class LabError extends Error {
  readonly code: LabErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: LabErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message ?? LabErrorCodes[code], options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'LabError';
    this.code = code;
    this.details = options?.details;
  }
}
