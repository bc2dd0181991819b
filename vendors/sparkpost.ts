/**
 * SparkPost REST client (EU or US API, or the local emulator). It speaks exactly the subset managed-smtp needs
 * (shared reference: sparkpost.md) and throws only VendorError, classified for Temporal's retry policy. It never
 * retries by itself: activities are retried by Temporal, and a second retry layer would multiply side effects of
 * non-idempotent calls such as subaccount creation.
 */
import axios, { type AxiosInstance } from 'axios';

import { TIMEOUT_CODE, VendorError, kindForHttpStatus, parseRetryAfter, type VendorErrorKind } from '../lib/errors';
import { replaceAddresses } from '../lib/recipients';

/** How to reach SparkPost. */
export interface SparkPostClientOptions {
  /** REST base URL including `/api/v1`, e.g. `https://api.eu.sparkpost.com/api/v1`. */
  baseUrl: string;
  /** The operator (primary account) API key, sent raw in `Authorization`. */
  apiKey: string;
  /** Per-request timeout in milliseconds (default 15 000). */
  timeoutMs?: number;
}

/** A subaccount's own status (`terminated` is permanent and read-only). */
export type SubaccountStatus = 'active' | 'suspended' | 'terminated';

/** A SparkPost subaccount. */
export interface Subaccount {
  id: number;
  name: string;
  status: SubaccountStatus;
  /** SparkPost's own compliance verdict; anything but `active` means SparkPost suspended it. */
  complianceStatus: string;
  ipPool?: string;
}

/** An API key as listed (the full key is only ever returned at creation). */
export interface ApiKeySummary {
  id: string;
  label: string;
  /** The first four characters of the key. */
  shortKey: string;
  grants: string[];
  /** null for a key of the primary account. */
  subaccountId: number | null;
  /** IPv4 addresses or CIDR blocks the key is limited to; empty = any address. */
  validIps: string[];
}

/** A freshly created API key, the only moment the full key is known. */
export interface CreatedApiKey {
  id: string;
  key: string;
  shortKey: string;
  label: string;
}

/** DKIM material SparkPost generated for a sending domain. */
export interface SendingDomainDkim {
  selector: string;
  public: string;
  headers: string;
}

/** Verification state of a sending domain. */
export interface SendingDomainStatus {
  ownership_verified: boolean;
  dkim_status: string;
  compliance_status: string;
}

// ---------------------------------------------------------------- suppression list and message events (issue 11)

/** Where a suppression-list entry came from (sparkpost.md). */
export const SUPPRESSION_SOURCES = [
  'Spam Complaint',
  'List Unsubscribe',
  'Bounce Rule',
  'Unsubscribe Link',
  'Manually Added',
  'Compliance',
] as const;

/** A suppression-list entry source. */
export type SuppressionSource = (typeof SUPPRESSION_SOURCES)[number];

/** One suppression-list entry (SparkPost keeps one per recipient and type). */
export interface SuppressionEntry {
  recipient: string;
  type: 'transactional' | 'non_transactional';
  /** One of SUPPRESSION_SOURCES; kept as given when SparkPost sends something newer. */
  source: string;
  description: string;
  created?: string;
  updated?: string;
  /** The subaccount holding it (0 = primary). */
  subaccountId: number;
}

/** One message event, as much of it as managed-smtp reads. */
export interface MessageEvent {
  eventId: string;
  type: string;
  timestamp: string;
  recipient: string;
  subaccountId: number;
  bounceClass?: string;
  reason?: string;
  rawReason?: string;
  errorCode?: string;
  messageId?: string;
  subject?: string;
  friendlyFrom?: string;
}

/** What a bounce class means (sparkpost.md): its name and whether it is hard, soft, a block or neither. */
export const BOUNCE_CLASSES: Readonly<
  Record<string, { name: string; category: 'hard' | 'soft' | 'block' | 'admin' | 'undetermined' | 'other' }>
> = {
  '1': { name: 'Undetermined', category: 'undetermined' },
  '10': { name: 'Invalid Recipient', category: 'hard' },
  '20': { name: 'Soft Bounce', category: 'soft' },
  '21': { name: 'DNS Failure', category: 'soft' },
  '22': { name: 'Mailbox Full', category: 'soft' },
  '23': { name: 'Too Large', category: 'soft' },
  '24': { name: 'Timeout', category: 'soft' },
  '25': { name: 'Admin Failure', category: 'admin' },
  '30': { name: 'Generic Bounce: No RCPT', category: 'hard' },
  '40': { name: 'Generic Bounce', category: 'soft' },
  '50': { name: 'Mail Block', category: 'block' },
  '51': { name: 'Spam Block', category: 'block' },
  '52': { name: 'Spam Content', category: 'block' },
  '53': { name: 'Prohibited Attachment', category: 'block' },
  '54': { name: 'Relaying Denied', category: 'block' },
  '60': { name: 'Auto-Reply', category: 'other' },
  '70': { name: 'Transient Failure', category: 'soft' },
  '80': { name: 'Subscribe', category: 'other' },
  '90': { name: 'Unsubscribe', category: 'hard' },
  '100': { name: 'Challenge-Response', category: 'other' },
};

