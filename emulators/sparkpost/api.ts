/**
 * Local emulator of the SparkPost REST API (shared reference: sparkpost.md), quirks included: raw-key auth,
 * X-MSYS-SUBACCOUNT scoping, validation errors with `param`/`value` and no code, names that are not unique,
 * creation that is not idempotent, no DELETE on subaccounts, keys shown in full only once, `links.next` paths from
 * the origin, string-valued message events. Plus admin routes under `/__emulator` for tests and the dev stack.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';

import { Faults, type FaultConfig } from '../../lib/faults';
import { BlockList, isIPv4, type AddressInfo } from 'node:net';
import { listen } from '../../lib/listen';
import { WebhookDispatcher, type WebhookDispatcherOptions } from './webhooks';

/** A subaccount's own status. */
export type SubaccountStatus = 'active' | 'suspended' | 'terminated';

/** Options of the SparkPost emulator. */
export interface SparkPostEmulatorOptions {
  /** The primary account's key: every grant. */
  operatorKey: string;
  host?: string;
  port?: number;
  faults?: Partial<FaultConfig>;
  /** Domains owned by the primary, shared with subaccounts and verified. Default `['cloud.sourcegraph.com']`. */
  sharedSendingDomains?: string[];
  /** Webhook batching and retry timing (emulators/sparkpost/webhooks.ts; issue 13). */
  webhooks?: WebhookDispatcherOptions;
}

/** A subaccount as stored. */
export interface SubaccountRecord {
  id: number;
  name: string;
  status: SubaccountStatus;
  compliance_status: string;
  ip_pool?: string;
  options: Record<string, unknown>;
  created: string;
}

/** An API key as stored (full key included: this is the vendor's side). */
export interface ApiKeyRecord {
  id: string;
  key: string;
  short_key: string;
  label: string;
  grants: string[];
  /** null for a key of the primary account. */
  subaccount_id: number | null;
  valid_ips: string[];
  created: string;
}

/** A data-privacy (RTBF or opt-out) request as filed. */
export interface DataPrivacyRequestRecord {
  /** The subaccount it is scoped to; null for the primary account. */
  subaccount_id: number | null;
  include_subaccounts: boolean;
  recipients: string[];
  at: string;
  /** When SparkPost carried it out (RTBF only; unset while pending). See processPrivacyRequests. */
  processed_at?: string;
}

/** A sending domain as stored. */
export interface SendingDomainRecord {
  domain: string;
  /** null for the primary account. */
  subaccount_id: number | null;
  shared_with_subaccounts: boolean;
  ownership_verified: boolean;
  dkim_status: string;
  compliance_status: string;
  dkim?: { selector: string; public: string; headers: string; signing_domain: string };
  /** Set by tests (markDomainVerifiable): the next verify call succeeds, as if the DNS records were published. */
  verifiable: boolean;
  created: string;
}

/** An IP pool. */
export interface IpPoolRecord {
  id: string;
  name: string;
}

/** A message the SMTP relay accepted. */
export interface AcceptedMessage {
  at: string;
  subaccountId: number | null;
  keyId: string;
  from: string;
  to: string[];
  subject: string;
}

/** A message event (`subaccount_id` 0 is the primary account). */
export interface MessageEventRecord {
  event_id: string;
  type: string;
  rcpt_to: string;
  subaccount_id: number;
  timestamp: string;
  bounce_class?: string;
  subject?: string;
  friendly_from?: string;
  message_id?: string;
  reason?: string;
  raw_reason?: string;
  error_code?: string;
}

// ---------------------------------------------------------------- suppression list and data privacy types (issue 11)

/** A suppression-list entry as stored (one per recipient, type and account). */
export interface SuppressionRecord {
  recipient: string;
  type: 'transactional' | 'non_transactional';
  source: string;
  description: string;
  /** 0 = primary account. */
  subaccount_id: number;
  created: string;
  updated: string;
  /** False for entries SparkPost keeps for compliance: DELETE answers 403 and RTBF leaves them. */
  removable: boolean;
}

/** A seeded suppression entry (admin route and tests). */
export interface SuppressionSeed {
  recipient: string;
  type?: 'transactional' | 'non_transactional';
  source?: string;
  description?: string;
  /** Default: false for source `Compliance`, true otherwise. */
  removable?: boolean;
}

/** How RTBF requests are carried out: after a delay, and with recipients that survive some requests. */
export interface PrivacyProcessing {
  /** Milliseconds between filing and erasure (default 0: erased before the next API call is answered). */
  delayMs: number;
}

// ---------------------------------------------------------------- end of suppression list and data privacy types

/** The emulator's whole state, readable (and writable, at your own risk) by tests. */
export interface SparkPostState {
  subaccounts: SubaccountRecord[];
  apiKeys: ApiKeyRecord[];
  rtbfRequests: DataPrivacyRequestRecord[];
  optOutRequests: DataPrivacyRequestRecord[];
  sendingDomains: SendingDomainRecord[];
  ipPools: IpPoolRecord[];
  messages: AcceptedMessage[];
  events: MessageEventRecord[];
  /** Suppression lists of every account (issue 11). */
  suppressions: SuppressionRecord[];
}

/** A canned raw response for the next matching request (HTML error pages, truncated JSON, Retry-After...). */
export interface CannedResponse {
  status: number;
  body: string;
  headers?: Record<string, string>;
  /** Only requests whose `METHOD path` matches this regular expression get it (default: any). */
  match?: string;
  /** How many matching requests get it (default 1). */
  times?: number;
}

/** Grants a subaccount key may hold (sparkpost.md). */
export const SUBACCOUNT_GRANTS: readonly string[] = [
  'smtp/inject',
  'sending_domains/manage',
  'tracking_domains/view',
  'tracking_domains/manage',
  'message_events/view',
  'suppression_lists/manage',
  'transmissions/view',
  'transmissions/modify',
  'webhooks/view',
  'webhooks/modify',
];

/** Grants a primary-account key may hold. */
const PRIMARY_GRANTS: readonly string[] = [
  ...SUBACCOUNT_GRANTS,
  'subaccounts/view',
  'subaccounts/manage',
  'api_keys/manage',
  'metrics/view',
  'data_privacy/manage',
  'sending_domains/view',
  'ip_pools/view',
  'ip_pools/manage',
  'suppression_lists/view',
  'templates/view',
  'templates/modify',
  'account/view',
  'account/modify',
];

/** Domains SparkPost refuses as sending domains (error 7000), subdomains included. */
const RESTRICTED_DOMAINS = [
  'sparkpostmail.com',
  'sparkpost.com',
  'gmail.com',
  'googlemail.com',
  'yahoo.com',
  'hotmail.com',
  'outlook.com',
  'aol.com',
  'icloud.com',
];

const MAX_BODY_BYTES = 1024 * 1024;
const MAX_PRIVACY_RECIPIENTS = 1000;
const EVENTS_RETENTION_MS = 10 * 24 * 3600 * 1000;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

type Json = Record<string, unknown>;

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** The asynchronous rest of a request that was valid so far (a webhook create waits for its test batch). */
  later?: () => Promise<Reply>;
}

/** Who is calling: the primary account (operator key or a primary key) or one subaccount's key. */
interface Principal {
  subaccountId: number | null;
  grants: ReadonlySet<string> | 'all';
  keyId: string | null;
}

/** Which account a request reads or writes: everything (GET without header), or one (0 = primary). */
type Scope = { all: true } | { all: false; id: number };

interface Ctx {
  method: string;
  segs: string[];
  query: URLSearchParams;
  body: Json;
  principal: Principal;
  scope: Scope;
}

/** Thrown inside handlers to answer with an error body. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errors: Json[],
    readonly headers?: Record<string, string>,
  ) {
    super(String(errors[0]?.message ?? status));
  }
}

function err(status: number, message: string, extra: Json = {}): HttpError {
  return new HttpError(status, [{ message, ...extra }]);
}

const unauthorized = () => err(401, 'Unauthorized.');
const forbidden = (description?: string) => err(403, 'Forbidden.', description ? { description } : {});
const notFound = () => err(404, 'Resource could not be found', { code: '1600' });
const invalid = (message: string, description?: string, code = '1400') =>
  err(400, message, { ...(description ? { description } : {}), code });
/** Subaccount validation errors carry param/value and no code. */
const paramError = (param: string, message: string, value: unknown) =>
  err(400, message, { param, value: value ?? null });

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function fingerprint(secret: string): string {
  return `${secret.slice(0, 4)}…sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 12)}`;
}

function isObj(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** SparkPost times have no zone and mean UTC; anything Date.parse understands is accepted too. */
function parseTime(v: string | null, name: string): number | undefined {
  if (v === null || v === '') return undefined;
  const s = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(v) ? `${v}Z` : v;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw invalid('invalid data format/type', `Error while validating parameter ${name}`, '1300');
  return t;
}

function encodeCursor(state: Json): string {
  return Buffer.from(JSON.stringify(state)).toString('base64url');
}

function decodeCursor(cursor: string): Json {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (isObj(v) && typeof v.o === 'number') return v;
  } catch {
    // fall through
  }
  throw invalid('invalid cursor', undefined, '1300');
}

