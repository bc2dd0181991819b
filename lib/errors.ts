/**
 * Typed vendor errors. Every vendor client throws only VendorError (never a raw axios or gRPC error, whose
 * request config carries credentials), and the activity layer turns it into a Temporal ApplicationFailure:
 * permanent kinds fail fast as non-retryable, transient kinds are retried by Temporal's retry policy.
 */

/** The external system an error came from. */
export type Vendor = 'sparkpost' | 'secret-manager' | 'sourcegraph';

/** What went wrong, independent of the vendor's own status codes. */
export type VendorErrorKind =
  /** Credentials were rejected (HTTP 401). Permanent. */
  | 'auth'
  /** Credentials lack a grant, or the resource is suspended (HTTP 403, gRPC PERMISSION_DENIED). Permanent. */
  | 'forbidden'
  /** The resource does not exist (HTTP 404, gRPC NOT_FOUND). Permanent for the call that got it. */
  | 'not-found'
  /** The resource exists already or changed underneath (HTTP 409, gRPC ALREADY_EXISTS, stale site config id). */
  | 'conflict'
  /** The request itself is wrong (HTTP 400/422, schema validation, gRPC INVALID_ARGUMENT). Permanent. */
  | 'invalid'
  /** The resource is in a state that forbids the call (gRPC FAILED_PRECONDITION, e.g. a disabled version). */
  | 'failed-precondition'
  /** Too many requests (HTTP 429, gRPC RESOURCE_EXHAUSTED). Transient: back off. */
  | 'rate-limited'
  /** The vendor or the network failed (5xx, timeouts, resets, gRPC UNAVAILABLE/DEADLINE_EXCEEDED). Transient. */
  | 'unavailable'
  /** The response could not be understood (HTML error page, truncated JSON, wrong types). Transient. */
  | 'malformed';

const TRANSIENT: ReadonlySet<VendorErrorKind> = new Set(['conflict', 'rate-limited', 'unavailable', 'malformed']);

const VENDOR_NAMES: Record<Vendor, string> = {
  sparkpost: 'SparkPost',
  'secret-manager': 'SecretManager',
  sourcegraph: 'Sourcegraph',
};

/** Options for constructing a VendorError. */
export interface VendorErrorOptions {
  vendor: Vendor;
  kind: VendorErrorKind;
  /** One line, free of secrets: what was attempted and what the vendor said. */
  message: string;
  /** HTTP status or gRPC code, when there was one. */
  status?: number;
  /** The vendor's own error code (SparkPost `code`), when there was one; TIMEOUT_CODE when no answer came in time. */
  code?: string;
  /** How long the vendor asked us to wait (Retry-After), in milliseconds. */
  retryAfterMs?: number;
}

/** VendorError's code when a request got no answer within its timeout (it already took the whole timeout). */
export const TIMEOUT_CODE = 'TIMEOUT';

/** An error from a vendor API, classified for retry decisions. Its message never contains credentials. */
export class VendorError extends Error {
  readonly vendor: Vendor;
  readonly kind: VendorErrorKind;
  readonly status?: number;
  readonly code?: string;
  readonly retryAfterMs?: number;

  constructor(opts: VendorErrorOptions) {
    super(opts.message);
    this.name = 'VendorError';
    this.vendor = opts.vendor;
    this.kind = opts.kind;
    this.status = opts.status;
    this.code = opts.code;
    this.retryAfterMs = opts.retryAfterMs;
  }

  /** Whether retrying the same call later can succeed. */
  get retryable(): boolean {
    return TRANSIENT.has(this.kind);
  }

  /** The ApplicationFailure type, e.g. `SparkPostRateLimitedError`. */
  get type(): string {
    const kind = this.kind
      .split('-')
      .map((w) => w[0].toUpperCase() + w.slice(1))
      .join('');
    return `${VENDOR_NAMES[this.vendor]}${kind}Error`;
  }
}

/** True when `err` is a VendorError of the given kind (and vendor, when given). */
export function isVendorError(err: unknown, kind?: VendorErrorKind, vendor?: Vendor): err is VendorError {
  return err instanceof VendorError && (!kind || err.kind === kind) && (!vendor || err.vendor === vendor);
}

/** Classifies an HTTP status into a VendorErrorKind. */
export function kindForHttpStatus(status: number): VendorErrorKind {
  if (status === 401) return 'auth';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 409) return 'conflict';
  if (status === 429) return 'rate-limited';
  if (status >= 500) return 'unavailable';
  return 'invalid';
}

/** Parses a Retry-After header (seconds or HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | undefined | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