/** SparkPost keeps message events this long (10 days): asking from further back gives nothing more. */
export const MESSAGE_EVENTS_RETENTION_MS = 10 * 24 * 3600 * 1000;
/** Entries per suppression-list page SparkPost accepts at most. */
const MAX_SUPPRESSION_PAGE = 10000;

// ---------------------------------------------------------------- end of suppression list and message events types

/** Subaccounts accepted by SparkPost in one list page. */
const MAX_SUBACCOUNT_PAGE = 100;
/** Bound on followed `links.next` of the subaccount list: 100 000 subaccounts is far beyond any fleet. */
const MAX_SUBACCOUNT_PAGES = 1000;
/** Events per page SparkPost accepts at most. */
const MAX_EVENTS_PAGE = 10000;
/** Default bound on followed event pages. */
const DEFAULT_EVENT_PAGES = 100;
/** Message events are kept 10 days: asking from further back gives nothing more. */
const EVENTS_RETENTION_MS = 10 * 24 * 3600 * 1000;
/** Data privacy requests take at most this many recipients. */
const MAX_PRIVACY_RECIPIENTS = 1000;
const DEFAULT_TIMEOUT_MS = 15000;
/** Error messages are one line: cut what the vendor said beyond this. */
const MAX_DETAIL_CHARS = 300;

const STATUSES: readonly SubaccountStatus[] = ['active', 'suspended', 'terminated'];

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

interface CallSpec {
  method: Method;
  /** Path relative to the base URL (e.g. `/subaccounts`), or an absolute URL already resolved against the origin. */
  path: string;
  query?: Record<string, string | number | undefined>;
  body?: unknown;
  /** X-MSYS-SUBACCOUNT: act for this subaccount. */
  subaccount?: number;
  /** What errors show instead of `path`, when the path holds personal data (an address). */
  shown?: string;
}

/** A JSON object as received; fields still need checking. */
type Json = Record<string, unknown>;

/** Client of the SparkPost REST API. Every method throws only VendorError. */
export class SparkPostClient {
  private readonly http: AxiosInstance;
  private readonly base: URL;
  private readonly apiKey: string;
  private readonly timeoutMs: number;