function perPage(query: URLSearchParams, def: number, max: number): number {
  const raw = query.get('per_page');
  if (raw === null || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw invalid('invalid data format/type', `per_page must be between 1 and ${max}`, '1300');
  }
  return n;
}

/** SparkPost's IP pool ids: the name lowercased with non-alphanumerics as underscores. */
function poolId(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 20);
}

/** Bounce classes counted as hard (10 invalid recipient, 30 no recipient, 90 unsubscribe). */
const HARD_BOUNCE = new Set(['10', '30', '90']);
const BLOCK_BOUNCE = new Set(['50', '51', '52', '53', '54']);

/** The metrics one event adds to. */
function metricsOf(e: MessageEventRecord): string[] {
  switch (e.type) {
    case 'injection':
      return ['count_injected', 'count_targeted'];
    case 'delivery':
      return ['count_sent', 'count_accepted', 'count_delivered'];
    case 'bounce':
    case 'out_of_band': {
      const cls = e.bounce_class ?? '10';
      const m = ['count_bounce', e.type === 'bounce' ? 'count_inband_bounce' : 'count_outofband_bounce'];
      if (e.type === 'bounce') m.push('count_sent');
      if (HARD_BOUNCE.has(cls)) m.push('count_hard_bounce');
      else if (BLOCK_BOUNCE.has(cls)) m.push('count_block_bounce');
      else if (cls === '1') m.push('count_undetermined_bounce');
      else m.push('count_soft_bounce');
      return m;
    }
    case 'delay':
      return ['count_delayed'];
    case 'spam_complaint':
      return ['count_spam_complaint'];
    case 'policy_rejection':
      return ['count_rejected', 'count_policy_rejection', 'count_targeted'];
    case 'generation_rejection':
      return ['count_rejected', 'count_generation_rejection', 'count_targeted'];
    case 'generation_failure':
      return ['count_rejected', 'count_generation_failed', 'count_targeted'];
    case 'open':
      return ['count_rendered'];
    case 'click':
      return ['count_clicked'];
    default:
      return [];
  }
}

/** The SparkPost REST emulator. */
export class SparkPostEmulator {
  /** Base URL of the REST API, e.g. `http://127.0.0.1:PORT/api/v1`. */
  readonly url: string;
  /** `http://127.0.0.1:PORT`. */
  readonly origin: string;
  /** Fault knobs (admin routes are never faulted). */
  readonly faults: Faults;
  /** Webhooks and their batch deliveries (issue 13). */
  readonly webhooks: WebhookDispatcher;
  /** In-memory state. */
  readonly state: SparkPostState = {
    subaccounts: [],
    apiKeys: [],
    rtbfRequests: [],
    optOutRequests: [],
    sendingDomains: [],
    ipPools: [{ id: 'default', name: 'Default' }],
    messages: [],
    events: [],
    suppressions: [],
  };

  /**
   * Every API key ever minted, in order, revoked ones included (`state.apiKeys` forgets a key once it is deleted):
   * leak scans check that none of them ever left the activities. `mintedAt`/`revokedAt` (epoch ms; null while live)
   * let the chaos suite measure how long a subaccount held two live keys.
   */
  readonly mintedKeys: Array<{
    id: string;
    key: string;
    subaccountId: number | null;
    label: string;
    mintedAt: number;
    revokedAt: number | null;
  }> = [];

  private readonly operatorKey: string;
  private nextSubaccountId = 101;
  private canned: Array<CannedResponse & { re: RegExp | null; left: number }> = [];
  /** Domains tests declared verifiable, possibly before they are created. */
  private readonly verifiableDomains = new Set<string>();

  private constructor(
    private readonly server: http.Server,
    opts: SparkPostEmulatorOptions,
  ) {
    const addr = server.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    this.origin = `http://${host}:${addr.port}`;
    this.url = `${this.origin}/api/v1`;
    this.operatorKey = opts.operatorKey;
    this.faults = new Faults(opts.faults);
    this.webhooks = new WebhookDispatcher(opts.webhooks);
    for (const d of opts.sharedSendingDomains ?? ['cloud.sourcegraph.com']) {
      this.state.sendingDomains.push({
        domain: d.toLowerCase(),
        subaccount_id: null,
        shared_with_subaccounts: true,
        ownership_verified: true,
        dkim_status: 'valid',
        compliance_status: 'valid',
        dkim: this.newDkim(d.toLowerCase()),
        verifiable: true,
        created: new Date().toISOString(),
      });
    }
  }

  /** Starts the emulator on 127.0.0.1 (random port unless given). */
  static async start(opts: SparkPostEmulatorOptions): Promise<SparkPostEmulator> {
    if (!opts.operatorKey) throw new Error('SparkPostEmulator: operatorKey is required');
    const server = http.createServer();
    await listen(server, opts.port, opts.host);
    const emu = new SparkPostEmulator(server, opts);
    server.on('request', (req, res) => {
      emu.handle(req, res).catch(() => {
        if (!res.headersSent) {
          res.writeHead(500, { 'Content-Type': 'application/json' });
          res.end(JSON.stringify({ errors: [{ message: 'Internal error' }] }));
        } else res.destroy();
      });
    });
    return emu;
  }

