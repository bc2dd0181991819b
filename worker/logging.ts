/**
 * The worker's logs: one logger for the SDK runtime (Temporal's own messages, workflow and activity loggers, and the
 * native core's messages, which the runtime forwards) and for the worker's own lines, so both share one format.
 *
 *  - `MANAGED_SMTP_LOG_FORMAT=text` (default): the worker's lines look as they always did (`worker: ...`, info on
 *    stdout, warnings and errors on stderr); SDK lines go to stderr as `<time> [LEVEL] message {meta}`.
 *  - `MANAGED_SMTP_LOG_FORMAT=json`: every line on stdout is one JSON object `{time, level, severity, message, ...meta}`
 *    (one ordered stream; `severity` is what Google Cloud Logging reads, `level` is the SDK's name).
 *  - `MANAGED_SMTP_LOG_LEVEL`: TRACE, DEBUG, INFO (default), WARN or ERROR, for both.
 *
 * A redaction guard runs on every line's metadata: keys named like a key, token, password, secret, credential or
 * recipient are dropped (at any depth), bytes are replaced by their length, so a careless `log.info(msg, { apiKey })`
 * in an activity cannot leak a secret. It cannot see secrets inside free text: messages must stay clean themselves.
 */
import { inspect } from 'node:util';
import { DefaultLogger, type LogEntry, type Logger, type LogLevel, type LogMetadata } from '@temporalio/worker';

/** Line format of the logs. */
export type LogFormat = 'json' | 'text';

/** Validated logging settings. */
export interface LogSettings {
  format: LogFormat;
  level: LogLevel;
}

const LEVELS: readonly LogLevel[] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/** Cloud Logging's names for the SDK levels. */
const SEVERITY: Record<LogLevel, string> = {
  TRACE: 'DEBUG',
  DEBUG: 'DEBUG',
  INFO: 'INFO',
  WARN: 'WARNING',
  ERROR: 'ERROR',
};

/** Meta keys whose values are never written. `key` alone also catches apiKey, sendKey, privateKey... */
export const SENSITIVE_META_KEY = /key|token|passw(or)?d|secret|credential|recipient|authorization|cookie/i;

const MAX_DEPTH = 6;
const MAX_ARRAY_ITEMS = 50;
const MAX_STRING = 4000;

/** Reads MANAGED_SMTP_LOG_FORMAT and MANAGED_SMTP_LOG_LEVEL; `problems` has one line per bad variable. */
export function parseLogSettings(env: NodeJS.ProcessEnv = process.env): { settings: LogSettings; problems: string[] } {
  const problems: string[] = [];
  const formatText = (env.MANAGED_SMTP_LOG_FORMAT ?? '').trim().toLowerCase() || 'text';
  let format: LogFormat = 'text';
  if (formatText === 'json' || formatText === 'text') format = formatText;
  else problems.push('MANAGED_SMTP_LOG_FORMAT: must be json or text');
  const levelText = (env.MANAGED_SMTP_LOG_LEVEL ?? '').trim().toUpperCase() || 'INFO';
  let level: LogLevel = 'INFO';
  if ((LEVELS as readonly string[]).includes(levelText)) level = levelText as LogLevel;
  else problems.push(`MANAGED_SMTP_LOG_LEVEL: must be one of ${LEVELS.join(', ')}`);
  return { settings: { format, level }, problems };
}