  constructor(opts: SparkPostClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.baseUrl);
    } catch {
      throw new VendorError({
        vendor: 'sparkpost',
        kind: 'invalid',
        message: 'SparkPost base URL is not a valid URL.',
      });
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new VendorError({ vendor: 'sparkpost', kind: 'invalid', message: 'SparkPost base URL must be http(s).' });
    }
    base.pathname = base.pathname.replace(/\/+$/, '');
    base.search = '';
    base.hash = '';
    this.base = base;
    this.apiKey = opts.apiKey;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.http = axios.create({
      timeout: this.timeoutMs,
      validateStatus: () => true,
      // Raw text so that truncated or HTML bodies are recognised here instead of silently becoming strings.
      responseType: 'text',
      transformResponse: [(d: unknown) => d],
      // A redirect could carry the Authorization header elsewhere; SparkPost never redirects API calls.
      maxRedirects: 0,
      maxContentLength: 64 * 1024 * 1024,
    });
  }

  // ---------------------------------------------------------------- subaccounts

  /** Creates a subaccount without an API key. Not idempotent: look the name up first after a timeout. */
  async createSubaccount(name: string): Promise<{ id: number }> {
    const spec: CallSpec = { method: 'POST', path: '/subaccounts', body: { name, setup_api_key: false } };
    const results = this.results(spec, await this.call(spec));
    return { id: this.num(spec, obj(results)?.subaccount_id, 'subaccount_id') };
  }

  /** Reads one subaccount. */
  async getSubaccount(id: number): Promise<Subaccount> {
    const spec: CallSpec = { method: 'GET', path: `/subaccounts/${intId(id)}` };
    return this.subaccount(spec, this.results(spec, await this.call(spec)));
  }

  /**
   * Lists subaccounts through every page (`links.next`). The `name` filter is SparkPost's substring match: use
   * findSubaccountsByName for an exact lookup.
   */
  async listSubaccounts(
    filter: { name?: string; status?: SubaccountStatus; perPage?: number } = {},
  ): Promise<Subaccount[]> {
    const perPage = Math.min(MAX_SUBACCOUNT_PAGE, Math.max(1, Math.floor(filter.perPage ?? MAX_SUBACCOUNT_PAGE)));
    let spec: CallSpec = {
      method: 'GET',
      path: '/subaccounts',
      query: { cursor: 'initial', per_page: perPage, name: filter.name, status: filter.status },
    };
    const byId = new Map<number, Subaccount>();
    for (let page = 0; page < MAX_SUBACCOUNT_PAGES; page++) {
      const body = await this.call(spec);
      const results = this.results(spec, body);
      if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
      // The order is not stable between pages: dedupe by id.
      for (const r of results) {
        const s = this.subaccount(spec, r);
        byId.set(s.id, s);
      }
      const next = obj(obj(body)?.links)?.next;
      if (next === undefined || next === null || next === '') {
        return [...byId.values()].filter((s) => !filter.status || s.status === filter.status);
      }
      if (typeof next !== 'string') throw this.malformed(spec, 'links.next is not a string');
      spec = { method: 'GET', path: this.resolveNext(spec, next) };
    }
    throw this.malformed(spec, `more than ${MAX_SUBACCOUNT_PAGES} pages of subaccounts`);
  }

  /** Subaccounts whose name is exactly `name` (names are not unique, so there may be several). */
  async findSubaccountsByName(name: string): Promise<Subaccount[]> {
    const all = await this.listSubaccounts({ name });
    return all.filter((s) => s.name === name);
  }

  /** Changes a subaccount's status, name or IP pool (`ipPool: ''` unassigns). */
  async updateSubaccount(
    id: number,
    patch: { status?: SubaccountStatus; name?: string; ipPool?: string },
  ): Promise<void> {
    const body: Json = {};
    if (patch.status !== undefined) body.status = patch.status;
    if (patch.name !== undefined) body.name = patch.name;
    if (patch.ipPool !== undefined) body.ip_pool = patch.ipPool;
    await this.call({ method: 'PUT', path: `/subaccounts/${intId(id)}`, body });
  }

  // ---------------------------------------------------------------- api keys

  /**
   * Creates an API key on a subaccount, limited to `validIps` (IPv4 addresses or CIDR blocks; empty = any address).
   * The returned `key` is never obtainable again.
   */
  async createApiKey(
    subaccountId: number,
    label: string,
    grants: string[],
    validIps: readonly string[] = [],
  ): Promise<CreatedApiKey> {
    const spec: CallSpec = {
      method: 'POST',
      path: '/api-keys',
      subaccount: intId(subaccountId),
      body: { label, grants, valid_ips: [...validIps] },
    };
    const r = obj(this.results(spec, await this.call(spec)));
    if (!r) throw this.malformed(spec, 'results is not an object');
    const key = this.str(spec, r.key, 'key');
    const href = this.str(spec, obj(r.link)?.href, 'link.href');
    // The id is only documented inside link.href (`/api/v1/api-keys/<id>`).
    const id = decodeURIComponent(
      href
        .replace(/[?#].*$/, '')
        .replace(/\/+$/, '')
        .split('/')
        .pop() ?? '',
    );
    if (!id) throw this.malformed(spec, 'link.href has no key id');
    const shortKey = typeof r.short_key === 'string' ? r.short_key : key.slice(0, 4);
    return { id, key, shortKey, label: typeof r.label === 'string' ? r.label : label };
  }

  /** The API keys of one subaccount. */
  async listApiKeys(subaccountId: number): Promise<ApiKeySummary[]> {
    const sub = intId(subaccountId);
    const spec: CallSpec = { method: 'GET', path: '/api-keys', subaccount: sub };
    const results = this.results(spec, await this.call(spec));
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    const keys: ApiKeySummary[] = [];
    for (const raw of results) {
      const r = obj(raw);
      if (!r) throw this.malformed(spec, 'an api key is not an object');
      const owner = r.subaccount_id === undefined || r.subaccount_id === null ? sub : Number(r.subaccount_id);
      // The header scopes the list; a key of someone else would be a server bug we must not act upon.
      if (owner !== sub) continue;
      keys.push({
        id: this.str(spec, r.id, 'id'),
        label: typeof r.label === 'string' ? r.label : '',
        shortKey: typeof r.short_key === 'string' ? r.short_key : '',
        grants: Array.isArray(r.grants) ? r.grants.filter((g): g is string => typeof g === 'string') : [],
        subaccountId: owner,
        validIps: Array.isArray(r.valid_ips) ? r.valid_ips.filter((g): g is string => typeof g === 'string') : [],
      });
    }
    return keys;
  }

  /** Limits a subaccount's API key to `validIps` (empty = any address); the key itself stays the same. */
  async updateApiKeyValidIps(subaccountId: number, id: string, validIps: readonly string[]): Promise<void> {
    await this.call({
      method: 'PUT',
      path: `/api-keys/${encodeURIComponent(id)}`,
      subaccount: intId(subaccountId),
      body: { valid_ips: [...validIps] },
    });
  }

  /** Deletes (revokes) an API key of a subaccount. A missing key is a VendorError `not-found`. */
  async deleteApiKey(subaccountId: number, id: string): Promise<void> {
    await this.call({
      method: 'DELETE',
      path: `/api-keys/${encodeURIComponent(id)}`,
      subaccount: intId(subaccountId),
    });
  }

  // ---------------------------------------------------------------- data privacy

  /** Files a right-to-be-forgotten request for recipients of one subaccount (at most 1000). */
  async createRtbfRequest(subaccountId: number, recipients: string[]): Promise<void> {
    await this.privacy('/data-privacy/rtbf-request', subaccountId, recipients);
  }

  /** Files an opt-out request for recipients of one subaccount (at most 1000). */
  async createOptOutRequest(subaccountId: number, recipients: string[]): Promise<void> {
    await this.privacy('/data-privacy/opt-out-request', subaccountId, recipients);
  }

  private async privacy(path: string, subaccountId: number, recipients: string[]): Promise<void> {
    if (recipients.length === 0 || recipients.length > MAX_PRIVACY_RECIPIENTS) {
      throw new VendorError({
        vendor: 'sparkpost',
        kind: 'invalid',
        message: `SparkPost POST ${path}: needs 1 to ${MAX_PRIVACY_RECIPIENTS} recipients, got ${recipients.length}.`,
      });
    }
    await this.call({
      method: 'POST',
      path,
      subaccount: intId(subaccountId),
      body: { recipients, include_subaccounts: false },
    });
  }

  // ---------------------------------------------------------------- metrics and events

  /** Aggregated deliverability metrics (primary and all subaccounts, or one subaccount). Missing metrics are 0. */
  async getDeliverability(q: {
    subaccountId?: number;
    from: string;
    to?: string;
    metrics: string[];
  }): Promise<Record<string, number>> {
    const spec: CallSpec = {
      method: 'GET',
      path: '/metrics/deliverability',
      query: {
        from: metricsTime(q.from, 'from'),
        to: q.to === undefined ? undefined : metricsTime(q.to, 'to'),
        metrics: q.metrics.join(','),
        subaccounts: q.subaccountId === undefined ? undefined : intId(q.subaccountId),
      },
    };
    const results = this.results(spec, await this.call(spec));
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    const out: Record<string, number> = {};
    for (const m of q.metrics) out[m] = 0;
    Object.assign(out, numbers(obj(results[0]) ?? {}));
    return out;
  }

  /** One row of deliverability metrics per subaccount (`subaccount_id` 0 is the primary account). */
  async getDeliverabilityBySubaccount(q: {
    from: string;
    to?: string;
    metrics: string[];
    limit?: number;
  }): Promise<Array<Record<string, number> & { subaccount_id: number }>> {
    const spec: CallSpec = {
      method: 'GET',
      path: '/metrics/deliverability/subaccount',
      query: {
        from: metricsTime(q.from, 'from'),
        to: q.to === undefined ? undefined : metricsTime(q.to, 'to'),
        metrics: q.metrics.join(','),
        limit: q.limit,
      },
    };
    const results = this.results(spec, await this.call(spec));
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    return results.map((raw) => {
      const row = numbers(obj(raw) ?? {});
      const subaccountId = row.subaccount_id ?? 0;
      for (const m of q.metrics) row[m] ??= 0;
      return { ...row, subaccount_id: subaccountId };
    });
  }

  /**
   * Unique recipients (`rcpt_to`) of a subaccount's message events over every page. Events are kept 10 days,
   * so `from` defaults to that horizon (SparkPost itself would default to the last 24 hours).
   */
  async listMessageEventRecipients(q: {
    subaccountId: number;
    from?: string;
    to?: string;
    perPage?: number;
    maxPages?: number;
  }): Promise<string[]> {
    const perPage = Math.min(MAX_EVENTS_PAGE, Math.max(1, Math.floor(q.perPage ?? 1000)));
    const maxPages = Math.max(1, Math.floor(q.maxPages ?? DEFAULT_EVENT_PAGES));
    const from = q.from === undefined ? new Date(Date.now() - EVENTS_RETENTION_MS).toISOString() : q.from;
    let spec: CallSpec = {
      method: 'GET',
      path: '/events/message',
      query: {
        subaccounts: intId(q.subaccountId),
        from: eventsTime(from, 'from'),
        to: q.to === undefined ? undefined : eventsTime(q.to, 'to'),
        per_page: perPage,
        cursor: 'initial',
      },
    };
    const recipients = new Set<string>();
    for (let page = 0; page < maxPages; page++) {
      const body = await this.call(spec);
      const results = this.results(spec, body);
      if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
      for (const e of results) {
        const rcpt = obj(e)?.rcpt_to;
        if (typeof rcpt === 'string' && rcpt !== '') recipients.add(rcpt);
      }
      const next = obj(obj(body)?.links)?.next;
      if (next === undefined || next === null || next === '') return [...recipients];
      if (typeof next !== 'string') throw this.malformed(spec, 'links.next is not a string');
      spec = { method: 'GET', path: this.resolveNext(spec, next) };
    }
    // A partial list would silently skip people (e.g. in a GDPR deletion): fail instead.
    throw new VendorError({
      vendor: 'sparkpost',
      kind: 'invalid',
      message: `SparkPost GET /events/message: more than ${maxPages} pages of events; narrow from/to or raise maxPages.`,
    });
  }

  // ---------------------------------------------------------------- sending domains and ip pools

  /** Creates a sending domain owned by a subaccount, with a generated 2048-bit DKIM key. */
  async createSendingDomain(
    subaccountId: number,
    domain: string,
  ): Promise<{ domain: string; dkim?: SendingDomainDkim }> {
    const spec: CallSpec = {
      method: 'POST',
      path: '/sending-domains',
      subaccount: intId(subaccountId),
      body: { domain, generate_dkim: true, dkim_key_length: 2048, shared_with_subaccounts: false },
    };
    const r = obj(this.results(spec, await this.call(spec)));
    if (!r) throw this.malformed(spec, 'results is not an object');
    const dkim = obj(r.dkim);
    return {
      domain: typeof r.domain === 'string' ? r.domain : domain,
      ...(dkim
        ? {
            dkim: {
              selector: this.str(spec, dkim.selector, 'dkim.selector'),
              public: this.str(spec, dkim.public, 'dkim.public'),
              headers: typeof dkim.headers === 'string' ? dkim.headers : '',
            },
          }
        : {}),
    };
  }

  /** Reads a subaccount's sending domain and its verification state. */
  async getSendingDomain(
    subaccountId: number,
    domain: string,
  ): Promise<{ domain: string; status: SendingDomainStatus }> {
    const spec: CallSpec = {
      method: 'GET',
      path: `/sending-domains/${encodeURIComponent(domain)}`,
      subaccount: intId(subaccountId),
    };
    const r = obj(this.results(spec, await this.call(spec)));
    if (!r) throw this.malformed(spec, 'results is not an object');
    const status = obj(r.status);
    if (!status) throw this.malformed(spec, 'status is not an object');
    return {
      domain: typeof r.domain === 'string' ? r.domain : domain,
      status: {
        ownership_verified: status.ownership_verified === true,
        dkim_status: typeof status.dkim_status === 'string' ? status.dkim_status : 'unverified',
        compliance_status: typeof status.compliance_status === 'string' ? status.compliance_status : 'pending',
      },
    };
  }

  /** Asks SparkPost to check the domain's DKIM record now. A failed check is a result, not an error. */
  async verifySendingDomain(
    subaccountId: number,
    domain: string,
  ): Promise<{ ownership_verified: boolean; dkim_status: string }> {
    const spec: CallSpec = {
      method: 'POST',
      path: `/sending-domains/${encodeURIComponent(domain)}/verify`,
      subaccount: intId(subaccountId),
      body: { dkim_verify: true },
    };
    const r = obj(this.results(spec, await this.call(spec)));
    if (!r) throw this.malformed(spec, 'results is not an object');
    return {
      ownership_verified: r.ownership_verified === true,
      dkim_status: typeof r.dkim_status === 'string' ? r.dkim_status : 'unverified',
    };
  }

  /** Deletes a subaccount's sending domain. */
  async deleteSendingDomain(subaccountId: number, domain: string): Promise<void> {
    await this.call({
      method: 'DELETE',
      path: `/sending-domains/${encodeURIComponent(domain)}`,
      subaccount: intId(subaccountId),
    });
  }

  /** Creates an IP pool; SparkPost derives its id from the name. */
  async createIpPool(name: string): Promise<{ id: string }> {
    const spec: CallSpec = { method: 'POST', path: '/ip-pools', body: { name } };
    return { id: this.str(spec, obj(this.results(spec, await this.call(spec)))?.id, 'id') };
  }

  /** Every IP pool of the account. */
  async listIpPools(): Promise<Array<{ id: string; name: string }>> {
    const spec: CallSpec = { method: 'GET', path: '/ip-pools' };
    const results = this.results(spec, await this.call(spec));
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    return results.map((raw) => {
      const r = obj(raw);
      const id = this.str(spec, r?.id, 'id');
      return { id, name: typeof r?.name === 'string' ? r.name : id };
    });
  }

  // ---------------------------------------------------------------- webhooks (issue 13)

  /**
   * Creates a webhook of the primary account (it receives every subaccount's events). SparkPost first posts a test
   * batch to the target and fails the create unless it answers 200. The credentials are sent, never echoed.
   */
  async createWebhook(w: {
    name: string;
    target: string;
    events: string[];
    basicAuth?: { username: string; password: string };
  }): Promise<{ id: string }> {
    const spec: CallSpec = {
      method: 'POST',
      path: '/webhooks',
      body: {
        name: w.name,
        target: w.target,
        events: w.events,
        ...(w.basicAuth ? { auth_type: 'basic', auth_credentials: w.basicAuth } : { auth_type: 'none' }),
      },
    };
    return { id: this.str(spec, obj(this.results(spec, await this.call(spec)))?.id, 'id') };
  }

  /** The primary account's webhooks (id, name, target, events). */
  async listWebhooks(): Promise<Array<{ id: string; name: string; target: string; events: string[] }>> {
    const spec: CallSpec = { method: 'GET', path: '/webhooks', subaccount: 0 };
    const results = this.results(spec, await this.call(spec));
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    return results.map((raw) => {
      const r = obj(raw);
      return {
        id: this.str(spec, r?.id, 'id'),
        name: typeof r?.name === 'string' ? r.name : '',
        target: typeof r?.target === 'string' ? r.target : '',
        events: Array.isArray(r?.events) ? r.events.filter((e): e is string => typeof e === 'string') : [],
      };
    });
  }

  /** Deletes a webhook of the primary account. */
  async deleteWebhook(id: string): Promise<void> {
    await this.call({ method: 'DELETE', path: `/webhooks/${encodeURIComponent(id)}` });
  }

  // ---------------------------------------------------------------- suppression list and message events (issue 11)

  /** A recipient's suppression entries in one subaccount (one per type); [] when it is not listed. */
  async getSuppression(subaccountId: number, recipient: string): Promise<SuppressionEntry[]> {
    const spec: CallSpec = {
      method: 'GET',
      path: `/suppression-list/${encodeURIComponent(recipient)}`,
      shown: '/suppression-list/[address]',
      subaccount: intId(subaccountId),
    };
    let body: unknown;
    try {
      body = await this.call(spec);
    } catch (err) {
      if (err instanceof VendorError && err.kind === 'not-found') return [];
      throw err;
    }
    const results = this.results(spec, body);
    if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
    return results.map((r) => this.suppression(spec, r, subaccountId));
  }

  /**
   * A subaccount's suppression list through every page, optionally filtered by sources, types and the time an
   * entry was last updated. More than `maxPages` pages fails rather than returning part of the list.
   */
  async searchSuppressions(q: {
    subaccountId: number;
    sources?: readonly string[];
    types?: ReadonlyArray<'transactional' | 'non_transactional'>;
    from?: string;
    to?: string;
    perPage?: number;
    maxPages?: number;
  }): Promise<SuppressionEntry[]> {
    const perPage = Math.min(MAX_SUPPRESSION_PAGE, Math.max(1, Math.floor(q.perPage ?? 1000)));
    const maxPages = Math.max(1, Math.floor(q.maxPages ?? DEFAULT_EVENT_PAGES));
    const subaccount = intId(q.subaccountId);
    let spec: CallSpec = {
      method: 'GET',
      path: '/suppression-list',
      subaccount,
      query: {
        sources: q.sources?.length ? q.sources.join(',') : undefined,
        types: q.types?.length ? q.types.join(',') : undefined,
        from: q.from === undefined ? undefined : eventsTime(q.from, 'from'),
        to: q.to === undefined ? undefined : eventsTime(q.to, 'to'),
        per_page: perPage,
        cursor: 'initial',
      },
    };
    const out: SuppressionEntry[] = [];
    for (let page = 0; page < maxPages; page++) {
      const body = await this.call(spec);
      const results = this.results(spec, body);
      if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
      for (const r of results) out.push(this.suppression(spec, r, subaccount));
      const next = obj(obj(body)?.links)?.next;
      if (next === undefined || next === null || next === '') return out;
      if (typeof next !== 'string') throw this.malformed(spec, 'links.next is not a string');
      spec = { method: 'GET', path: this.resolveNext(spec, next), subaccount };
    }
    throw new VendorError({
      vendor: 'sparkpost',
      kind: 'invalid',
      message: `SparkPost GET /suppression-list: more than ${maxPages} pages of entries; raise maxPages.`,
    });
  }

  /**
   * Removes a recipient from one subaccount's suppression list (all types, or one). Returns false when it was not
   * listed (idempotent). An entry SparkPost keeps for compliance is a VendorError `forbidden` (403).
   */
  async deleteSuppression(
    subaccountId: number,
    recipient: string,
    type?: 'transactional' | 'non_transactional',
  ): Promise<boolean> {
    try {
      await this.call({
        method: 'DELETE',
        path: `/suppression-list/${encodeURIComponent(recipient)}`,
        shown: '/suppression-list/[address]',
        subaccount: intId(subaccountId),
        ...(type ? { body: { type } } : {}),
      });
      return true;
    } catch (err) {
      if (err instanceof VendorError && err.kind === 'not-found') return false;
      throw err;
    }
  }

  /**
   * A subaccount's message events through every page, newest first, optionally only of some recipients and event
   * types. `from` defaults to the 10-day retention horizon. More than `maxPages` pages fails rather than returning
   * part of them. Recipients travel in the query string, which errors never show.
   */
  async searchMessageEvents(q: {
    subaccountId: number;
    recipients?: readonly string[];
    events?: readonly string[];
    from?: string;
    to?: string;
    perPage?: number;
    maxPages?: number;
  }): Promise<MessageEvent[]> {
    const perPage = Math.min(MAX_EVENTS_PAGE, Math.max(1, Math.floor(q.perPage ?? 1000)));
    const maxPages = Math.max(1, Math.floor(q.maxPages ?? DEFAULT_EVENT_PAGES));
    const from = q.from === undefined ? new Date(Date.now() - MESSAGE_EVENTS_RETENTION_MS).toISOString() : q.from;
    let spec: CallSpec = {
      method: 'GET',
      path: '/events/message',
      query: {
        subaccounts: intId(q.subaccountId),
        recipients: q.recipients?.length ? q.recipients.join(',') : undefined,
        events: q.events?.length ? q.events.join(',') : undefined,
        from: eventsTime(from, 'from'),
        to: q.to === undefined ? undefined : eventsTime(q.to, 'to'),
        per_page: perPage,
        cursor: 'initial',
      },
    };
    const out: MessageEvent[] = [];
    for (let page = 0; page < maxPages; page++) {
      const body = await this.call(spec);
      const results = this.results(spec, body);
      if (!Array.isArray(results)) throw this.malformed(spec, 'results is not a list');
      for (const raw of results) {
        const e = obj(raw);
        if (!e) throw this.malformed(spec, 'event is not an object');
        const text = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
        const event: MessageEvent = {
          eventId: this.str(spec, text(e.event_id), 'event_id'),
          type: this.str(spec, e.type, 'type'),
          timestamp: this.str(spec, e.timestamp, 'timestamp'),
          recipient: typeof e.rcpt_to === 'string' ? e.rcpt_to : '',
          subaccountId: e.subaccount_id === undefined ? 0 : this.num(spec, e.subaccount_id, 'subaccount_id'),
        };
        const optional: Array<[keyof MessageEvent, unknown]> = [
          ['bounceClass', e.bounce_class],
          ['reason', e.reason],
          ['rawReason', e.raw_reason],
          ['errorCode', e.error_code],
          ['messageId', e.message_id],
          ['subject', e.subject],
          ['friendlyFrom', e.friendly_from],
        ];
        for (const [k, v] of optional) {
          const t = text(v);
          if (t !== undefined) (event as unknown as Record<string, string>)[k] = t;
        }
        out.push(event);
      }
      const next = obj(obj(body)?.links)?.next;
      if (next === undefined || next === null || next === '') return out;
      if (typeof next !== 'string') throw this.malformed(spec, 'links.next is not a string');
      spec = { method: 'GET', path: this.resolveNext(spec, next) };
    }
    throw new VendorError({
      vendor: 'sparkpost',
      kind: 'invalid',
      message: `SparkPost GET /events/message: more than ${maxPages} pages of events; narrow from/to or raise maxPages.`,
    });
  }

  private suppression(spec: CallSpec, raw: unknown, subaccountId: number): SuppressionEntry {
    const r = obj(raw);
    if (!r) throw this.malformed(spec, 'suppression entry is not an object');
    const type = r.type === 'non_transactional' ? 'non_transactional' : 'transactional';
    const entry: SuppressionEntry = {
      recipient: this.str(spec, r.recipient, 'recipient'),
      type,
      source: typeof r.source === 'string' ? r.source : 'Manually Added',
      description: typeof r.description === 'string' ? r.description : '',
      subaccountId: r.subaccount_id === undefined ? subaccountId : this.num(spec, r.subaccount_id, 'subaccount_id'),
    };
    if (typeof r.created === 'string') entry.created = r.created;
    if (typeof r.updated === 'string') entry.updated = r.updated;
    return entry;
  }

  // ---------------------------------------------------------------- end of suppression list and message events

  // ---------------------------------------------------------------- plumbing

  /** Performs one request and returns its parsed JSON body (undefined when empty), or throws a VendorError. */
  private async call(spec: CallSpec): Promise<unknown> {
    const url = spec.path.startsWith('http') ? new URL(spec.path) : new URL(this.base.href + spec.path);
    for (const [k, v] of Object.entries(spec.query ?? {})) {
      if (v !== undefined && v !== '') url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { Authorization: this.apiKey, Accept: 'application/json' };
    if (spec.body !== undefined) headers['Content-Type'] = 'application/json';
    if (spec.subaccount !== undefined) headers['X-MSYS-SUBACCOUNT'] = String(spec.subaccount);
    let res;
    try {
      res = await this.http.request<string>({
        method: spec.method,
        url: url.href,
        headers,
        data: spec.body === undefined ? undefined : JSON.stringify(spec.body),
      });
    } catch (err) {
      // Never pass the axios error on: its config holds the Authorization header.
      const code = (err as { code?: unknown } | null)?.code;
      const why =
        code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? `timed out after ${this.timeoutMs} ms` : 'network error';
      throw new VendorError({
        vendor: 'sparkpost',
        kind: 'unavailable',
        ...(code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? { code: TIMEOUT_CODE } : {}),
        message: `SparkPost ${spec.method} ${this.display(spec)}: ${why}${typeof code === 'string' ? ` (${code})` : ''}.`,
      });
    }
    const text = typeof res.data === 'string' ? res.data : '';
    let body: unknown;
    let parsed = true;
    if (text.trim() !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        parsed = false;
      }
    }
    if (res.status >= 200 && res.status < 300) {
      if (!parsed) throw this.malformed(spec, `${res.status} response is not JSON`);
      return body;
    }
    const status = res.status;
    const httpKind = kindForHttpStatus(status);
    let kind: VendorErrorKind = httpKind;
    let detail: string;
    let code: string | undefined;
    const first = obj(Array.isArray(obj(body)?.errors) ? (obj(body)?.errors as unknown[])[0] : undefined);
    if (!parsed) {
      // An HTML page from a proxy in front of SparkPost: the status of a 5xx/429 still says what happened.
      if (!(status >= 500 || status === 429)) kind = 'malformed';
      const ct = String(res.headers['content-type'] ?? 'unknown type').split(';')[0];
      detail = `${res.statusText || 'error'} (non-JSON ${ct} body)`;
    } else if (first) {
      code = first.code === undefined || first.code === null ? undefined : String(first.code);
      const message = typeof first.message === 'string' ? first.message : '';
      const description = typeof first.description === 'string' ? first.description : '';
      detail = [message, description && description !== message ? description : ''].filter(Boolean).join(' ');
      if (typeof first.param === 'string') detail += ` (param ${first.param})`;
      if (!detail) detail = res.statusText || 'error';
      // `value` and `recipient` are left out on purpose: they can be personal data.
    } else {
      detail = res.statusText || 'error';
    }
    throw new VendorError({
      vendor: 'sparkpost',
      kind,
      status,
      code,
      message: `SparkPost ${spec.method} ${this.display(spec)}: ${status} ${this.clean(detail)}`,
      retryAfterMs:
        status === 429 || status === 503 ? parseRetryAfter(headerValue(res.headers['retry-after'])) : undefined,
    });
  }

  /** `results` of a successful body, or a malformed error. */
  private results(spec: CallSpec, body: unknown): unknown {
    const b = obj(body);
    if (!b || !('results' in b)) throw this.malformed(spec, 'response has no results');
    return b.results;
  }

  private subaccount(spec: CallSpec, raw: unknown): Subaccount {
    const r = obj(raw);
    if (!r) throw this.malformed(spec, 'subaccount is not an object');
    const status = r.status;
    if (typeof status !== 'string' || !STATUSES.includes(status as SubaccountStatus)) {
      throw this.malformed(spec, 'subaccount has an unknown status');
    }
    const s: Subaccount = {
      id: this.num(spec, r.id, 'id'),
      name: this.str(spec, r.name, 'name'),
      status: status as SubaccountStatus,
      complianceStatus: typeof r.compliance_status === 'string' ? r.compliance_status : 'active',
    };
    if (typeof r.ip_pool === 'string' && r.ip_pool !== '') s.ipPool = r.ip_pool;
    return s;
  }

  /**
   * `links.next` is a path from the origin (`/api/v1/...`), not from the base URL. It must stay on the same
   * origin: following it elsewhere would send the API key to another host.
   */
  private resolveNext(spec: CallSpec, next: string): string {
    let url: URL;
    try {
      url = new URL(next, this.base.origin);
    } catch {
      throw this.malformed(spec, 'links.next is not a URL');
    }
    if (url.origin !== this.base.origin) throw this.malformed(spec, 'links.next points to another origin');
    return url.href;
  }

  /** The path shown in errors: relative to the base URL, without any query (it may hold names or addresses). */
  private display(spec: CallSpec): string {
    if (spec.shown !== undefined) return spec.shown;
    if (!spec.path.startsWith('http')) return spec.path;
    const p = new URL(spec.path).pathname;
    return p.startsWith(this.base.pathname) ? p.slice(this.base.pathname.length) || '/' : p;
  }

  private malformed(spec: CallSpec, what: string): VendorError {
    return new VendorError({
      vendor: 'sparkpost',
      kind: 'malformed',
      message: `SparkPost ${spec.method} ${this.display(spec)}: unexpected response: ${what}.`,
    });
  }

  private str(spec: CallSpec, v: unknown, field: string): string {
    if (typeof v !== 'string' || v === '') throw this.malformed(spec, `${field} is not a string`);
    return v;
  }

  private num(spec: CallSpec, v: unknown, field: string): number {
    const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw this.malformed(spec, `${field} is not an integer`);
    return n;
  }

  /** One line, no credential, no e-mail address (personal data), bounded length. */
  private clean(text: string): string {
    let t = text.replace(/\s+/g, ' ').trim();
    if (this.apiKey) t = t.split(this.apiKey).join('[redacted]');
    t = replaceAddresses(t);
    if (t.length > MAX_DETAIL_CHARS) t = `${t.slice(0, MAX_DETAIL_CHARS)}…`;
    return t;
  }
}

function obj(v: unknown): Json | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}