  /** Stops listening and drops open connections. */
  async close(): Promise<void> {
    this.webhooks.close();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  // ---------------------------------------------------------------- helpers for the relay and tests

  /**
   * Used by the relay: a key that exists, has grant smtp/inject, whose subaccount (or primary when null) is active
   * and compliance_status active. Returns null otherwise.
   */
  authenticateSmtpKey(key: string, remoteAddress?: string): { subaccountId: number | null; keyId: string } | null {
    if (!key) return null;
    if (key === this.operatorKey) return { subaccountId: null, keyId: 'operator' };
    const k = this.state.apiKeys.find((x) => x.key === key);
    if (!k || !k.grants.includes('smtp/inject')) return null;
    // A key limited to IP addresses fails AUTH from any other address (SMTP 535, like a wrong key).
    if (k.valid_ips.length > 0 && (remoteAddress === undefined || !ipInList(remoteAddress, k.valid_ips))) return null;
    if (k.subaccount_id !== null) {
      const s = this.findSubaccount(k.subaccount_id);
      if (!s || s.status !== 'active' || s.compliance_status !== 'active') return null;
    }
    return { subaccountId: k.subaccount_id, keyId: k.id };
  }

  /** Whether `domain` may be used as From by that subaccount (own verified domain, or a shared one). */
  canSendFrom(subaccountId: number | null, domain: string): boolean {
    const d = domain.toLowerCase();
    return this.state.sendingDomains.some(
      (x) =>
        x.domain === d &&
        x.ownership_verified &&
        (x.subaccount_id === subaccountId || (x.subaccount_id === null && x.shared_with_subaccounts)),
    );
  }

  /** Records an accepted message (adds count_accepted/delivered metrics and an event for the subaccount). */
  recordAccepted(msg: {
    subaccountId: number | null;
    keyId: string;
    from: string;
    to: string[];
    subject: string;
  }): void {
    const at = new Date().toISOString();
    this.state.messages.push({ at, ...msg, to: [...msg.to] });
    const messageId = hex(8);
    for (const rcpt of msg.to) {
      for (const type of ['injection', 'delivery']) {
        this.state.events.push({
          event_id: String(BigInt(`0x${hex(8)}`)),
          type,
          rcpt_to: rcpt,
          subaccount_id: msg.subaccountId ?? 0,
          timestamp: at,
          subject: msg.subject,
          friendly_from: msg.from,
          message_id: messageId,
        });
      }
    }
    this.publishEvents(this.state.events.slice(-2 * msg.to.length));
  }

  /** Drift simulation: changes a subaccount's status (and SparkPost's compliance verdict) behind our back. */
  setSubaccountStatus(id: number, status: SubaccountStatus, complianceStatus?: string): void {
    const s = this.findSubaccount(id);
    if (!s) throw new Error(`SparkPostEmulator: no subaccount ${id}`);
    s.status = status;
    if (complianceStatus !== undefined) s.compliance_status = complianceStatus;
  }

  /** Seeds message events (and so metrics) for a subaccount (0 = primary). */
  addEvents(
    subaccountId: number,
    events: Array<{
      type: string;
      rcpt_to: string;
      timestamp?: string;
      bounce_class?: string;
      reason?: string;
      raw_reason?: string;
      error_code?: string;
      message_id?: string;
      subject?: string;
    }>,
  ): void {
    for (const e of events) {
      const rec: MessageEventRecord = {
        event_id: String(BigInt(`0x${hex(8)}`)),
        type: e.type,
        rcpt_to: e.rcpt_to,
        subaccount_id: subaccountId,
        timestamp: e.timestamp ?? new Date().toISOString(),
      };
      for (const k of ['bounce_class', 'reason', 'raw_reason', 'error_code', 'message_id', 'subject'] as const) {
        if (e[k] !== undefined) rec[k] = e[k];
      }
      this.state.events.push(rec);
      this.autoSuppress(rec);
      this.publishEvents([rec]);
    }
  }

  // ---------------------------------------------------------------- webhooks (issue 13)

  /** Hands new events to the webhooks, in SparkPost's JSON shape. */
  private publishEvents(added: MessageEventRecord[]): void {
    if (added.length && this.webhooks.webhooks.length) {
      this.webhooks.publish(added.map((e) => ({ raw: e, json: this.eventJson(e) })));
    }
  }

  /** `/webhooks` routes; a create answers only once the target took the test batch. */
  private webhooksRoute(ctx: Ctx, id: string | undefined, sub: string | undefined): Reply {
    if (sub !== undefined) throw notFound();
    if (ctx.method === 'GET') this.need(ctx, 'webhooks/view', 'webhooks/modify');
    else this.need(ctx, 'webhooks/modify');
    const owner = ctx.scope.all ? null : ctx.scope.id === 0 ? null : ctx.scope.id;
    const visible = this.webhooks.visible(owner, ctx.scope.all || owner === null);
    if (id === undefined) {
      if (ctx.method === 'GET') return { status: 200, body: { results: visible.map((w) => this.webhooks.json(w)) } };
      if (ctx.method !== 'POST') throw err(405, 'Method Not Allowed');
      const prepared = this.webhooks.prepareCreate(owner, ctx.body);
      if (typeof prepared !== 'function') return prepared;
      return { status: 202, later: prepared };
    }
    const w = visible.find((x) => x.id === id);
    if (!w) throw notFound();
    if (ctx.method === 'GET') return { status: 200, body: { results: this.webhooks.json(w) } };
    if (ctx.method === 'DELETE') {
      this.webhooks.remove(w.id);
      return { status: 204 };
    }
    throw err(405, 'Method Not Allowed');
  }
  // ---------------------------------------------------------------- end of webhooks

  // ---------------------------------------------------------------- suppression list and data privacy helpers (issue 11)

  /** How RTBF requests are carried out (tests make SparkPost slow with a delay). */
  readonly privacyProcessing: PrivacyProcessing = { delayMs: 0 };
  /** Recipient (lowercase) of a subaccount → how many more RTBF requests leave it in place (tests: a stuck erasure). */
  private readonly rtbfResistance = new Map<string, number>();

  /** Seeds suppression-list entries for a subaccount (0 = primary); an existing recipient+type is updated. */
  addSuppressions(subaccountId: number, entries: SuppressionSeed[]): void {
    const now = new Date().toISOString();
    for (const e of entries) {
      const type = e.type ?? 'transactional';
      const source = e.source ?? 'Manually Added';
      const existing = this.state.suppressions.find(
        (x) => x.subaccount_id === subaccountId && x.type === type && sameAddress(x.recipient, e.recipient),
      );
      const removable = e.removable ?? source !== 'Compliance';
      if (existing) {
        Object.assign(existing, {
          source,
          description: e.description ?? existing.description,
          updated: now,
          removable,
        });
        continue;
      }
      this.state.suppressions.push({
        recipient: e.recipient,
        type,
        source,
        description: e.description ?? '',
        subaccount_id: subaccountId,
        created: now,
        updated: now,
        removable,
      });
    }
  }

  /** The next `times` RTBF requests for this recipient of this subaccount leave its data in place. */
  resistRtbf(subaccountId: number, recipient: string, times = 1): void {
    this.rtbfResistance.set(`${subaccountId}/${recipient.toLowerCase()}`, times);
  }

  /**
   * Carries out RTBF requests whose delay has passed: the recipients' message events and removable suppression
   * entries go, in the request's subaccount (or everywhere with include_subaccounts). Runs before every API call.
   */
  processPrivacyRequests(now = Date.now()): void {
    for (const r of this.state.rtbfRequests) {
      if (r.processed_at !== undefined || Date.parse(r.at) + this.privacyProcessing.delayMs > now) continue;
      r.processed_at = new Date(now).toISOString();
      const sub = r.subaccount_id ?? 0;
      const inScope = (id: number) => r.include_subaccounts || id === sub;
      const erase = new Set<string>();
      for (const rcpt of r.recipients) {
        const key = `${sub}/${rcpt.toLowerCase()}`;
        const left = this.rtbfResistance.get(key) ?? 0;
        if (left > 0) {
          this.rtbfResistance.set(key, left - 1);
          continue;
        }
        erase.add(rcpt.toLowerCase());
      }
      keepOnly(this.state.events, (e) => !(inScope(e.subaccount_id) && erase.has(e.rcpt_to.toLowerCase())));
      keepOnly(
        this.state.suppressions,
        (x) => !(x.removable && inScope(x.subaccount_id) && erase.has(x.recipient.toLowerCase())),
      );
    }
  }

  /** What SparkPost adds to the list by itself: hard bounces (10, 30, 90), spam complaints, unsubscribes. */
  private autoSuppress(e: MessageEventRecord): void {
    let seed: SuppressionSeed | null = null;
    if ((e.type === 'bounce' || e.type === 'out_of_band') && e.bounce_class && HARD_BOUNCE.has(e.bounce_class)) {
      seed = { recipient: e.rcpt_to, source: 'Bounce Rule', description: e.raw_reason ?? e.reason ?? '' };
    } else if (e.type === 'spam_complaint') {
      seed = { recipient: e.rcpt_to, type: 'non_transactional', source: 'Spam Complaint' };
    } else if (e.type === 'list_unsubscribe') {
      seed = { recipient: e.rcpt_to, type: 'non_transactional', source: 'List Unsubscribe' };
    } else if (e.type === 'link_unsubscribe') {
      seed = { recipient: e.rcpt_to, type: 'non_transactional', source: 'Unsubscribe Link' };
    }
    if (seed) this.addSuppressions(e.subaccount_id, [seed]);
  }

  // ---------------------------------------------------------------- end of suppression list and data privacy helpers

  /** Lets the next verify call of `domain` succeed, as if its DNS records had been published. */
  markDomainVerifiable(domain: string, verifiable = true): void {
    const d = domain.toLowerCase();
    for (const x of this.state.sendingDomains) if (x.domain === d) x.verifiable = verifiable;
    if (verifiable) this.verifiableDomains.add(d);
    else this.verifiableDomains.delete(d);
  }

  /** Answers the next matching request(s) with a raw response, before faults and auth. */
  queueResponse(r: CannedResponse): void {
    this.canned.push({ ...r, re: r.match ? new RegExp(r.match) : null, left: r.times ?? 1 });
  }

  /** JSON-safe state for tests and operators; keys are masked (prefix + sha256 fingerprint). */
  snapshot(): object {
    return JSON.parse(
      JSON.stringify({
        url: this.url,
        subaccounts: this.state.subaccounts,
        apiKeys: this.state.apiKeys.map((k) => ({ ...k, key: fingerprint(k.key) })),
        rtbfRequests: this.state.rtbfRequests,
        optOutRequests: this.state.optOutRequests,
        sendingDomains: this.state.sendingDomains,
        ipPools: this.state.ipPools,
        messages: this.state.messages,
        events: this.state.events,
        suppressions: this.state.suppressions,
        webhooks: this.webhooks.webhooks.map((w) => this.webhooks.json(w)),
        webhookDeliveries: this.webhooks.deliveries,
        faults: { config: this.faults.current(), injected: this.faults.injected },
      }),
    ) as object;
  }

  private findSubaccount(id: number): SubaccountRecord | undefined {
    return this.state.subaccounts.find((s) => s.id === id);
  }

  private newDkim(domain: string): NonNullable<SendingDomainRecord['dkim']> {
    const now = new Date();
    const selector = `scph${String(now.getUTCMonth() + 1).padStart(2, '0')}${String(now.getUTCFullYear() % 100).padStart(2, '0')}`;
    return {
      selector,
      public: `MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA${randomBytes(180).toString('base64')}`,
      headers: 'from:to:subject:date',
      signing_domain: domain,
    };
  }

  // ---------------------------------------------------------------- HTTP

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.origin);
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = (req.method ?? 'GET').toUpperCase();
    const raw = await readBody(req);
    if (raw === null) {
      return send(res, { status: 413, body: { errors: [{ message: 'Request entity too large' }] } });
    }

    if (path === '/__emulator' || path.startsWith('/__emulator/')) {
      return send(res, this.admin(method, path, raw));
    }

    const route = `${method} ${path}`;
    const canned = this.canned.find((c) => c.left > 0 && (!c.re || c.re.test(route)));
    if (canned) {
      canned.left--;
      this.canned = this.canned.filter((c) => c.left > 0);
      res.writeHead(canned.status, { 'Content-Type': 'text/html', ...canned.headers });
      res.end(canned.body);
      return;
    }

