/**
 * SparkPost webhooks in the emulator (sparkpost.md, "webhooks"): `POST /webhooks` sends a test batch `[{"msys":{}}]`
 * to the target and fails the create unless it answers 200; afterwards every new event in the webhook's scope (a
 * subaccount's own, or everything for a primary-account webhook) is posted in JSON-array batches with an
 * `X-MessageSystems-Batch-ID` header and the webhook's basic auth, 10 s timeout, retried with the same batch id on
 * anything but 2xx, as SparkPost does (for 8 hours there; the delays are configurable here). Batches are delivered
 * one at a time per webhook, in order.
 */
import { randomUUID } from 'node:crypto';

/** A webhook as stored (credentials included: this is the vendor's side). */
export interface WebhookRecord {
  id: string;
  name: string;
  target: string;
  /** Event types it wants; empty = all. */
  events: string[];
  auth_type: 'none' | 'basic';
  auth_credentials?: { username: string; password: string };
  /** null for the primary account (receives every subaccount's events too). */
  subaccount_id: number | null;
  active: boolean;
  created: string;
  last_successful?: string;
  last_failure?: string;
}

/** One POST the emulator made to a webhook target. */
export interface WebhookDelivery {
  webhookId: string;
  batchId: string;
  attempt: number;
  events: number;
  at: string;
  /** HTTP status, or 0 when the target could not be reached or timed out. */
  status: number;
}

/** An event as the emulator stores it, enough to route it. */
export interface RoutableEvent {
  type: string;
  subaccount_id: number;
}

/** Options of the dispatcher. */
export interface WebhookDispatcherOptions {
  /** How long events gather before a batch is posted (default 500 ms). */
  batchMs?: number;
  /** Delays between attempts of one batch (default SparkPost-like, compressed: 1 s, 2 s, 5 s, 10 s, 30 s, 60 s…). */
  retryDelaysMs?: number[];
  /** Per-POST timeout (SparkPost: 10 s). */
  timeoutMs?: number;
  /** Largest batch (events). */
  maxBatch?: number;
}

/** Error reply of the API (status and SparkPost-shaped body). */
export interface WebhookReply {
  status: number;
  body?: unknown;
}

const DEFAULT_RETRIES = [1000, 2000, 5000, 10_000, 30_000, 60_000, 60_000, 60_000];
const MAX_DELIVERIES_KEPT = 1000;

/** Which wrapper SparkPost puts an event type under. */
function wrapperOf(type: string): string {
  if (type === 'open' || type === 'click' || type === 'initial_open' || type === 'amp_click') return 'track_event';
  if (type === 'generation_failure' || type === 'generation_rejection') return 'gen_event';
  if (type === 'list_unsubscribe' || type === 'link_unsubscribe') return 'unsubscribe_event';
  return 'message_event';
}

interface Queue {
  pending: Array<Record<string, unknown>>;
  /** A batch being delivered (retried with the same id until 2xx). */
  inFlight: { batchId: string; body: string; attempt: number; events: number } | null;
  timer: NodeJS.Timeout | null;
}

/** Stores webhooks, validates targets on creation, and delivers event batches with retries. */
export class WebhookDispatcher {
  readonly webhooks: WebhookRecord[] = [];
  /** Every POST made, newest last (bounded). */
  readonly deliveries: WebhookDelivery[] = [];
  private readonly queues = new Map<string, Queue>();
  private readonly batchMs: number;
  private readonly retries: number[];
  private readonly timeoutMs: number;
  private readonly maxBatch: number;
  private closed = false;
  private lastBatch: { webhookId: string; batchId: string; body: string; events: number } | null = null;

  constructor(opts: WebhookDispatcherOptions = {}) {
    this.batchMs = opts.batchMs ?? 500;
    this.retries = opts.retryDelaysMs ?? DEFAULT_RETRIES;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxBatch = opts.maxBatch ?? 100;
  }

  /** Public fields of a webhook (credentials masked). */
  json(w: WebhookRecord): Record<string, unknown> {
    return {
      id: w.id,
      name: w.name,
      target: w.target,
      events: w.events,
      auth_type: w.auth_type,
      ...(w.auth_credentials ? { auth_credentials: { username: w.auth_credentials.username, password: '****' } } : {}),
      active: w.active,
      ...(w.last_successful ? { last_successful: w.last_successful } : {}),
      ...(w.last_failure ? { last_failure: w.last_failure } : {}),
    };
  }

  /** Webhooks visible to an account (null: the primary, which sees all). */
  visible(owner: number | null, all: boolean): WebhookRecord[] {
    return this.webhooks.filter((w) => all || w.subaccount_id === owner);
  }