/** A copy of `value` that is safe to write: sensitive keys dropped, bytes summarised, errors flattened, bounded. */
function sanitize(value: unknown, depth: number, seen: WeakSet<object>, dropped: string[], path: string): unknown {
  if (value === null || value === undefined) return value;
  switch (typeof value) {
    case 'string':
      return value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}…` : value;
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'symbol':
    case 'function':
      return undefined;
  }
  const obj = value as object;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) return `<${value.byteLength} bytes>`;
  if (seen.has(obj)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[nested too deep]';
  seen.add(obj);
  try {
    if (value instanceof Error) {
      const out: Record<string, unknown> = { name: value.name, message: sanitize(value.message, depth, seen, [], '') };
      if (value.stack) out.stack = sanitize(value.stack, depth, seen, [], '');
      const cause = (value as { cause?: unknown }).cause;
      if (cause !== undefined) out.cause = sanitize(cause, depth + 1, seen, dropped, `${path}.cause`);
      return out;
    }
    if (Array.isArray(value)) {
      const items = value
        .slice(0, MAX_ARRAY_ITEMS)
        .map((v, i) => sanitize(v, depth + 1, seen, dropped, `${path}[${i}]`));
      if (value.length > MAX_ARRAY_ITEMS) items.push(`… ${value.length - MAX_ARRAY_ITEMS} more`);
      return items;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const where = path ? `${path}.${k}` : k;
      if (SENSITIVE_META_KEY.test(k)) {
        dropped.push(where);
        continue;
      }
      const clean = sanitize(v, depth + 1, seen, dropped, where);
      if (clean !== undefined) out[k] = clean;
    }
    return out;
  } finally {
    seen.delete(obj);
  }
}

/**
 * The redaction guard: `meta` without sensitive keys (at any depth), with bytes, errors, bigints and dates made
 * JSON-safe. Names of what was dropped are listed under `redacted` (names are not secrets; values are).
 * Symbol keys (the SDK's internal timestamp) are left out.
 */
export function redactMeta(meta: LogMetadata | undefined): Record<string, unknown> | undefined {
  if (!meta || typeof meta !== 'object') return undefined;
  const dropped: string[] = [];
  const clean = sanitize(meta, 0, new WeakSet(), dropped, '') as Record<string, unknown>;
  if (dropped.length) clean.redacted = dropped;
  return Object.keys(clean).length ? clean : undefined;
}

/** One JSON log line (no newline): time, level, severity, message, then the redacted meta. */
export function jsonLogLine(entry: { level: LogLevel; message: string; timeMs: number; meta?: LogMetadata }): string {
  const meta = redactMeta(entry.meta) ?? {};
  // The fixed fields win over meta keys of the same name, so a meta `message` cannot forge the line.
  const { time: _t, level: _l, severity: _s, message: _m, ...rest } = meta;
  return JSON.stringify({
    time: new Date(entry.timeMs).toISOString(),
    level: entry.level,
    severity: SEVERITY[entry.level],
    message: entry.message,
    ...rest,
  });
}

/** Where lines go; tests substitute their own. */
export interface LogSinks {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
}

const processSinks: LogSinks = {
  // process.stdout/stderr writes are synchronous for files and pipes on Linux, so nothing is lost on exit.
  stdout: (line) => process.stdout.write(`${line}\n`),
  stderr: (line) => process.stderr.write(`${line}\n`),
};

/** The logger given to Runtime.install: SDK, workflow, activity and forwarded core messages. */
export function createRuntimeLogger(settings: LogSettings, sinks: LogSinks = processSinks): Logger {
  return new DefaultLogger(settings.level, (entry: LogEntry) => {
    const timeMs = Number(entry.timestampNanos / 1_000_000n);
    if (settings.format === 'json') {
      sinks.stdout(jsonLogLine({ level: entry.level, message: entry.message, timeMs, meta: entry.meta }));
      return;
    }
    const meta = redactMeta(entry.meta);
    const suffix = meta ? ` ${inspect(meta, { breakLength: Infinity, depth: MAX_DEPTH, colors: false })}` : '';
    sinks.stderr(`${new Date(timeMs).toISOString()} [${entry.level}] ${entry.message}${suffix}`);
  });
}

/**
 * The logger of the worker's own lines (start-up, registration, shutdown). Text keeps the historical `worker: ...`
 * lines (what `npm run dev` waits for on stdout); JSON adds `logger: "managed-smtp-worker"` to tell them apart.
 */
export function createWorkerLogger(settings: LogSettings, sinks: LogSinks = processSinks): Logger {
  return new DefaultLogger(settings.level, (entry: LogEntry) => {
    const timeMs = Number(entry.timestampNanos / 1_000_000n);
    if (settings.format === 'json') {
      const meta = { logger: 'managed-smtp-worker', ...(entry.meta ?? {}) };
      sinks.stdout(jsonLogLine({ level: entry.level, message: entry.message, timeMs, meta }));
      return;
    }
    const meta = redactMeta(entry.meta);
    const prefix = entry.level === 'WARN' ? 'worker: warning: ' : 'worker: ';
    const suffix = meta ? ` ${JSON.stringify(meta)}` : '';
    const line = `${prefix}${entry.message}${suffix}`;
    if (entry.level === 'WARN' || entry.level === 'ERROR') sinks.stderr(line);
    else sinks.stdout(line);
  });
}