    await this.faults.delay();
    const decision = this.faults.decide(route);
    if (decision === 'error') {
      return send(res, { status: 503, body: { errors: [{ message: 'Unable to contact authorization service.' }] } });
    }
    if (decision === 'rate-limit') {
      // SparkPost documents no Retry-After header: none is sent.
      return send(res, { status: 429, body: { errors: [{ message: 'Too many requests' }] } });
    }
    let reply = this.api(req, method, path, url.searchParams, raw);
    if (reply.later) reply = await reply.later();
    if (decision === 'drop') {
      // Applied, but the answer is lost on the way: at once, or after `hangMs` of silence (the client times out).
      const hangMs = this.faults.current().hangMs ?? 0;
      if (hangMs > 0) setTimeout(() => req.socket.destroy(), hangMs).unref();
      else req.socket.destroy();
      return;
    }
    send(res, reply);
  }

  private admin(method: string, path: string, raw: string): Reply {
    let body: Json = {};
    if (raw.trim()) {
      try {
        const v: unknown = JSON.parse(raw);
        if (isObj(v)) body = v;
      } catch {
        return { status: 400, body: { error: 'invalid JSON' } };
      }
    }
    try {
      if (path === '/__emulator/state' && method === 'GET') return { status: 200, body: this.snapshot() };
      if (path === '/__emulator/faults' && method === 'PUT') {
        return { status: 200, body: this.faults.set(body as Partial<FaultConfig>) };
      }
      if (path === '/__emulator/faults' && method === 'DELETE') {
        this.faults.reset();
        return { status: 200, body: this.faults.current() };
      }
      let m = /^\/__emulator\/subaccounts\/(\d+)$/.exec(path);
      if (m && method === 'PUT') {
        const status = body.status;
        const s = this.findSubaccount(Number(m[1]));
        if (!s) return { status: 404, body: { error: `no subaccount ${m[1]}` } };
        if (status !== undefined && !['active', 'suspended', 'terminated'].includes(String(status))) {
          return { status: 400, body: { error: 'status must be active, suspended or terminated' } };
        }
        this.setSubaccountStatus(
          s.id,
          (status as SubaccountStatus | undefined) ?? s.status,
          typeof body.compliance_status === 'string' ? body.compliance_status : undefined,
        );
        return { status: 200, body: s };
      }
      m = /^\/__emulator\/sending-domains\/([^/]+)\/verifiable$/.exec(path);
      if (m && method === 'PUT') {
        this.markDomainVerifiable(decodeURIComponent(m[1]), body.verifiable !== false);
        return { status: 200, body: { domain: decodeURIComponent(m[1]), verifiable: body.verifiable !== false } };
      }
      m = /^\/__emulator\/subaccounts\/(\d+)\/events$/.exec(path);
      if (m && method === 'POST') {
        const events = Array.isArray(body.events) ? body.events.filter(isObj) : [];
        this.addEvents(
          Number(m[1]),
          events.map((e) => ({
            type: String(e.type),
            rcpt_to: String(e.rcpt_to),
            ...(typeof e.timestamp === 'string' ? { timestamp: e.timestamp } : {}),
            ...(e.bounce_class !== undefined ? { bounce_class: String(e.bounce_class) } : {}),
            ...(typeof e.reason === 'string' ? { reason: e.reason } : {}),
            ...(typeof e.raw_reason === 'string' ? { raw_reason: e.raw_reason } : {}),
            ...(typeof e.error_code === 'string' ? { error_code: e.error_code } : {}),
          })),
        );
        return { status: 200, body: { added: events.length } };
      }
      if (path === '/__emulator/webhooks/redeliver' && method === 'POST') {
        // SparkPost resends a batch whose 200 it did not see: the same batch id and events again (issue 13).
        void this.webhooks.redeliverLast();
        return { status: 202, body: { redelivering: true } };
      }
      m = /^\/__emulator\/subaccounts\/(\d+)\/suppressions$/.exec(path);
      if (m && method === 'POST') {
        const entries = Array.isArray(body.entries) ? body.entries.filter(isObj) : [];
        this.addSuppressions(
          Number(m[1]),
          entries.map((e) => ({
            recipient: String(e.recipient),
            ...(e.type === 'non_transactional' ? { type: 'non_transactional' as const } : {}),
            ...(typeof e.source === 'string' ? { source: e.source } : {}),
            ...(typeof e.description === 'string' ? { description: e.description } : {}),
            ...(typeof e.removable === 'boolean' ? { removable: e.removable } : {}),
          })),
        );
        return { status: 200, body: { added: entries.length } };
      }
      if (path === '/__emulator/privacy' && method === 'PUT') {
        if (body.delayMs !== undefined) {
          const d = Number(body.delayMs);
          if (!Number.isFinite(d) || d < 0) return { status: 400, body: { error: 'delayMs must be >= 0' } };
          this.privacyProcessing.delayMs = d;
        }
        return { status: 200, body: this.privacyProcessing };
      }
    } catch (e) {
      return { status: 400, body: { error: e instanceof Error ? e.message : String(e) } };
    }
    return { status: 404, body: { error: 'unknown admin route' } };
  }

  /** The REST API proper: a synchronous function of the request, so that a dropped response is still applied. */
  private api(req: http.IncomingMessage, method: string, path: string, query: URLSearchParams, raw: string): Reply {
    this.processPrivacyRequests();
    try {
      if (!path.startsWith('/api/v1/') && path !== '/api/v1') throw notFound();
      const segs = path
        .slice('/api/v1'.length)
        .split('/')
        .filter(Boolean)
        .map((s) => decodeURIComponent(s));
      const principal = this.authenticate(req.headers.authorization);
      let body: Json = {};
      if (raw.trim() !== '') {
        const ct = String(req.headers['content-type'] ?? '');
        if (ct && !/json/i.test(ct)) throw err(415, 'Unsupported Media Type');
        let v: unknown;
        try {
          v = JSON.parse(raw);
        } catch {
          throw invalid('invalid data format/type', 'Problems parsing request as json', '1300');
        }
        if (!isObj(v)) throw invalid('invalid data format/type', 'Request body must be a JSON object', '1300');
        body = v;
      }
      const scope = this.scope(method, req.headers['x-msys-subaccount'], principal);
      return this.route({ method, segs, query, body, principal, scope });
    } catch (e) {
      if (e instanceof HttpError) return { status: e.status, body: { errors: e.errors }, headers: e.headers };
      throw e;
    }
  }

  private authenticate(header: string | undefined): Principal {
    const key = (header ?? '').trim();
    if (!key) throw unauthorized();
    if (key === this.operatorKey) return { subaccountId: null, grants: 'all', keyId: null };
    const k = this.state.apiKeys.find((x) => x.key === key);
    if (!k) throw unauthorized();
    if (k.subaccount_id !== null) {
      const s = this.findSubaccount(k.subaccount_id);
      if (!s || s.status !== 'active' || s.compliance_status !== 'active') {
        throw forbidden('Subaccount is not active');
      }
    }
    return { subaccountId: k.subaccount_id, grants: new Set(k.grants), keyId: k.id };
  }

  private scope(method: string, header: string | string[] | undefined, p: Principal): Scope {
    const raw = Array.isArray(header) ? header[0] : header;
    let id: number | undefined;
    if (raw !== undefined && raw.trim() !== '') {
      if (!/^\d+$/.test(raw.trim())) throw invalid('invalid X-MSYS-SUBACCOUNT header');
      id = Number(raw.trim());
    }
    if (p.subaccountId !== null) {
      // A subaccount's own key is always scoped to that subaccount.
      if (id !== undefined && id !== p.subaccountId) throw forbidden();
      return { all: false, id: p.subaccountId };
    }
    if (id === undefined) return method === 'GET' ? { all: true } : { all: false, id: 0 };
    if (id !== 0) {
      const s = this.findSubaccount(id);
      if (!s) throw forbidden('Unknown subaccount');
      if (s.status === 'terminated' && method !== 'GET') throw forbidden('Subaccount is terminated');
    }
    return { all: false, id };
  }

  private need(ctx: Ctx, ...grants: string[]): void {
    const g = ctx.principal.grants;
    if (g === 'all') return;
    if (!grants.some((x) => g.has(x))) throw forbidden();
  }

  private route(ctx: Ctx): Reply {
    const [resource, id, sub, ...rest] = ctx.segs;
    const m = ctx.method;
    const bad = (): never => {
      throw err(405, 'Method Not Allowed');
    };
    switch (resource) {
      case 'subaccounts':
        if (sub !== undefined) throw notFound();
        if (id === undefined) {
          if (m === 'GET') return this.listSubaccounts(ctx);
          if (m === 'POST') return this.createSubaccount(ctx);
          return bad();
        }
        if (m === 'GET') return this.getSubaccount(ctx, id);
        if (m === 'PUT') return this.updateSubaccount(ctx, id);
        // No DELETE: terminate instead.
        return bad();
      case 'api-keys':
        if (sub !== undefined) throw notFound();
        this.need(ctx, 'api_keys/manage');
        if (id === undefined) {
          if (m === 'GET') return this.listApiKeys(ctx);
          if (m === 'POST') return this.createApiKey(ctx);
          return bad();
        }
        if (m === 'GET') return this.getApiKey(ctx, id);
        if (m === 'PUT') return this.updateApiKey(ctx, id);
        if (m === 'DELETE') return this.deleteApiKey(ctx, id);
        return bad();
      case 'data-privacy':
        if (sub !== undefined || (id !== 'rtbf-request' && id !== 'opt-out-request')) throw notFound();
        if (m !== 'POST') return bad();
        this.need(ctx, 'data_privacy/manage');
        return this.privacyRequest(ctx, id === 'rtbf-request' ? this.state.rtbfRequests : this.state.optOutRequests);
      case 'metrics':
        if (id !== 'deliverability' || rest.length || (sub !== undefined && sub !== 'subaccount')) throw notFound();
        if (m !== 'GET') return bad();
        this.need(ctx, 'metrics/view');
        return sub === 'subaccount' ? this.metricsBySubaccount(ctx) : this.metrics(ctx);
      case 'suppression-list':
        if (sub !== undefined) throw notFound();
        if (m === 'GET') this.need(ctx, 'suppression_lists/manage', 'suppression_lists/view');
        else this.need(ctx, 'suppression_lists/manage');
        if (id === undefined) {
          if (m === 'GET') return this.listSuppressions(ctx);
          if (m === 'PUT') return this.putSuppressions(ctx);
          return bad();
        }
        if (m === 'GET') return this.getSuppression(ctx, id);
        if (m === 'DELETE') return this.deleteSuppression(ctx, id);
        return bad();
      case 'events':
        if (id !== 'message' || sub !== undefined) throw notFound();
        if (m !== 'GET') return bad();
        this.need(ctx, 'message_events/view');
        return this.events(ctx);
      case 'sending-domains':
        if (m === 'GET') this.need(ctx, 'sending_domains/manage', 'sending_domains/view');
        else this.need(ctx, 'sending_domains/manage');
        if (rest.length) throw notFound();
        if (id === undefined) {
          if (m === 'GET') return this.listSendingDomains(ctx);
          if (m === 'POST') return this.createSendingDomain(ctx);
          return bad();
        }
        if (sub === 'verify') return m === 'POST' ? this.verifySendingDomain(ctx, id) : bad();
        if (sub !== undefined) throw notFound();
        if (m === 'GET') return this.getSendingDomain(ctx, id);
        if (m === 'PUT') return this.updateSendingDomain(ctx, id);
        if (m === 'DELETE') return this.deleteSendingDomain(ctx, id);
        return bad();
      case 'webhooks':
        return this.webhooksRoute(ctx, id, sub);
      case 'ip-pools':
        if (m === 'GET') this.need(ctx, 'ip_pools/manage', 'ip_pools/view');
        else this.need(ctx, 'ip_pools/manage');
        if (sub !== undefined) throw notFound();
        if (id === undefined) {
          if (m === 'GET') return { status: 200, body: { results: this.state.ipPools.map((p) => this.poolJson(p)) } };
          if (m === 'POST') return this.createIpPool(ctx);
          return bad();
        }
        if (m === 'GET') {
          const p = this.state.ipPools.find((x) => x.id === id);
          if (!p) throw notFound();
          return { status: 200, body: { results: this.poolJson(p) } };
        }
        if (m === 'DELETE') return this.deleteIpPool(id);
        return bad();
      default:
        throw notFound();
    }
  }

  // ---------------------------------------------------------------- subaccounts

  private subaccountJson(s: SubaccountRecord): Json {
    return {
      id: s.id,
      name: s.name,
      status: s.status,
      compliance_status: s.compliance_status,
      ...(s.ip_pool ? { ip_pool: s.ip_pool } : {}),
      options: s.options,
    };
  }

  private validateIpPool(v: unknown, allowEmpty: boolean): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || (!allowEmpty && v === '')) {
      throw paramError('ip_pool', '`ip_pool` must be a string', v);
    }
    if (v === '') return '';
    if (v.length > 20 || !/^[A-Za-z0-9_]+$/.test(v)) {
      throw paramError('ip_pool', '`ip_pool` must be at most 20 characters of [A-Za-z0-9_]', v);
    }
    if (!this.state.ipPools.some((p) => p.id === v)) throw paramError('ip_pool', '`ip_pool` does not exist', v);
    return v;
  }

  private validateName(v: unknown): string {
    if (v === undefined || v === null || v === '') throw paramError('name', '`name` is a required field', v);
    if (typeof v !== 'string') throw paramError('name', '`name` must be a string', v);
    if (v.length > 64) throw paramError('name', '`name` length must be less than or equal to 64', v);
    return v;
  }

  private createSubaccount(ctx: Ctx): Reply {
    this.need(ctx, 'subaccounts/manage');
    if (ctx.principal.subaccountId !== null) throw forbidden();
    const b = ctx.body;
    const name = this.validateName(b.name);
    const setupKey = b.setup_api_key === undefined ? true : b.setup_api_key;
    if (typeof setupKey !== 'boolean') throw paramError('setup_api_key', '`setup_api_key` must be a boolean', setupKey);
    let label = '';
    let grants: string[] = [];
    let validIps: string[] = [];
    if (setupKey) {
      if (typeof b.key_label !== 'string' || b.key_label === '') {
        throw paramError('key_label', '`key_label` is a required field', b.key_label);
      }
      label = b.key_label;
      if (!Array.isArray(b.key_grants) || b.key_grants.length === 0) {
        throw paramError('key_grants', '`key_grants` is a required field', b.key_grants);
      }
      for (const g of b.key_grants) {
        if (typeof g !== 'string' || !SUBACCOUNT_GRANTS.includes(g)) {
          throw paramError('key_grants', '`key_grants` contains an invalid grant', g);
        }
      }
      grants = [...new Set(b.key_grants as string[])];
      if (b.key_valid_ips !== undefined) {
        if (!Array.isArray(b.key_valid_ips) || b.key_valid_ips.some((x) => typeof x !== 'string')) {
          throw paramError('key_valid_ips', '`key_valid_ips` must be an array of strings', b.key_valid_ips);
        }
        validIps = b.key_valid_ips as string[];
      }
    }
    const ipPool = this.validateIpPool(b.ip_pool, false);
    const options = isObj(b.options) ? b.options : {};
    const s: SubaccountRecord = {
      id: this.nextSubaccountId++,
      name,
      status: 'active',
      compliance_status: 'active',
      ...(ipPool ? { ip_pool: ipPool } : {}),
      options,
      created: new Date().toISOString(),
    };
    this.state.subaccounts.push(s);
    if (!setupKey) return { status: 200, body: { results: { subaccount_id: s.id } } };
    const k = this.newKey(s.id, label, grants, validIps);
    return {
      status: 200,
      body: { results: { subaccount_id: s.id, key: k.key, label: k.label, short_key: k.short_key } },
    };
  }

  private getSubaccount(ctx: Ctx, id: string): Reply {
    this.need(ctx, 'subaccounts/view', 'subaccounts/manage');
    if (ctx.principal.subaccountId !== null) throw forbidden();
    const s = /^\d+$/.test(id) ? this.findSubaccount(Number(id)) : undefined;
    if (!s) throw notFound();
    return { status: 200, body: { results: this.subaccountJson(s) } };
  }

  private listSubaccounts(ctx: Ctx): Reply {
    this.need(ctx, 'subaccounts/view', 'subaccounts/manage');
    if (ctx.principal.subaccountId !== null) throw forbidden();
    const q = ctx.query;
    const paginated = ['cursor', 'per_page', 'sort_by', 'order', 'status', 'name', 'ids'].some((k) => q.has(k));
    if (!paginated)
      return { status: 200, body: { results: this.state.subaccounts.map((s) => this.subaccountJson(s)) } };

    // The cursor carries the filters: `links.next` only has cursor and per_page, like SparkPost's.
    const size = perPage(q, 100, 100);
    const cursor = q.get('cursor');
    let f: Json;
    if (cursor && cursor !== 'initial') {
      f = decodeCursor(cursor);
    } else {
      const status = q.get('status');
      if (status && !['active', 'suspended', 'terminated'].includes(status)) {
        throw invalid('invalid data format/type', 'status must be one of active, suspended, terminated', '1300');
      }
      f = {
        o: 0,
        name: q.get('name') ?? '',
        status: status ?? '',
        ids: (q.get('ids') ?? '').split(',').filter((x) => /^\d+$/.test(x)),
        sort_by: ['id', 'name', 'status'].includes(q.get('sort_by') ?? '') ? q.get('sort_by') : 'id',
        order: q.get('order') === 'asc' ? 'asc' : 'desc',
      };
    }
    const name = String(f.name ?? '').toLowerCase();
    const ids = Array.isArray(f.ids) ? f.ids.map(Number) : [];
    const key = String(f.sort_by ?? 'id') as 'id' | 'name' | 'status';
    const dir = f.order === 'asc' ? 1 : -1;
    const all = this.state.subaccounts
      .filter((s) => (!name || s.name.toLowerCase().includes(name)) && (!f.status || s.status === f.status))
      .filter((s) => ids.length === 0 || ids.includes(s.id))
      .sort((a, b) => (a[key] < b[key] ? -dir : a[key] > b[key] ? dir : b.id - a.id));
    const offset = Number(f.o) || 0;
    const page = all.slice(offset, offset + size);
    const links: Json = {};
    if (offset + size < all.length) {
      links.next = `/api/v1/subaccounts?cursor=${encodeCursor({ ...f, o: offset + size })}&per_page=${size}`;
    }
    return {
      status: 200,
      body: { results: page.map((s) => this.subaccountJson(s)), total_count: all.length, links },
    };
  }

  private updateSubaccount(ctx: Ctx, id: string): Reply {
    this.need(ctx, 'subaccounts/manage');
    if (ctx.principal.subaccountId !== null) throw forbidden();
    const s = /^\d+$/.test(id) ? this.findSubaccount(Number(id)) : undefined;
    if (!s) throw notFound();
    if (s.status === 'terminated') {
      throw invalid('Subaccount is terminated', 'A terminated subaccount cannot be updated');
    }
    const b = ctx.body;
    const name = b.name === undefined ? undefined : this.validateName(b.name);
    const status = b.status;
    if (
      status !== undefined &&
      (typeof status !== 'string' || !['active', 'suspended', 'terminated'].includes(status))
    ) {
      throw paramError('status', '`status` must be one of [active, suspended, terminated]', status);
    }
    const ipPool = this.validateIpPool(b.ip_pool, true);
    if (name !== undefined) s.name = name;
    if (status !== undefined) s.status = status as SubaccountStatus;
    if (ipPool === '') delete s.ip_pool;
    else if (ipPool !== undefined) s.ip_pool = ipPool;
    if (isObj(b.options)) s.options = { ...s.options, ...b.options };
    return { status: 200, body: { results: { message: 'Successfully updated subaccount information' } } };
  }

  // ---------------------------------------------------------------- api keys

  private newKey(subaccountId: number | null, label: string, grants: string[], validIps: string[]): ApiKeyRecord {
    const key = hex(20);
    const k: ApiKeyRecord = {
      id: hex(20),
      key,
      short_key: key.slice(0, 4),
      label,
      grants,
      subaccount_id: subaccountId,
      valid_ips: validIps,
      created: new Date().toISOString(),
    };
    this.state.apiKeys.push(k);
    this.mintedKeys.push({ id: k.id, key, subaccountId, label, mintedAt: Date.now(), revokedAt: null });
    return k;
  }

  private keyJson(k: ApiKeyRecord): Json {
    return {
      id: k.id,
      label: k.label,
      short_key: k.short_key,
      grants: k.grants,
      valid_ips: k.valid_ips,
      ...(k.subaccount_id !== null ? { subaccount_id: k.subaccount_id } : {}),
    };
  }

  /** Keys visible in the request's scope. */
  private keysInScope(scope: Scope): ApiKeyRecord[] {
    if (scope.all) return this.state.apiKeys;
    const owner = scope.id === 0 ? null : scope.id;
    return this.state.apiKeys.filter((k) => k.subaccount_id === owner);
  }

  private validateGrants(v: unknown, owner: number | null): string[] {
    const allowed = owner === null ? PRIMARY_GRANTS : SUBACCOUNT_GRANTS;
    if (!Array.isArray(v) || v.length === 0) throw invalid('grants is a required field', undefined, '1400');
    for (const g of v) {
      if (typeof g !== 'string' || !allowed.includes(g)) {
        throw invalid(
          'invalid grant',
          `Grant '${String(g)}' is not allowed for this ${owner === null ? 'account' : 'subaccount'}`,
        );
      }
    }
    return [...new Set(v as string[])];
  }

  private createApiKey(ctx: Ctx): Reply {
    const owner = ctx.scope.all || ctx.scope.id === 0 ? null : ctx.scope.id;
    const b = ctx.body;
    if (typeof b.label !== 'string' || b.label === '' || b.label.length > 1024) {
      throw invalid('label is a required field', 'label must be a string of 1 to 1024 characters');
    }
    const grants = this.validateGrants(b.grants, owner);
    let validIps: string[] = [];
    if (b.valid_ips !== undefined) {
      if (!Array.isArray(b.valid_ips) || b.valid_ips.some((x) => typeof x !== 'string')) {
        throw invalid('valid_ips must be an array of strings');
      }
      validIps = validIpList(b.valid_ips as string[]);
    }
    const k = this.newKey(owner, b.label, grants, validIps);
    return {
      status: 200,
      body: {
        results: { key: k.key, short_key: k.short_key, label: k.label, link: { href: `/api/v1/api-keys/${k.id}` } },
      },
    };
  }

  private listApiKeys(ctx: Ctx): Reply {
    return { status: 200, body: { results: this.keysInScope(ctx.scope).map((k) => this.keyJson(k)) } };
  }

  private findKey(ctx: Ctx, id: string): ApiKeyRecord {
    const k = this.keysInScope(ctx.scope).find((x) => x.id === id);
    if (!k) throw notFound();
    return k;
  }

  private getApiKey(ctx: Ctx, id: string): Reply {
    return { status: 200, body: { results: this.keyJson(this.findKey(ctx, id)) } };
  }

  private updateApiKey(ctx: Ctx, id: string): Reply {
    const k = this.findKey(ctx, id);
    const b = ctx.body;
    if (b.label !== undefined) {
      if (typeof b.label !== 'string' || b.label === '' || b.label.length > 1024) throw invalid('invalid label');
      k.label = b.label;
    }
    if (b.grants !== undefined) k.grants = this.validateGrants(b.grants, k.subaccount_id);
    if (b.valid_ips !== undefined) {
      if (!Array.isArray(b.valid_ips) || b.valid_ips.some((x) => typeof x !== 'string')) {
        throw invalid('valid_ips must be an array of strings');
      }
      k.valid_ips = validIpList(b.valid_ips as string[]);
    }
    return { status: 200, body: { results: this.keyJson(k) } };
  }

  private deleteApiKey(ctx: Ctx, id: string): Reply {
    const k = this.findKey(ctx, id);
    removeFrom(this.state.apiKeys, k);
    const record = this.mintedKeys.find((m) => m.id === k.id);
    if (record) record.revokedAt = Date.now();
    return { status: 204 };
  }

  // ---------------------------------------------------------------- data privacy

  private privacyRequest(ctx: Ctx, into: DataPrivacyRequestRecord[]): Reply {
    const b = ctx.body;
    if (!Array.isArray(b.recipients) || b.recipients.length === 0) {
      throw err(400, 'recipients is a required field');
    }
    if (b.recipients.length > MAX_PRIVACY_RECIPIENTS) {
      throw err(400, `Exceeded maximum number of recipients (${MAX_PRIVACY_RECIPIENTS})`);
    }
    for (const r of b.recipients) {
      if (typeof r !== 'string' || !EMAIL.test(r)) throw err(400, 'invalid email address', { recipient: r });
    }
    const include = b.include_subaccounts === true;
    const id = ctx.scope.all ? 0 : ctx.scope.id;
    into.push({
      subaccount_id: id === 0 ? null : id,
      // With the header only that subaccount is affected, whatever the body says.
      include_subaccounts: include && id === 0,
      recipients: [...(b.recipients as string[])],
      at: new Date().toISOString(),
    });
    return { status: 200, body: { results: { message: 'Request saved.' } } };
  }

  // ---------------------------------------------------------------- suppression list (issue 11)

  private suppressionsInScope(scope: Scope): SuppressionRecord[] {
    return this.state.suppressions.filter((x) => scope.all || x.subaccount_id === scope.id);
  }

  private suppressionJson(x: SuppressionRecord): Json {
    return {
      recipient: x.recipient,
      type: x.type,
      source: x.source,
      description: x.description,
      created: x.created,
      updated: x.updated,
      subaccount_id: x.subaccount_id,
    };
  }

  private getSuppression(ctx: Ctx, recipient: string): Reply {
    const found = this.suppressionsInScope(ctx.scope).filter((x) => sameAddress(x.recipient, recipient));
    if (!found.length) throw err(404, 'Recipient could not be found', { code: '1600' });
    return { status: 200, body: { results: found.map((x) => this.suppressionJson(x)) } };
  }

  private listSuppressions(ctx: Ctx): Reply {
    const q = ctx.query;
    const size = perPage(q, 1000, 10000);
    const cursor = q.get('cursor');
    let f: Json;
    if (cursor && cursor !== 'initial') {
      f = decodeCursor(cursor);
    } else {
      const list = (name: string) =>
        (q.get(name) ?? '')
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
      f = {
        o: 0,
        from: parseTime(q.get('from'), 'from') ?? null,
        to: parseTime(q.get('to'), 'to') ?? null,
        sources: list('sources'),
        types: list('types'),
        scope: ctx.scope.all ? null : ctx.scope.id,
      };
    }
    const sources = Array.isArray(f.sources) ? f.sources.map(String) : [];
    const types = Array.isArray(f.types) ? f.types.map(String) : [];
    const scope: Scope = f.scope === null || f.scope === undefined ? ctx.scope : { all: false, id: Number(f.scope) };
    const all = this.suppressionsInScope(scope).filter((x) => {
      const t = Date.parse(x.updated);
      return (
        (f.from === null || t >= Number(f.from)) &&
        (f.to === null || t <= Number(f.to)) &&
        (!sources.length || sources.includes(x.source)) &&
        (!types.length || types.includes(x.type))
      );
    });
    const offset = Number(f.o) || 0;
    const links: Json = {};
    if (offset + size < all.length) {
      links.next = `/api/v1/suppression-list?cursor=${encodeCursor({ ...f, o: offset + size })}&per_page=${size}`;
    }
    return {
      status: 200,
      body: {
        results: all.slice(offset, offset + size).map((x) => this.suppressionJson(x)),
        total_count: all.length,
        links,
      },
    };
  }

  private putSuppressions(ctx: Ctx): Reply {
    const list = ctx.body.recipients;
    if (!Array.isArray(list) || !list.length) throw err(400, 'recipients is a required field');
    if (ctx.scope.all) throw invalid('invalid X-MSYS-SUBACCOUNT header');
    const seeds: SuppressionSeed[] = [];
    for (const e of list) {
      if (!isObj(e) || typeof e.recipient !== 'string' || !EMAIL.test(e.recipient)) {
        throw err(400, 'invalid email address', { recipient: isObj(e) ? e.recipient : e });
      }
      const type = e.type ?? 'transactional';
      if (type !== 'transactional' && type !== 'non_transactional')
        throw invalid('type must be transactional or non_transactional');
      seeds.push({
        recipient: e.recipient,
        type,
        source: 'Manually Added',
        description: typeof e.description === 'string' ? e.description : '',
      });
    }
    this.addSuppressions(ctx.scope.id, seeds);
    return { status: 200, body: { results: { message: 'Suppression List successfully updated' } } };
  }

  private deleteSuppression(ctx: Ctx, recipient: string): Reply {
    if (ctx.scope.all) throw invalid('invalid X-MSYS-SUBACCOUNT header');
    const type = ctx.body.type;
    if (type !== undefined && type !== 'transactional' && type !== 'non_transactional') {
      throw invalid('type must be transactional or non_transactional');
    }
    const found = this.suppressionsInScope(ctx.scope).filter(
      (x) => sameAddress(x.recipient, recipient) && (type === undefined || x.type === type),
    );
    if (!found.length) throw err(404, 'Recipient could not be found', { code: '1600' });
    if (found.some((x) => !x.removable)) {
      throw forbidden('This recipient may not be removed from the suppression list (compliance).');
    }
    for (const x of found) removeFrom(this.state.suppressions, x);
    return { status: 204 };
  }

  // ---------------------------------------------------------------- end of suppression list

  // ---------------------------------------------------------------- metrics and events

  private timeWindow(q: URLSearchParams, defaultFromMs: number | null): { from: number; to: number } {
    const from = parseTime(q.get('from'), 'from');
    if (from === undefined && defaultFromMs === null) throw invalid('from is a required field', undefined, '1400');
    const to = parseTime(q.get('to'), 'to') ?? Date.now();
    return { from: from ?? defaultFromMs ?? 0, to };
  }

  private metricNames(q: URLSearchParams): string[] {
    const names = (q.get('metrics') ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
    if (!names.length) throw invalid('metrics is a required field', undefined, '1400');
    for (const n of names) {
      if (!/^(count|total|avg)_[a-z_]+$/.test(n))
        throw invalid('invalid data format/type', `Unsupported metric ${n}`, '1300');
    }
    return names;
  }

  private subaccountFilter(q: URLSearchParams): Set<number> | null {
    const raw = q.get('subaccounts');
    if (!raw) return null;
    return new Set(
      raw
        .split(',')
        .filter((x) => /^\d+$/.test(x.trim()))
        .map(Number),
    );
  }

  private aggregate(events: MessageEventRecord[], names: string[]): Record<string, number> {
    const row: Record<string, number> = {};
    for (const n of names) row[n] = 0;
    for (const e of events) for (const m of metricsOf(e)) if (m in row) row[m]++;
    return row;
  }

  private metricEvents(ctx: Ctx): MessageEventRecord[] {
    const { from, to } = this.timeWindow(ctx.query, null);
    const subs = this.subaccountFilter(ctx.query);
    return this.state.events.filter((e) => {
      const t = Date.parse(e.timestamp);
      return t >= from && t <= to && (!subs || subs.has(e.subaccount_id));
    });
  }

  private metrics(ctx: Ctx): Reply {
    const names = this.metricNames(ctx.query);
    const row = this.aggregate(this.metricEvents(ctx), names);
    return { status: 200, body: { results: [row], links: [] } };
  }

  private metricsBySubaccount(ctx: Ctx): Reply {
    const names = this.metricNames(ctx.query);
    const limitRaw = ctx.query.get('limit');
    const limit = limitRaw ? Number(limitRaw) : 1000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 10000) {
      throw invalid('invalid data format/type', 'limit must be between 1 and 10000', '1300');
    }
    const orderBy = ctx.query.get('order_by') ?? names[0];
    const groups = new Map<number, MessageEventRecord[]>();
    for (const e of this.metricEvents(ctx)) {
      const list = groups.get(e.subaccount_id) ?? [];
      list.push(e);
      groups.set(e.subaccount_id, list);
    }
    const rows = [...groups.entries()].map(([sid, evs]) => ({ ...this.aggregate(evs, names), subaccount_id: sid }));
    rows.sort((a, b) => ((b as Record<string, number>)[orderBy] ?? 0) - ((a as Record<string, number>)[orderBy] ?? 0));
    return { status: 200, body: { results: rows.slice(0, limit), links: [] } };
  }

  private events(ctx: Ctx): Reply {
    const q = ctx.query;
    const size = perPage(q, 1000, 10000);
    const cursor = q.get('cursor');
    let f: Json;
    if (cursor && cursor !== 'initial') {
      f = decodeCursor(cursor);
    } else {
      // SparkPost's default window is the last 24 hours.
      const { from, to } = this.timeWindow(q, Date.now() - 24 * 3600 * 1000);
      const list = (name: string) =>
        (q.get(name) ?? '')
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
      f = { o: 0, from, to, events: list('events'), subaccounts: list('subaccounts'), recipients: list('recipients') };
    }
    const horizon = Date.now() - EVENTS_RETENTION_MS;
    const types = Array.isArray(f.events) ? f.events.map(String) : [];
    const subs = Array.isArray(f.subaccounts) ? f.subaccounts.map(Number) : [];
    const rcpts = Array.isArray(f.recipients) ? f.recipients.map((x) => String(x).toLowerCase()) : [];
    const from = Number(f.from);
    const to = Number(f.to);
    const all = this.state.events
      .filter((e) => {
        const t = Date.parse(e.timestamp);
        return (
          t >= Math.max(from, horizon) &&
          t <= to &&
          (!types.length || types.includes(e.type)) &&
          (!subs.length || subs.includes(e.subaccount_id)) &&
          (!rcpts.length || rcpts.includes(e.rcpt_to.toLowerCase()))
        );
      })
      .sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp));
    const offset = Number(f.o) || 0;
    const page = all.slice(offset, offset + size);
    const links: Json = {};
    if (offset + size < all.length) {
      links.next = `/api/v1/events/message?cursor=${encodeCursor({ ...f, o: offset + size })}&per_page=${size}`;
    }
    return {
      status: 200,
      body: { results: page.map((e) => this.eventJson(e)), total_count: all.length, links },
    };
  }

  /** Event field values are strings, as SparkPost sends them. */
  private eventJson(e: MessageEventRecord): Json {
    const out: Json = {
      type: e.type,
      event_id: e.event_id,
      timestamp: e.timestamp,
      rcpt_to: e.rcpt_to,
      raw_rcpt_to: e.rcpt_to,
      subaccount_id: String(e.subaccount_id),
    };
    if (e.message_id) out.message_id = e.message_id;
    if (e.subject !== undefined) out.subject = e.subject;
    if (e.friendly_from) out.friendly_from = e.friendly_from;
    if (e.bounce_class !== undefined) out.bounce_class = e.bounce_class;
    if (e.reason !== undefined) out.reason = e.reason;
    if (e.raw_reason !== undefined) out.raw_reason = e.raw_reason;
    if (e.error_code !== undefined) out.error_code = e.error_code;
    return out;
  }

  // ---------------------------------------------------------------- sending domains

  private domainJson(d: SendingDomainRecord, withName: boolean): Json {
    return {
      ...(withName ? { domain: d.domain } : {}),
      tracking_domain: null,
      status: {
        ownership_verified: d.ownership_verified,
        spf_status: 'unverified',
        abuse_at_status: 'unverified',
        dkim_status: d.dkim_status,
        cname_status: 'unverified',
        mx_status: 'unverified',
        compliance_status: d.compliance_status,
        postmaster_at_status: 'unverified',
        verification_mailbox_status: 'unverified',
      },
      ...(d.dkim ? { dkim: { selector: d.dkim.selector, public: d.dkim.public, headers: d.dkim.headers } } : {}),
      shared_with_subaccounts: d.shared_with_subaccounts,
      is_default_bounce_domain: false,
      ...(d.subaccount_id !== null ? { subaccount_id: d.subaccount_id } : {}),
    };
  }

  private domainsInScope(scope: Scope): SendingDomainRecord[] {
    if (scope.all) return this.state.sendingDomains;
    const owner = scope.id === 0 ? null : scope.id;
    return this.state.sendingDomains.filter((d) => d.subaccount_id === owner);
  }

  private findDomain(ctx: Ctx, domain: string): SendingDomainRecord {
    const d = this.domainsInScope(ctx.scope).find((x) => x.domain === domain.toLowerCase());
    if (!d) throw notFound();
    return d;
  }

  private listSendingDomains(ctx: Ctx): Reply {
    return { status: 200, body: { results: this.domainsInScope(ctx.scope).map((d) => this.domainJson(d, true)) } };
  }

  private createSendingDomain(ctx: Ctx): Reply {
    const b = ctx.body;
    if (typeof b.domain !== 'string' || b.domain === '') throw invalid('domain is a required field');
    const domain = b.domain.toLowerCase();
    if (!DOMAIN.test(domain)) throw invalid('invalid data format/type', 'domain is not a valid domain name', '1300');
    if (RESTRICTED_DOMAINS.some((r) => domain === r || domain.endsWith(`.${r}`))) {
      throw invalid('invalid params', `Domain '${domain}' is restricted`, '7000');
    }
    const owner = ctx.scope.all || ctx.scope.id === 0 ? null : ctx.scope.id;
    const existing = this.state.sendingDomains.find((x) => x.domain === domain);
    if (existing && existing.subaccount_id === owner) {
      throw err(409, 'resource conflict', { description: `Sending domain '${domain}' already exists`, code: '1602' });
    }
    if (existing) throw invalid('invalid params', `Domain '${domain}' is in use by another account`, '7004');
    const shared = b.shared_with_subaccounts === true && owner === null;
    const d: SendingDomainRecord = {
      domain,
      subaccount_id: owner,
      shared_with_subaccounts: shared,
      ownership_verified: false,
      dkim_status: 'unverified',
      compliance_status: 'pending',
      ...(b.generate_dkim === false ? {} : { dkim: this.newDkim(domain) }),
      verifiable: this.verifiableDomains.has(domain),
      created: new Date().toISOString(),
    };
    this.state.sendingDomains.push(d);
    return {
      status: 200,
      body: {
        results: {
          message: 'Successfully Created domain.',
          domain,
          ...(d.dkim ? { dkim: { ...d.dkim } } : {}),
        },
      },
    };
  }

  private getSendingDomain(ctx: Ctx, domain: string): Reply {
    return { status: 200, body: { results: this.domainJson(this.findDomain(ctx, domain), false) } };
  }

  private updateSendingDomain(ctx: Ctx, domain: string): Reply {
    const d = this.findDomain(ctx, domain);
    if (typeof ctx.body.shared_with_subaccounts === 'boolean' && d.subaccount_id === null) {
      d.shared_with_subaccounts = ctx.body.shared_with_subaccounts;
    }
    return { status: 200, body: { results: { message: 'Successfully Updated Domain.', domain: d.domain } } };
  }

  private verifySendingDomain(ctx: Ctx, domain: string): Reply {
    const d = this.findDomain(ctx, domain);
    // A failed check is still a 200 with the statuses, as SparkPost answers.
    if (ctx.body.dkim_verify === true && d.dkim) {
      if (d.verifiable) {
        d.dkim_status = 'valid';
        d.ownership_verified = true;
        d.compliance_status = 'valid';
      } else if (!d.ownership_verified) {
        d.dkim_status = 'invalid';
      }
    }
    return {
      status: 200,
      body: {
        results: {
          ownership_verified: d.ownership_verified,
          spf_status: 'unverified',
          abuse_at_status: 'unverified',
          dkim_status: d.dkim_status,
          cname_status: 'unverified',
          mx_status: 'unverified',
          compliance_status: d.compliance_status,
          postmaster_at_status: 'unverified',
          verification_mailbox_status: 'unverified',
          dns: d.verifiable ? {} : { dkim_error: 'DNS DKIM query error: NXDOMAIN' },
        },
      },
    };
  }

  private deleteSendingDomain(ctx: Ctx, domain: string): Reply {
    const d = this.findDomain(ctx, domain);
    removeFrom(this.state.sendingDomains, d);
    return { status: 204 };
  }

  // ---------------------------------------------------------------- ip pools

  private poolJson(p: IpPoolRecord): Json {
    return { id: p.id, name: p.name, ips: [], fbl_signing_domain: '' };
  }

  private createIpPool(ctx: Ctx): Reply {
    if (ctx.principal.subaccountId !== null || (!ctx.scope.all && ctx.scope.id !== 0)) throw forbidden();
    const name = ctx.body.name;
    if (typeof name !== 'string' || name.trim() === '') throw invalid('name is a required field');
    const id = poolId(name);
    if (!id.replace(/_/g, '')) throw invalid('invalid data format/type', 'name must contain letters or digits', '1300');
    if (this.state.ipPools.some((p) => p.id === id)) {
      throw err(409, 'resource conflict', { description: `IP pool '${id}' already exists`, code: '1602' });
    }
    this.state.ipPools.push({ id, name });
    return { status: 200, body: { results: { id } } };
  }

  private deleteIpPool(id: string): Reply {
    if (id === 'default') throw invalid('The default pool cannot be deleted');
    if (!this.state.ipPools.some((p) => p.id === id)) throw notFound();
    if (this.state.subaccounts.some((s) => s.ip_pool === id)) {
      throw err(409, 'resource conflict', { description: `IP pool '${id}' is in use`, code: '1602' });
    }
    this.state.ipPools.splice(
      this.state.ipPools.findIndex((p) => p.id === id),
      1,
    );
    return { status: 204 };
  }
}

