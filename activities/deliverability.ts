/**
 * Deliverability activities: SparkPost metrics for one instance or the fleet, the instances whose bounce alert is
 * raised (Temporal visibility), and the alert webhook. Built from injected clients like createActivities.
 *
 * The webhook URL is treated as a credential (a Slack incoming-webhook URL is one): it can come from Secret
 * Manager, and no error, log line or result ever holds it.
 */
import { ApplicationFailure } from '@temporalio/common';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import axios from 'axios';
import { instanceFromWorkflowId, workflowIdFor } from '../lib/instance';
import { BOUNCE_ALERT_KEY, PROTECTION_KEY, RUNNING_ENTITIES_QUERY } from '../lib/search-attributes';
import type { SecretStore } from '../vendors/secret-manager';
import type { SparkPostClient, Subaccount } from '../vendors/sparkpost';
import { bounceRateOf, MAX_NOTABLE_ROWS, STATS_PAGE_ROWS, sumFigures } from '../contract/deliverability';
import type {
  AlertWebhookInput,
  DeliverabilityActivities,
  DeliverabilityFigures,
  FleetDeliverability,
  FleetDeliverabilityInput,
  FleetRow,
  InstanceDeliverabilityInput,
} from '../workflows/deliverability';
import { withFailureMapping } from './failures';

/** Accepted messages included per month in the SparkPost plan (shared reference). */
export const PLAN_INCLUDED_ACCEPTED = 250_000;
/** ApplicationFailure type of a webhook that did not answer 2xx (retryable). */
export const ALERT_WEBHOOK_FAILED = 'AlertWebhookFailed';
/** ApplicationFailure type of a webhook that cannot be posted to at all (no URL, bad URL, no secret store). */
export const ALERT_WEBHOOK_UNUSABLE = 'AlertWebhookUnusable';
/** ApplicationFailure type of an activity whose dependency the worker did not inject. */
export const NOT_CONFIGURED = 'NotConfigured';

/** How long one webhook POST may take. */
const WEBHOOK_TIMEOUT_MS = 10_000;
/** SparkPost's largest by-subaccount page. */
const METRICS_ROW_LIMIT = 10_000;
/** Bound on flagged instances listed (a fleet is far smaller). */
const MAX_FLAGGED = 10_000;
/** Describes in flight at once when confirming flags. */
const CONFIRM_CONCURRENCY = 10;

const METRICS = ['count_targeted', 'count_accepted', 'count_delivered', 'count_bounce', 'count_hard_bounce'];

/** The SparkPost calls these activities make. */
export type DeliverabilitySparkPostApi = Pick<
  SparkPostClient,
  'getDeliverability' | 'getDeliverabilityBySubaccount' | 'listSubaccounts'
>;

/** Posts a JSON body to a webhook; throws on anything but 2xx, with a message that holds no URL. */
export interface WebhookPoster {
  post(url: string, body: unknown): Promise<void>;
}

/** What the deliverability activities need. */
export interface DeliverabilityDeps {
  sparkpost: DeliverabilitySparkPostApi;
  /** Default: axios POST with a 10 s timeout (axiosWebhookPoster). */
  webhook?: WebhookPoster;
  /** Temporal client for visibility (flaggedInstances); without it that activity fails, non-retryable. */
  temporal?: Client;
  /** Reads the webhook URL when it is given as a Secret Manager version. */
  secrets?: Pick<SecretStore, 'access'>;
  /** Clock for the plan's month (tests). */
  now?: () => Date;
}

/** An error of the webhook poster. Its message never holds the URL. */
export class WebhookError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'WebhookError';
  }
}

/** The default poster: JSON over axios, 10 s timeout, no redirects (they could carry the body elsewhere). */
export const axiosWebhookPoster: WebhookPoster = {
  async post(url, body) {
    let res;
    try {
      res = await axios.post(url, JSON.stringify(body), {
        timeout: WEBHOOK_TIMEOUT_MS,
        maxRedirects: 0,
        validateStatus: () => true,
        headers: { 'Content-Type': 'application/json' },
        responseType: 'text',
        transformResponse: [(d: unknown) => d],
      });
    } catch (err) {
      // Never pass the axios error on: its message and config hold the URL.
      const code = (err as { code?: unknown } | null)?.code;
      const why =
        code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? `timed out after ${WEBHOOK_TIMEOUT_MS} ms` : 'network error';
      throw new WebhookError(`${why}${typeof code === 'string' ? ` (${code})` : ''}`);
    }
    if (res.status >= 200 && res.status < 300) return;
    // Slack answers a short code (`invalid_payload`, `no_service`...): worth showing, and it cannot hold the URL.
    const said = typeof res.data === 'string' && /^[\w .:-]{1,80}$/.test(res.data.trim()) ? `: ${res.data.trim()}` : '';
    throw new WebhookError(`answered HTTP ${res.status}${said}`, res.status);
  },
};

