/**
 * The SparkPost event receiver (`npm run webhooks`): a real HTTP service that takes SparkPost's webhook batches,
 * deduplicates them (on the `X-MessageSystems-Batch-ID` header and on each `event_id`, as SparkPost retries a batch
 * for 8 hours when it misses the 200), keeps per-instance counters, and within a minute tells an instance's entity
 * about complaint and hard-bounce bursts as a `protection` observation carrying counts only (never an address).
 *
 * - `POST /` (any path but the two below): basic auth, a JSON array body of at most `maxBodyBytes`; the creation
 *   test batch `[{"msys":{}}]` is answered 200 like any other. 401 bad credentials, 413 too large, 400 not an array.
 * - `GET /healthz`: 200 while serving. `GET /metrics`: Prometheus text (counts per instance and event type).
 *
 * Subaccount ids are mapped to instances (the subaccount's name) by an injected resolver; the default reads
 * SparkPost's subaccount list, refreshed periodically and on a miss. Deduplication is in memory and bounded: after a
 * restart a redelivered batch may be counted again, which only inflates one window of counts.
 * Nothing here logs or stores an address: events are reduced to (instance, type, bounce class) on arrival.
 */
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AlertTarget, ProtectionObservation } from '../lib/protection';
import { listen } from '../lib/listen';
import type { ProtectionRequest } from '../contract/types';

/** Maps a SparkPost subaccount id to the instance it belongs to (null: not one of ours). */
export interface SubaccountResolver {
  instanceOf(subaccountId: number): Promise<string | null>;
}

/** Sends a protection request to an instance's entity; throws when it could not. */
export type ProtectionSignaller = (instance: string, request: ProtectionRequest) => Promise<void>;

/** Options of the service. */
export interface WebhookServiceOptions {
  host?: string;
  port?: number;
  /** Basic auth SparkPost is configured with (`smtpctl webhooks install`). */
  username: string;
  password: string;
  resolver: SubaccountResolver;
  signal: ProtectionSignaller;
  /** Largest batch body (default 10 MiB; SparkPost batches are far smaller). */
  maxBodyBytes?: number;
  /** How often pending bursts are signalled (default 10 s: well within a minute). */
  flushMs?: number;
  /** The counts window an observation covers (default 1 h). */
  windowMs?: number;
  /** Event ids remembered for deduplication (default 200 000). */
  maxEventIds?: number;
  /** Batch ids remembered (default 20 000). */
  maxBatchIds?: number;
  /** Where the entity posts protection alerts (forwarded with each observation). */
  alertWebhook?: AlertTarget;
  /** Clock (tests). */
  now?: () => number;
  /** One line per notable thing (never an address). */
  log?: (line: string) => void;
}

/** Hard bounce classes (sparkpost.md): invalid recipient, no RCPT, unsubscribe. */
const HARD_CLASSES = new Set(['10', '30', '90']);
const MINUTE = 60_000;

/** An insertion-ordered set that forgets its oldest entries beyond `max`. */
class BoundedSet {
  private readonly items = new Set<string>();
  constructor(private readonly max: number) {}
  has(v: string): boolean {
    return this.items.has(v);
  }
  add(v: string): void {
    this.items.add(v);
    if (this.items.size > this.max) this.items.delete(this.items.values().next().value as string);
  }
  get size(): number {
    return this.items.size;
  }
}

interface Bucket {
  minute: number;
  sent: number;
  hardBounces: number;
  complaints: number;
}

/** Counts of one metric family, by label string. */
class Counter {
  readonly values = new Map<string, number>();
  inc(labels: string, by = 1): void {
    this.values.set(labels, (this.values.get(labels) ?? 0) + by);
  }
  get(labels: string): number {
    return this.values.get(labels) ?? 0;
  }
}

/**
 * SparkPost's event types (message, engagement, generation, unsubscribe, relay, SMS and ingest events): the only
 * values the `type` label takes. The type comes from whoever posts a batch, so any other becomes `other`, and the
 * number of series stays fixed.
 */