/** Addresses compare case-insensitively (SparkPost lowercases them). */
function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** Filters in place (see removeFrom). */
function keepOnly<T>(list: T[], keep: (item: T) => boolean): void {
  let j = 0;
  for (const item of list) if (keep(item)) list[j++] = item;
  list.length = j;
}

/** Removes in place, so that references tests hold on `state` arrays stay live. */
function removeFrom<T>(list: T[], item: T): void {
  const i = list.indexOf(item);
  if (i >= 0) list.splice(i, 1);
}

/** Reads the request body, at most MAX_BODY_BYTES (null when larger). */
async function readBody(req: http.IncomingMessage): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > MAX_BODY_BYTES) tooBig = true;
    else chunks.push(b);
  }
  return tooBig ? null : Buffer.concat(chunks).toString('utf8');
}

function send(res: http.ServerResponse, r: Reply): void {
  if (r.status === 204 || r.body === undefined) {
    res.writeHead(r.status, { ...r.headers });
    res.end();
    return;
  }
  const body = JSON.stringify(r.body);
  res.writeHead(r.status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    ...r.headers,
  });
  res.end(body);
}

/** `valid_ips` as SparkPost accepts it: IPv4 addresses or CIDR blocks. */
function validIpList(ips: string[]): string[] {
  for (const ip of ips) {
    const [addr, prefix, extra] = ip.split('/');
    const bits = prefix === undefined ? 32 : /^\d{1,2}$/.test(prefix) ? Number(prefix) : -1;
    if (extra !== undefined || !isIPv4(addr) || bits < 0 || bits > 32) {
      throw invalid(`valid_ips: ${JSON.stringify(ip)} is not an IPv4 address or CIDR block`);
    }
  }
  return ips;
}

/** Whether `address` (IPv4, or IPv4-mapped IPv6 as a socket reports it) lies in one of `ips`. */
function ipInList(address: string, ips: string[]): boolean {
  const v4 = address.replace(/^::ffff:/i, '');
  if (!isIPv4(v4)) return false;
  const list = new BlockList();
  for (const ip of ips) {
    const [addr, prefix] = ip.split('/');
    list.addSubnet(addr, prefix === undefined ? 32 : Number(prefix), 'ipv4');
  }
  return list.check(v4, 'ipv4');
}
