/**
 * The SDK runtime of the worker process: our logger for everything the SDK and its native core log, and, when
 * MANAGED_SMTP_METRICS_ADDRESS is set (e.g. `0.0.0.0:9464`), the core's Prometheus exporter serving `GET /metrics`
 * (worker, poller, workflow/activity task and client request metrics, all prefixed `temporal_`).
 * Also the parsing of the process-level settings the worker validates with the rest of its environment.
 */
import { Runtime, type Logger, type LogLevel } from '@temporalio/worker';

/** Default MANAGED_SMTP_SHUTDOWN_GRACE: how long in-flight activities get to finish after SIGTERM. */
export const DEFAULT_SHUTDOWN_GRACE = '30s';

/** Upper bound of MANAGED_SMTP_SHUTDOWN_GRACE; longer than any orchestrator waits before SIGKILL. */
const MAX_SHUTDOWN_GRACE_MS = 60 * 60 * 1000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses MANAGED_SMTP_METRICS_ADDRESS. The core binds it as a socket address, so the host must be an IP literal
 * (`0.0.0.0`, `127.0.0.1`, `[::]`), not a name. Returns the normalised address, or a problem line.
 */
export function parseMetricsAddress(value: string | undefined): { address?: string; problem?: string } {
  const text = value?.trim() ?? '';
  if (text === '') return {};
  const problem = 'MANAGED_SMTP_METRICS_ADDRESS: must be ip:port, e.g. 0.0.0.0:9464 or [::]:9464';
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3}):(\d{1,5})$/.exec(text);
  const v6 = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(text);
  let port: number;
  if (v4) {
    if (v4.slice(1, 5).some((octet) => Number(octet) > 255)) return { problem };
    port = Number(v4[5]);
  } else if (v6) {
    if (!v6[1].includes(':')) return { problem };
    port = Number(v6[2]);
  } else {
    return { problem };
  }
  if (port < 1 || port > 65535) return { problem };
  return { address: text };
}

/**
 * Parses a duration such as `30s`, `500ms`, `2m` or `1h` (a unit is required: a bare number is ambiguous) into
 * milliseconds; used for MANAGED_SMTP_SHUTDOWN_GRACE (default 30s, at most 1h).
 */
export function parseShutdownGrace(value: string | undefined): { ms?: number; problem?: string } {
  const text = value?.trim() || DEFAULT_SHUTDOWN_GRACE;
  const m = /^(\d{1,7}(?:\.\d{1,3})?)\s*(ms|s|m|h)$/.exec(text);
  const ms = m ? Math.round(Number(m[1]) * UNIT_MS[m[2]]) : NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_SHUTDOWN_GRACE_MS) {
    return { problem: 'MANAGED_SMTP_SHUTDOWN_GRACE: must be a duration from 0s to 1h, e.g. 30s, 500ms or 2m' };
  }
  return { ms };
}

/** What installRuntime sets up. */
export interface RuntimeSettings {
  /** Receives the SDK's messages, including the native core's (forwarded). */
  logger: Logger;
  /** The level the logger keeps; the core is asked for no more than that (at least WARN, as INFO is chatty). */
  level: LogLevel;
  /** ip:port of the Prometheus endpoint; none when unset. */
  metricsAddress?: string;
}

/**
 * Installs the SDK runtime. Must run before the first NativeConnection or Worker is created (the SDK otherwise
 * installs a default one); throws if the metrics address cannot be bound.
 */
export function installRuntime(settings: RuntimeSettings): Runtime {
  const coreLevel: LogLevel = settings.level === 'INFO' ? 'WARN' : settings.level;
  return Runtime.install({
    logger: settings.logger,
    telemetryOptions: {
      // Forwarding sends the core's own lines through our logger (format and redaction) instead of raw stderr.
      logging: { filter: { core: coreLevel, other: 'ERROR' }, forward: {} },
      ...(settings.metricsAddress ? { metrics: { prometheus: { bindAddress: settings.metricsAddress } } } : {}),
    },
  });
}