const KNOWN_EVENT_TYPES = new Set([
  'injection',
  'delivery',
  'bounce',
  'delay',
  'policy_rejection',
  'out_of_band',
  'spam_complaint',
  'open',
  'initial_open',
  'click',
  'amp_open',
  'amp_initial_open',
  'amp_click',
  'generation_failure',
  'generation_rejection',
  'list_unsubscribe',
  'link_unsubscribe',
  'relay_injection',
  'relay_rejection',
  'relay_delivery',
  'relay_tempfail',
  'relay_permfail',
  'sms_status',
  'ingest_success',
  'ingest_error',
]);

/** The `type` label of an event type: itself when SparkPost defines it, else `other`. */
export function eventTypeLabel(type: string): string {
  return KNOWN_EVENT_TYPES.has(type) ? type : 'other';
}

function label(v: string): string {
  return v.replace(/[\\"\n]/g, '_');
}

/** The running receiver. */
export class WebhookService {
  /** `http://host:port`. */
  readonly origin: string;
  readonly batches = new Counter();
  readonly events = new Counter();
  readonly signals = new Counter();
  private readonly seenBatches: BoundedSet;
  private readonly seenEvents: BoundedSet;
  private readonly windows = new Map<string, Bucket[]>();
  private readonly dirty = new Set<string>();
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> | null = null;
  private duplicateEvents = 0;
  private unknownEvents = 0;
  private authFailures = 0;

  private constructor(
    private readonly server: http.Server,
    private readonly opts: WebhookServiceOptions,
  ) {
    const addr = server.address() as AddressInfo;
    this.origin = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
    this.seenBatches = new BoundedSet(opts.maxBatchIds ?? 20_000);
    this.seenEvents = new BoundedSet(opts.maxEventIds ?? 200_000);
    this.timer = setInterval(() => void this.flush(), opts.flushMs ?? 10_000);
    this.timer.unref();
  }

  /** Starts listening (127.0.0.1 and a random port unless given). */
  static async start(opts: WebhookServiceOptions): Promise<WebhookService> {
    if (!opts.username || !opts.password)
      throw new Error('webhook service: basic auth username and password are required');
    const server = http.createServer();
    await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
    const svc = new WebhookService(server, opts);
    server.on('request', (req, res) => {
      svc.handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    });
    return svc;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private authorized(header: string | undefined): boolean {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)$/.exec(header ?? '');
    if (!m) return false;
    const given = Buffer.from(m[1], 'base64');
    const want = Buffer.from(`${this.opts.username}:${this.opts.password}`);
    return given.length === want.length && timingSafeEqual(given, want);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
      return;
    }
    if (req.method === 'GET' && path === '/metrics') {
      res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' }).end(this.metricsText());
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST' }).end();
      return;
    }
    if (!this.authorized(req.headers.authorization)) {
      this.authFailures++;
      req.resume();
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="managed-smtp webhooks"' }).end();
      return;
    }
    const max = this.opts.maxBodyBytes ?? 10 * 1024 * 1024;
    if (Number(req.headers['content-length'] ?? 0) > max) {
      this.batches.inc('result="too_large"');
      res.writeHead(413, { Connection: 'close' }).end();
      req.destroy();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > max) {
        this.batches.inc('result="too_large"');
        res.writeHead(413, { Connection: 'close' }).end();
        req.destroy();
        return;
      }
      chunks.push(c as Buffer);
    }
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      body = undefined;
    }
    if (!Array.isArray(body)) {
      this.batches.inc('result="rejected"');
      res.writeHead(400, { 'Content-Type': 'text/plain' }).end('expected a JSON array of events');
      return;
    }
    const batchId = String(req.headers['x-messagesystems-batch-id'] ?? '');
    if (batchId && this.seenBatches.has(batchId)) {
      this.batches.inc('result="duplicate"');
      res.writeHead(200).end();
      return;
    }
    await this.ingest(body);
    // Remembered only once counted: a batch that failed halfway is counted on its retry (event ids dedupe the rest).
    if (batchId) this.seenBatches.add(batchId);
    this.batches.inc(body.length === 1 && isEmptyTest(body[0]) ? 'result="test"' : 'result="accepted"');
    res.writeHead(200).end();
  }

  /** Counts a batch's events. */
  private async ingest(batch: unknown[]): Promise<void> {
    for (const item of batch) {
      const e = eventOf(item);
      if (!e) continue;
      if (e.eventId) {
        if (this.seenEvents.has(e.eventId)) {
          this.duplicateEvents++;
          continue;
        }
      }
      const instance = e.subaccountId === null ? null : await this.opts.resolver.instanceOf(e.subaccountId);
      if (e.eventId) this.seenEvents.add(e.eventId);
      if (!instance) {
        this.unknownEvents++;
        continue;
      }
      this.events.inc(`instance="${label(instance)}",type="${eventTypeLabel(e.type)}"`);
      const hard = (e.type === 'bounce' || e.type === 'out_of_band') && HARD_CLASSES.has(e.bounceClass ?? '');
      const complaint = e.type === 'spam_complaint';
      const sent = e.type === 'delivery' || e.type === 'bounce';
      if (!hard && !complaint && !sent) continue;
      const bucket = this.bucket(instance, Date.parse(e.timestamp ?? '') || this.now());
      if (sent) bucket.sent++;
      if (hard) bucket.hardBounces++;
      if (complaint) bucket.complaints++;
      if (hard || complaint) this.dirty.add(instance);
    }
  }

  private bucket(instance: string, at: number): Bucket {
    const minute = Math.floor(Math.min(at, this.now()) / MINUTE);
    const list = this.windows.get(instance) ?? [];
    this.windows.set(instance, list);
    let b = list.find((x) => x.minute === minute);
    if (!b) {
      b = { minute, sent: 0, hardBounces: 0, complaints: 0 };
      list.push(b);
    }
    return b;
  }

  /** The counts of the last window for an instance. */
  windowOf(instance: string): ProtectionObservation {
    const now = this.now();
    const windowMs = this.opts.windowMs ?? 3600_000;
    const oldest = Math.floor((now - windowMs) / MINUTE);
    const list = (this.windows.get(instance) ?? []).filter((b) => b.minute >= oldest);
    this.windows.set(instance, list);
    const sum = (k: 'sent' | 'hardBounces' | 'complaints') => list.reduce((n, b) => n + b[k], 0);
    return {
      source: 'events',
      at: new Date(now).toISOString(),
      from: new Date(now - windowMs).toISOString(),
      sent: sum('sent'),
      hardBounces: sum('hardBounces'),
      complaints: sum('complaints'),
    };
  }

  /** Signals every instance that got complaints or hard bounces since the last flush. Runs one at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => (this.flushing = null));
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const instances = [...this.dirty];
    this.dirty.clear();
    for (const instance of instances) {
      const observation = this.windowOf(instance);
      const request: ProtectionRequest = {
        requestId: `events-${instance}-${observation.at}`,
        input: { kind: 'observe', observation },
        ...(this.opts.alertWebhook ? { alertWebhook: this.opts.alertWebhook } : {}),
      };
      try {
        await this.opts.signal(instance, request);
        this.signals.inc('result="sent"');
      } catch (err) {
        const gone = err instanceof Error && /not ?found/i.test(`${err.name} ${err.message}`);
        this.signals.inc(gone ? 'result="no_workflow"' : 'result="failed"');
        if (!gone) this.dirty.add(instance); // tried again at the next flush
        this.opts.log?.(`webhooks: could not signal ${instance}: ${err instanceof Error ? err.name : 'error'}`);
      }
    }
  }

  /** Prometheus text exposition. */
  metricsText(): string {
    const lines: string[] = [];
    const family = (name: string, help: string, type: string, c: Counter | number) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      if (typeof c === 'number') lines.push(`${name} ${c}`);
      else for (const [l, v] of c.values) lines.push(`${name}{${l}} ${v}`);
    };
    family('managed_smtp_webhook_batches_total', 'Batches received, by result.', 'counter', this.batches);
    family('managed_smtp_webhook_events_total', 'Events counted once, by instance and type.', 'counter', this.events);
    family(
      'managed_smtp_webhook_duplicate_events_total',
      'Events dropped as already seen.',
      'counter',
      this.duplicateEvents,
    );
    family('managed_smtp_webhook_unknown_events_total', 'Events of no known instance.', 'counter', this.unknownEvents);
    family('managed_smtp_webhook_auth_failures_total', 'Requests with bad credentials.', 'counter', this.authFailures);
    family('managed_smtp_webhook_signals_total', 'Protection signals to entities, by result.', 'counter', this.signals);
    return lines.join('\n') + '\n';
  }

  /** Stops listening (a last flush first). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => undefined);
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function isEmptyTest(item: unknown): boolean {
  const msys = (item as { msys?: unknown } | null)?.msys;
  return !!msys && typeof msys === 'object' && Object.keys(msys).length === 0;
}

/** The fields of one batch item that matter (no address is kept). */
function eventOf(item: unknown): {
  type: string;
  eventId: string | null;
  subaccountId: number | null;
  bounceClass: string | null;
  timestamp: string | null;
} | null {
  const msys = (item as { msys?: unknown } | null)?.msys;
  if (!msys || typeof msys !== 'object') return null;
  const inner = Object.values(msys as Record<string, unknown>)[0];
  if (!inner || typeof inner !== 'object') return null;
  const e = inner as Record<string, unknown>;
  if (typeof e.type !== 'string') return null;
  const sub = typeof e.subaccount_id === 'number' ? e.subaccount_id : Number(e.subaccount_id ?? NaN);
  const ts = e.timestamp;
  return {
    type: e.type,
    eventId: typeof e.event_id === 'string' && e.event_id !== '' ? e.event_id : null,
    subaccountId: Number.isSafeInteger(sub) && sub >= 0 ? sub : null,
    bounceClass: e.bounce_class === undefined || e.bounce_class === null ? null : String(e.bounce_class),
    // SparkPost sends Unix seconds as a string in webhook batches; ISO in the events API.
    timestamp:
      typeof ts === 'string' && /^\d+(\.\d+)?$/.test(ts)
        ? new Date(Number(ts) * 1000).toISOString()
        : typeof ts === 'string'
          ? ts
          : null,
  };
}