function figuresOf(row: Record<string, number>): DeliverabilityFigures {
  const f = {
    accepted: row.count_accepted ?? 0,
    delivered: row.count_delivered ?? 0,
    bounces: row.count_bounce ?? 0,
    hardBounces: row.count_hard_bounce ?? 0,
    targeted: row.count_targeted ?? 0,
  };
  return { ...f, bounceRate: bounceRateOf(f) };
}

/** Rows in instance order (paging by the last instance read depends on it). */
function byInstance(a: FleetRow, b: FleetRow): number {
  return a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0;
}

/** The subaccount that stands for an instance when names repeat: active before suspended, then the newest. */
function preferred(a: Subaccount, b: Subaccount): Subaccount {
  const active = (s: Subaccount) => (s.status === 'active' ? 1 : 0);
  if (active(a) !== active(b)) return active(a) > active(b) ? a : b;
  return a.id > b.id ? a : b;
}

function webhookUnusable(message: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(message, ALERT_WEBHOOK_UNUSABLE);
}

/** Builds the deliverability activities from injected clients. */
export function createDeliverabilityActivities(deps: DeliverabilityDeps) {
  const { sparkpost } = deps;
  const poster = deps.webhook ?? axiosWebhookPoster;
  const now = deps.now ?? (() => new Date());

  async function webhookUrl(input: AlertWebhookInput): Promise<string> {
    let url = input.url;
    if (!url && input.secret) {
      if (!deps.secrets) throw webhookUnusable('alert webhook: the worker has no Secret Manager client to read it');
      url = (await deps.secrets.access(input.secret)).data.trim();
    }
    if (!url) throw webhookUnusable('alert webhook: neither a URL nor a secret holding one was given');
    let parsed: URL | null = null;
    try {
      parsed = new URL(url);
    } catch {
      // reported below without the value
    }
    if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')) {
      throw webhookUnusable(
        input.url
          ? 'alert webhook: the URL is not an http(s) URL'
          : 'alert webhook: the secret does not hold an http(s) URL',
      );
    }
    return url;
  }

  const activities = {
    async instanceDeliverability(input: InstanceDeliverabilityInput): Promise<DeliverabilityFigures> {
      const row = await sparkpost.getDeliverability({
        subaccountId: input.subaccountId,
        from: input.from,
        to: input.to,
        metrics: METRICS,
      });
      return figuresOf(row);
    },

    async fleetDeliverability(input: FleetDeliverabilityInput): Promise<FleetDeliverability> {
      if (input.page && input.notable) {
        throw ApplicationFailure.nonRetryable('fleetDeliverability: page and notable do not combine', 'InvalidInput');
      }
      const [metricRows, subaccounts] = await Promise.all([
        sparkpost.getDeliverabilityBySubaccount({
          from: input.from,
          to: input.to,
          metrics: input.complaints ? [...METRICS, 'count_spam_complaint'] : METRICS,
          limit: METRICS_ROW_LIMIT,
        }),
        sparkpost.listSubaccounts(),
      ]);
      const byId = new Map(metricRows.map((r) => [r.subaccount_id, r]));
      // The instance is the subaccount's name; terminated subaccounts are history, not instances.
      const live = new Map<string, Subaccount[]>();
      for (const s of subaccounts) {
        if (s.status === 'terminated') continue;
        live.set(s.name, [...(live.get(s.name) ?? []), s]);
      }
      const rows: FleetRow[] = [];
      for (const [instance, subs] of live) {
        // Names are not unique in SparkPost: a repeated name counts all its live subaccounts.
        const figures = sumFigures(subs.map((s) => figuresOf(byId.get(s.id) ?? {})));
        const row: FleetRow = { instance, subaccountId: subs.reduce(preferred).id, ...figures };
        if (input.complaints) {
          row.complaints = subs.reduce((n, s) => n + (byId.get(s.id)?.count_spam_complaint ?? 0), 0);
        }
        rows.push(row);
      }
      rows.sort(byInstance);

      let plan: FleetDeliverability['plan'] = null;
      if (input.plan !== false) {
        const t = now();
        const monthStart = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), 1)).toISOString();
        const all = await sparkpost.getDeliverability({ from: monthStart, metrics: ['count_accepted'] });
        const accepted = all.count_accepted ?? 0;
        plan = {
          included: PLAN_INCLUDED_ACCEPTED,
          from: monthStart,
          accepted,
          usedFraction: accepted / PLAN_INCLUDED_ACCEPTED,
        };
      }
      if (input.page) {
        // SparkPost cannot page by-subaccount metrics by name: every page reads them all and returns its slice.
        const size = Math.max(1, Math.min(STATS_PAGE_ROWS, Math.floor(input.page.size) || 1));
        const after = input.page.after;
        const start = after === null ? 0 : rows.findIndex((r) => r.instance > after);
        const page = start < 0 ? [] : rows.slice(start, start + size);
        const more = start >= 0 && start + size < rows.length;
        const next = more ? page[page.length - 1].instance : null;
        return { rows: page, totals: sumFigures(rows), plan, listed: rows.length, next };
      }
      if (!input.notable) return { rows, totals: sumFigures(rows), plan };
      const { minAccepted, thresholdRate, include } = input.notable;
      const limit = Math.max(1, Math.min(MAX_NOTABLE_ROWS, Math.floor(input.notable.limit ?? MAX_NOTABLE_ROWS) || 1));
      const named = new Set(include);
      const first = (r: FleetRow) =>
        named.has(r.instance) || (r.accepted >= minAccepted && r.bounceRate >= thresholdRate);
      const noisy = (r: FleetRow) => r.hardBounces > 0 || (r.complaints ?? 0) > 0;
      const ranked = [
        ...rows.filter(first),
        ...rows
          .filter((r) => !first(r) && noisy(r))
          .sort((a, b) => b.hardBounces + (b.complaints ?? 0) - (a.hardBounces + (a.complaints ?? 0))),
      ];
      const kept = ranked.slice(0, limit);
      kept.sort(byInstance);
      return { rows: kept, totals: sumFigures(rows), plan, listed: rows.length, omitted: ranked.length - kept.length };
    },

    async flaggedInstances(input: { confirm?: string[]; listed?: string[] } = {}): Promise<string[]> {
      const temporal = deps.temporal;
      if (!temporal) {
        throw ApplicationFailure.nonRetryable('flaggedInstances: the worker has no Temporal client', NOT_CONFIGURED);
      }
      const candidates = new Set<string>(input.listed?.slice(0, MAX_FLAGGED));
      const query = `${RUNNING_ENTITIES_QUERY} AND ${BOUNCE_ALERT_KEY.name} = true`;
      if (!input.listed) {
        for await (const wf of temporal.workflow.list({ query })) {
          const name = instanceFromWorkflowId(wf.workflowId);
          if (name) candidates.add(name);
          if (candidates.size >= MAX_FLAGGED) break;
        }
      }
      for (const name of input.confirm ?? []) candidates.add(name);
      // Visibility lags behind the flag by a moment: describe reads the execution itself, so a flag set or cleared
      // just before is seen as it is and a raise or a clear is never announced twice. Flagged and crossing
      // instances are few, so one describe each is cheap.
      const names = [...candidates];
      const flagged: string[] = [];
      for (let i = 0; i < names.length; i += CONFIRM_CONCURRENCY) {
        const batch = names.slice(i, i + CONFIRM_CONCURRENCY);
        const found = await Promise.all(
          batch.map(async (name) => {
            try {
              const d = await temporal.workflow.getHandle(workflowIdFor(name)).describe();
              return d.status.name === 'RUNNING' && d.typedSearchAttributes.get(BOUNCE_ALERT_KEY) === true;
            } catch (err) {
              if (err instanceof WorkflowNotFoundError) return false;
              throw err;
            }
          }),
        );
        batch.forEach((name, j) => found[j] && flagged.push(name));
      }
      return flagged.sort();
    },

    async protectedInstances(): Promise<string[]> {
      const temporal = deps.temporal;
      if (!temporal) {
        throw ApplicationFailure.nonRetryable('protectedInstances: the worker has no Temporal client', NOT_CONFIGURED);
      }
      const query =
        `${RUNNING_ENTITIES_QUERY} AND ` +
        `${PROTECTION_KEY.name} IN ('warning', 'quarantined', 'suspended', 'severe')`;
      const names = new Set<string>();
      for await (const wf of temporal.workflow.list({ query })) {
        const name = instanceFromWorkflowId(wf.workflowId);
        if (name) names.add(name);
        if (names.size >= MAX_FLAGGED) break;
      }
      return [...names].sort();
    },

    async postAlertWebhook(input: AlertWebhookInput): Promise<void> {
      if (typeof input?.text !== 'string' || input.text === '') throw webhookUnusable('alert webhook: empty text');
      const url = await webhookUrl(input);
      const body: Record<string, unknown> = { text: input.text };
      if (input.blocks?.length) body.blocks = input.blocks;
      try {
        await poster.post(url, body);
      } catch (err) {
        const said = err instanceof Error ? err.message : String(err);
        // A custom poster might still quote the URL: cut it out, whole and as its path.
        const path = new URL(url).pathname;
        const clean = said
          .split(url)
          .join('[webhook]')
          .split(path.length > 1 ? path : '\u0000')
          .join('[webhook]');
        throw ApplicationFailure.create({ message: `alert webhook ${clean}`, type: ALERT_WEBHOOK_FAILED });
      }
    },
  } satisfies DeliverabilityActivities;
  return withFailureMapping(activities);
}

/** The deliverability activities as registered on a worker. */
export type DeliverabilityActivityFunctions = ReturnType<typeof createDeliverabilityActivities>;