  /**
   * Validates a create body; returns an error reply, or a function that sends the test batch and stores the webhook
   * (the create fails unless the target answers 200).
   */
  prepareCreate(owner: number | null, body: Record<string, unknown>): WebhookReply | (() => Promise<WebhookReply>) {
    const bad = (message: string, param?: string): WebhookReply => ({
      status: 400,
      body: { errors: [{ message, ...(param ? { param } : {}), code: '1400' }] },
    });
    const { name, target, events, auth_type, auth_credentials } = body;
    if (typeof name !== 'string' || name.trim() === '' || name.length > 1024) return bad('name is required', 'name');
    if (typeof target !== 'string' || !URL.canParse(target) || !/^https?:$/.test(new URL(target).protocol)) {
      return bad('target must be an http(s) URL', 'target');
    }
    if (events !== undefined && !(Array.isArray(events) && events.every((e) => typeof e === 'string'))) {
      return bad('events must be a list of event types', 'events');
    }
    const authType = auth_type === undefined ? 'none' : auth_type;
    if (authType !== 'none' && authType !== 'basic') return bad('auth_type must be none or basic', 'auth_type');
    let creds: WebhookRecord['auth_credentials'];
    if (authType === 'basic') {
      const c = auth_credentials as Record<string, unknown> | undefined;
      if (!c || typeof c.username !== 'string' || typeof c.password !== 'string') {
        return bad('basic auth needs auth_credentials.username and password', 'auth_credentials');
      }
      creds = { username: c.username, password: c.password };
    }
    const record: WebhookRecord = {
      id: randomUUID(),
      name,
      target,
      events: (events as string[] | undefined) ?? [],
      auth_type: authType,
      ...(creds ? { auth_credentials: creds } : {}),
      subaccount_id: owner,
      active: true,
      created: new Date().toISOString(),
    };
    return async () => {
      const status = await this.post(record, `test-${randomUUID()}`, JSON.stringify([{ msys: {} }]), 1, 1);
      if (status !== 200) {
        return {
          status: 400,
          body: {
            errors: [
              {
                message: 'invalid data format/type',
                description: `Error while validating the target URL: test batch answered ${status || 'no response'}`,
                code: '1300',
              },
            ],
          },
        };
      }
      this.webhooks.push(record);
      return { status: 200, body: { results: { id: record.id, name: record.name } } };
    };
  }

  /** Deletes a webhook (and its queue). */
  remove(id: string): boolean {
    const i = this.webhooks.findIndex((w) => w.id === id);
    if (i < 0) return false;
    this.webhooks.splice(i, 1);
    const q = this.queues.get(id);
    if (q?.timer) clearTimeout(q.timer);
    this.queues.delete(id);
    return true;
  }

  /** Queues new events (already in SparkPost's JSON shape, `raw` the stored record) for every matching webhook. */
  publish(events: Array<{ raw: RoutableEvent; json: Record<string, unknown> }>): void {
    if (this.closed) return;
    for (const w of this.webhooks) {
      if (!w.active) continue;
      const mine = events.filter(
        (e) =>
          (w.subaccount_id === null || w.subaccount_id === e.raw.subaccount_id) &&
          (w.events.length === 0 || w.events.includes(e.raw.type)),
      );
      if (mine.length === 0) continue;
      const q = this.queue(w.id);
      for (const e of mine) q.pending.push({ msys: { [wrapperOf(e.raw.type)]: e.json } });
      this.schedule(w.id, this.batchMs);
    }
  }

  /** Posts the last delivered batch again with the same batch id, as SparkPost does when it missed the 200. */
  async redeliverLast(): Promise<number> {
    const last = this.lastBatch;
    if (!last) return 0;
    const w = this.webhooks.find((x) => x.id === last.webhookId);
    if (!w) return 0;
    return this.post(w, last.batchId, last.body, 2, last.events);
  }

  /** Stops delivering (pending batches are dropped). */
  close(): void {
    this.closed = true;
    for (const q of this.queues.values()) if (q.timer) clearTimeout(q.timer);
  }

  private queue(id: string): Queue {
    let q = this.queues.get(id);
    if (!q) {
      q = { pending: [], inFlight: null, timer: null };
      this.queues.set(id, q);
    }
    return q;
  }

  private schedule(id: string, delay: number): void {
    const q = this.queue(id);
    if (q.timer || this.closed) return;
    q.timer = setTimeout(() => {
      q.timer = null;
      void this.flush(id);
    }, delay);
    q.timer.unref();
  }

  private async flush(id: string): Promise<void> {
    const w = this.webhooks.find((x) => x.id === id);
    const q = this.queues.get(id);
    if (!w || !q || this.closed) return;
    if (!q.inFlight) {
      if (q.pending.length === 0) return;
      const batch = q.pending.splice(0, this.maxBatch);
      q.inFlight = { batchId: randomUUID(), body: JSON.stringify(batch), attempt: 0, events: batch.length };
    }
    const f = q.inFlight;
    f.attempt++;
    const status = await this.post(w, f.batchId, f.body, f.attempt, f.events);
    if (status >= 200 && status < 300) {
      this.lastBatch = { webhookId: id, batchId: f.batchId, body: f.body, events: f.events };
      q.inFlight = null;
      if (q.pending.length) this.schedule(id, 0);
      return;
    }
    const delay = this.retries[f.attempt - 1];
    if (delay === undefined) {
      q.inFlight = null; // given up, as SparkPost does after 8 hours
      if (q.pending.length) this.schedule(id, 0);
      return;
    }
    this.schedule(id, delay);
  }

  private async post(w: WebhookRecord, batchId: string, body: string, attempt: number, events: number) {
    const headers: Record<string, string> = {
      'Content-Type': 'application/json',
      'User-Agent': 'SparkPost',
      'X-MessageSystems-Batch-ID': batchId,
    };
    if (w.auth_credentials) {
      const { username, password } = w.auth_credentials;
      headers.Authorization = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    }
    let status = 0;
    try {
      const res = await fetch(w.target, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      status = 0;
    }
    const at = new Date().toISOString();
    if (status >= 200 && status < 300) w.last_successful = at;
    else w.last_failure = at;
    this.deliveries.push({ webhookId: w.id, batchId, attempt, events, at, status });
    if (this.deliveries.length > MAX_DELIVERIES_KEPT) this.deliveries.shift();
    return status;
  }
}