/** What SubaccountListResolver needs of the SparkPost client. */
export interface SubaccountLister {
  listSubaccounts(): Promise<Array<{ id: number; name: string }>>;
}

/**
 * Resolves subaccount ids from SparkPost's subaccount list (the instance is the subaccount's name), refreshed every
 * `refreshMs` and on a miss at most every `missRefreshMs`, so a new instance is known within seconds and a flood of
 * unknown ids costs one listing per interval.
 */
export class SubaccountListResolver implements SubaccountResolver {
  private names = new Map<number, string>();
  private loadedAt = 0;
  private loading: Promise<void> | null = null;

  constructor(
    private readonly sparkpost: SubaccountLister,
    private readonly refreshMs = 5 * MINUTE,
    private readonly missRefreshMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  async instanceOf(subaccountId: number): Promise<string | null> {
    const age = this.now() - this.loadedAt;
    if (age >= this.refreshMs || (!this.names.has(subaccountId) && age >= this.missRefreshMs)) await this.refresh();
    return this.names.get(subaccountId) ?? null;
  }

  private refresh(): Promise<void> {
    this.loading ??= this.sparkpost
      .listSubaccounts()
      .then((subs) => {
        this.names = new Map(subs.map((s) => [s.id, s.name]));
        this.loadedAt = this.now();
      })
      .catch(() => {
        // Keep the last map; try again after the miss interval.
        this.loadedAt = Math.max(this.loadedAt, this.now() - this.refreshMs + this.missRefreshMs);
      })
      .finally(() => (this.loading = null));
    return this.loading;
  }
}