/** The numeric fields of a metrics row (SparkPost sends numbers; numeric strings are tolerated). */
function numbers(row: Json): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(row)) {
    const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
    if (typeof n === 'number' && Number.isFinite(n)) out[k] = n;
  }
  return out;
}

function headerValue(v: unknown): string | undefined {
  if (Array.isArray(v)) return v.length ? String(v[0]) : undefined;
  return v === undefined || v === null ? undefined : String(v);
}

/** Ids go into paths and headers: refuse anything but a non-negative integer before sending. */
function intId(id: number): number {
  if (!Number.isSafeInteger(id) || id < 0) {
    throw new VendorError({ vendor: 'sparkpost', kind: 'invalid', message: `SparkPost: invalid subaccount id ${id}.` });
  }
  // Id 0 is the primary account: a subaccount-scoped call with it would act on the whole account.
  if (id === 0) {
    throw new VendorError({
      vendor: 'sparkpost',
      kind: 'invalid',
      code: 'primary-account',
      message: "SparkPost: subaccount id 0 is SparkPost's primary account, refused for a subaccount-scoped call.",
    });
  }
  return id;
}

function parseTime(value: string, name: string): Date {
  // SparkPost's own format has no zone and means UTC.
  const v = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(value) ? `${value}Z` : value;
  const t = Date.parse(v);
  if (Number.isNaN(t)) {
    throw new VendorError({ vendor: 'sparkpost', kind: 'invalid', message: `SparkPost: invalid ${name} time.` });
  }
  return new Date(t);
}

/** Metrics take `YYYY-MM-DDTHH:MM` (UTC). */
function metricsTime(value: string, name: string): string {
  return parseTime(value, name).toISOString().slice(0, 16);
}

/** Events take `YYYY-MM-DDTHH:MM:ssZ`. */
function eventsTime(value: string, name: string): string {
  return `${parseTime(value, name).toISOString().slice(0, 19)}Z`;
}
