/**
 * `smtpctl stats` (SparkPost figures of one instance; of the fleet, its totals, plan usage and the instances that need
 * attention; with `--all`, every instance's row, page by page) and `smtpctl alerts` (the bounce alert: `schedule`
 * creates or updates the Temporal Schedule, `run-once` runs one pass now and prints what it did).
 *
 * Both run workflows on the worker, which holds the SparkPost key; this process never sees it. The alert webhook URL
 * is a credential: prefer `--webhook-secret` (a Secret Manager version the worker reads), and nothing here ever
 * prints the URL.
 */
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, WorkflowFailedError, type Client } from '@temporalio/client';
import { z } from 'zod';
import { SECRET_VERSION_PATTERN } from '../../lib/instance';
import { stripControlChars } from '../../lib/sanitize';
import { describeFailure } from '../../workflows';
import {
  bounceAlertWorkflow,
  DEFAULT_MIN_ACCEPTED,
  DEFAULT_THRESHOLD_RATE,
  deliverabilityStatsWorkflow,
  fleetStatsPageWorkflow,
  STATS_PAGE_ROWS,
  sumFigures,
  ZERO_FIGURES,
  type BounceAlertInput,
  type BounceAlertSummary,
  type DeliverabilityFigures,
  type DeliverabilityStats,
  type DeliverabilityStatsInput,
  type FleetRow,
  type FleetStatsPage,
  type FleetStatsPageInput,
} from '../../workflows/deliverability';
import type { ManagedSmtpClient } from '../index';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';
import { OperationFailed } from '../errors';
import { SCHEMA_VERSION, withSchemaVersion } from '../schema-version';

/** The Temporal Schedule that runs the bounce alert. */
export const BOUNCE_ALERT_SCHEDULE_ID = 'managed-smtp-bounce-alerts';
/** Default interval between alert runs. */
export const DEFAULT_ALERT_INTERVAL_MS = 15 * 60_000;
/** SparkPost may rate-limit metrics polled more than once in two minutes: runs are at least this far apart. */
const MIN_ALERT_INTERVAL_MS = 2 * 60_000;
/** SparkPost keeps metrics six months: earlier windows would silently read as zero. */
const METRICS_RETENTION_MS = 183 * 24 * 3600_000;
/** How long the CLI waits for a stats or alert run (the activities give up well before). */
const RUN_TIMEOUT = '3 minutes';
/** Most pages `stats --all` reads: 50,000 rows, far past the 10,000 subaccounts one SparkPost metrics read covers. */
export const MAX_STATS_PAGES = 100;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** Options of ensureBounceAlertSchedule. */
export interface BounceAlertScheduleOptions extends BounceAlertInput {
  taskQueue: string;
  /** Default 15 minutes. */
  intervalMs?: number;
  /** Create it paused. */
  paused?: boolean;
}

/** Creates the bounce-alert Schedule, or updates it in place (spec, action, policies) when it exists. */
export async function ensureBounceAlertSchedule(
  client: Client,
  opts: BounceAlertScheduleOptions,
): Promise<{ scheduleId: string; created: boolean }> {
  const { taskQueue, intervalMs = DEFAULT_ALERT_INTERVAL_MS, paused, ...input } = opts;
  const spec = { intervals: [{ every: intervalMs }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: bounceAlertWorkflow,
    args: [input] as [BounceAlertInput],
    taskQueue,
    workflowId: BOUNCE_ALERT_SCHEDULE_ID,
    // A run that cannot finish must not hold the schedule (overlap SKIP) for long.
    workflowExecutionTimeout: '10 minutes',
    staticSummary: 'Managed SMTP bounce alert',
  };
  // SKIP: a run still going when the next is due makes that one skip, so two runs never race to announce.
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' };
  const note = `bounce alert: ${percent(input.thresholdRate)} with at least ${input.minAccepted} accepted over ${input.windowHours} h`;
  try {
    await client.schedule.create({
      scheduleId: BOUNCE_ALERT_SCHEDULE_ID,
      spec,
      action,
      policies,
      state: { note, paused: paused === true },
    });
    return { scheduleId: BOUNCE_ALERT_SCHEDULE_ID, created: true };
  } catch (err) {
    if (!(err instanceof ScheduleAlreadyRunning)) throw err;
  }
  await client.schedule.getHandle(BOUNCE_ALERT_SCHEDULE_ID).update((prev) => ({
    ...prev,
    spec,
    action,
    policies,
    state: { ...prev.state, note, ...(paused !== undefined ? { paused } : {}) },
  }));
  return { scheduleId: BOUNCE_ALERT_SCHEDULE_ID, created: false };
}

/** Runs deliverabilityStatsWorkflow and returns its figures; a failed run becomes OperationFailed. */
export async function fetchDeliverabilityStats(
  client: ManagedSmtpClient,
  input: DeliverabilityStatsInput,
): Promise<DeliverabilityStats> {
  return run(() =>
    client.temporal.workflow.execute(deliverabilityStatsWorkflow, {
      taskQueue: client.taskQueue,
      workflowId: `managed-smtp-stats/${input.instance ?? 'fleet'}/${randomUUID()}`,
      args: [input],
      workflowExecutionTimeout: RUN_TIMEOUT,
    }),
  );
}

/** Runs fleetStatsPageWorkflow: one page of every instance's row. */
export async function fetchFleetStatsPage(
  client: ManagedSmtpClient,
  input: FleetStatsPageInput,
): Promise<FleetStatsPage> {
  return run(() =>
    client.temporal.workflow.execute(fleetStatsPageWorkflow, {
      taskQueue: client.taskQueue,
      workflowId: `managed-smtp-stats/fleet-page/${randomUUID()}`,
      args: [input],
      workflowExecutionTimeout: RUN_TIMEOUT,
    }),
  );
}

/**
 * Every instance's row, one page (one workflow) at a time, so no payload is ever larger than a page. At most
 * MAX_STATS_PAGES pages; a page that does not move past the previous one fails rather than loops.
 */
export async function* fleetStatsPages(
  client: ManagedSmtpClient,
  input: Omit<FleetStatsPageInput, 'after'>,
): AsyncGenerator<FleetStatsPage> {
  let after: string | null = null;
  for (let pages = 0; pages < MAX_STATS_PAGES; pages++) {
    const page = await fetchFleetStatsPage(client, { ...input, after });
    yield page;
    if (page.next === null) return;
    if (after !== null && !(page.next > after)) {
      throw operationFailed(`stats --all: the page after ${after} did not move forward (next ${page.next})`);
    }
    after = page.next;
  }
  throw operationFailed(`stats --all: the fleet has more than ${MAX_STATS_PAGES} pages; stopped`);
}

/** Runs one bounce-alert pass now and returns its summary. */
export async function runBounceAlertOnce(
  client: ManagedSmtpClient,
  input: BounceAlertInput,
): Promise<BounceAlertSummary> {
  return run(() =>
    client.temporal.workflow.execute(bounceAlertWorkflow, {
      taskQueue: client.taskQueue,
      workflowId: `${BOUNCE_ALERT_SCHEDULE_ID}/run-once-${randomUUID()}`,
      args: [input],
      workflowExecutionTimeout: RUN_TIMEOUT,
    }),
  );
}

/** smtpctl's OperationFailed: exit 1, with `status` in the JSON. */
function operationFailed(message: string, result?: unknown): Error {
  return new OperationFailed(message, result);
}

async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof WorkflowFailedError) throw operationFailed(describeFailure(err.cause ?? err));
    throw err;
  }
}

// ---------------------------------------------------------------- input

function check<T>(argument: string, schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(argument, r.error.issues[0]?.message ?? 'is invalid');
  return r.data;
}

/** `24h`, `30m`, `7d`, `2w`: a duration in milliseconds, or null when `value` is not one. */
function duration(value: string): number | null {
  const m = /^(\d{1,6})(s|m|h|d|w)$/.exec(value.trim());
  return m ? Number(m[1]) * UNIT_MS[m[2]] : null;
}

/** `--from`: an ISO time or a relative duration back from `now`, within SparkPost's metrics retention. */
export function parseFrom(value: unknown, now = Date.now()): string {
  const text = check('--from', z.string().min(1, 'must not be empty'), value);
  const back = duration(text);
  let t: number;
  if (back !== null) {
    t = now - back;
  } else {
    // A date at least; SparkPost's own zone-less form means UTC.
    if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) {
      throw new UsageError('--from', 'must be an ISO time (2026-11-21T10:00Z) or relative (30m, 24h, 7d)');
    }
    const zoned = /T|\s/.test(text) && !/(Z|[+-]\d{2}:?\d{2})$/.test(text) ? `${text.replace(' ', 'T')}Z` : text;
    t = Date.parse(zoned);
    if (Number.isNaN(t)) throw new UsageError('--from', 'is not a valid time');
  }
  if (t > now) throw new UsageError('--from', 'is in the future');
  if (now - t > METRICS_RETENTION_MS)
    throw new UsageError('--from', 'is older than SparkPost keeps metrics (6 months)');
  return new Date(t).toISOString();
}

const threshold = z
  .string()
  .regex(/^\d+(\.\d+)?%?$/, 'must be a rate such as 0.05 or 5%')
  .transform((v) => (v.endsWith('%') ? Number(v.slice(0, -1)) / 100 : Number(v)))
  .refine((v) => v > 0 && v <= 1, 'must be above 0 and at most 1 (100%)');
const minAccepted = z
  .string()
  .regex(/^\d{1,9}$/, 'must be a whole number of accepted messages')
  .transform(Number);
const windowHours = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'must be a number of hours')
  .transform(Number)
  .refine((v) => v > 0 && v <= 744, 'must be above 0 and at most 744 (31 days)');
const webhookUrl = z.string().refine((v) => {
  if (!URL.canParse(v)) return false;
  const u = new URL(v);
  return (u.protocol === 'https:' || u.protocol === 'http:') && !!u.hostname && !u.username && !u.password;
}, 'must be an http(s) URL without credentials');
const secretVersion = z
  .string()
  .regex(SECRET_VERSION_PATTERN, 'must be a Secret Manager version name projects/P/secrets/S/versions/(latest|N)');

function interval(value: unknown): number {
  const text = check('--interval', z.string(), value);
  const ms = duration(text);
  if (ms === null) throw new UsageError('--interval', 'must be a duration such as 15m, 1h or 300s');
  if (ms < MIN_ALERT_INTERVAL_MS)
    throw new UsageError('--interval', 'must be at least 2m (SparkPost rate-limits metrics)');
  if (ms > 86_400_000) throw new UsageError('--interval', 'must be at most 24h');
  return ms;
}

/** The alert options shared by `alerts schedule` and `alerts run-once`, validated. */
function alertInput(o: Record<string, string | undefined>): BounceAlertInput {
  const input: BounceAlertInput = {
    thresholdRate: check('--threshold', threshold, o.threshold),
    minAccepted: check('--min-accepted', minAccepted, o.minAccepted),
    windowHours: check('--window-hours', windowHours, o.windowHours),
  };
  if (o.webhook !== undefined && o.webhookSecret !== undefined) {
    throw new UsageError('--webhook', 'give --webhook or --webhook-secret, not both');
  }
  if (o.webhook !== undefined) input.webhookUrl = check('--webhook', webhookUrl, o.webhook);
  if (o.webhookSecret !== undefined) input.webhookSecret = check('--webhook-secret', secretVersion, o.webhookSecret);
  return input;
}

// ---------------------------------------------------------------- output

function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)}%`;
}

/** Columns of a fleet table: figures of a row, complaints when read ('' for the totals, which have none). */
function fleetTable(rows: FleetRow[], totals: DeliverabilityFigures): string {
  const fig = (f: DeliverabilityFigures & { complaints?: number }) => [
    String(f.accepted),
    String(f.delivered),
    String(f.bounces),
    String(f.hardBounces),
    f.complaints === undefined ? '' : String(f.complaints),
    percent(f.bounceRate),
  ];
  return table(
    ['instance', 'subaccount', 'accepted', 'delivered', 'bounces', 'hard', 'complaints', 'rate'],
    [...rows.map((r) => [r.instance, String(r.subaccountId), ...fig(r)]), ['total', '', ...fig(totals)]],
  );
}

function figuresText(f: DeliverabilityFigures): Array<[string, string]> {
  return [
    ['accepted', String(f.accepted)],
    ['delivered', String(f.delivered)],
    ['bounces', `${f.bounces} (${f.hardBounces} hard)`],
    ['targeted', String(f.targeted)],
    ['bounce rate', percent(f.bounceRate)],
  ];
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/** Human text of a stats result. */
export function formatStats(s: DeliverabilityStats): string {
  const window = `since ${s.from}${s.to ? ` until ${s.to}` : ''}`;
  if (s.scope === 'instance') {
    const rows: Array<[string, string]> = [
      ['instance', `${s.instance ?? '-'} (subaccount ${s.subaccountId})`],
      ['window', window],
      ...figuresText(s),
    ];
    return rows.map(([k, v]) => `${k.padEnd(14)}${v}`).join('\n') + '\n';
  }
  const plan = s.plan
    ? `plan: ${s.plan.accepted} of ${s.plan.included} accepted emails included this month (${percent(s.plan.usedFraction)}, since ${s.plan.from})\n`
    : '';
  // A worker from before the summary returns every row and no `listed`.
  if (s.listed === undefined) return `${instances(s.rows.length)}, ${window}\n${fleetTable(s.rows, s.totals)}${plan}`;
  const omitted = s.omitted ? `; ${s.omitted} more not shown` : '';
  const head =
    `${instances(s.listed)}, ${window}; ${s.rows.length + (s.omitted ?? 0)} need attention${omitted} ` +
    '(over the bounce threshold, hard bounces or complaints, flagged, or on a protection rung)\n';
  return `${head}${fleetTable(s.rows, s.totals)}${plan}every instance: smtpctl stats --all\n`;
}

/** Human text of every instance's row (`stats --all`). */
export function formatAllRows(rows: FleetRow[], from: string): string {
  return `${instances(rows.length)}, since ${from}\n${fleetTable(rows, sumFigures(rows))}`;
}

function instances(n: number): string {
  return `${n} instance${n === 1 ? '' : 's'}`;
}

/** Human text of an alert run. */
export function formatAlertSummary(s: BounceAlertSummary): string {
  const list = (names: string[]) => (names.length ? names.join(', ') : '-');
  const lines = [
    `checked ${s.checked} instance${s.checked === 1 ? '' : 's'} since ${s.from}`,
    `over threshold: ${list(s.crossing)}`,
    `raised: ${list(s.raised)}`,
    `cleared: ${list(s.cleared)}`,
    ...s.skipped.map((x) => `skipped ${x.instance}: ${x.reason}`),
    ...s.errors.map((e) => `error: ${e}`),
  ];
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- commands

function alertOptions(cmd: Command): Command {
  return cmd
    .option('--threshold <rate>', 'bounce rate that raises an alert (0.05 or 5%)', String(DEFAULT_THRESHOLD_RATE))
    .option(
      '--min-accepted <n>',
      'instances with fewer accepted messages in the window never alert',
      String(DEFAULT_MIN_ACCEPTED),
    )
    .option('--window-hours <h>', 'measured window: the last this many hours', '24')
    .option('--webhook <url>', 'Slack-compatible webhook URL (stored in the schedule: prefer --webhook-secret)')
    .option('--webhook-secret <version>', 'Secret Manager version holding the webhook URL (read by the worker)');
}

/** The options of `stats`. */
interface StatsOptions {
  from: string;
  threshold: string;
  minAccepted: string;
  all?: boolean;
  ndjson?: boolean;
}

/** The description of `stats` (also its summary in smtpctl.ts). */
const STATS_DESCRIPTION =
  'SparkPost figures of an instance; of the fleet, totals and the instances needing attention (--all: every row)';

/**
 * `stats --all`: every row, each page printed before the next is read. `--json` streams one document of the `stats`
 * fleet shape (every row, `omitted` 0, totals summed from the rows printed, no plan); `--ndjson` one row a line.
 */
async function printAllRows(
  ctx: CliContext,
  client: ManagedSmtpClient,
  from: string,
  mode: 'json' | 'ndjson' | 'human',
): Promise<void> {
  const out = (text: string) => ctx.io.out(text);
  const kept: FleetRow[] = [];
  let totals = ZERO_FIGURES;
  let count = 0;
  for await (const page of fleetStatsPages(client, { from, size: STATS_PAGE_ROWS })) {
    for (const row of page.rows) {
      if (mode === 'ndjson') out(JSON.stringify(withSchemaVersion(row)) + '\n');
      else if (mode === 'json') out((count === 0 ? allRowsHead(page) : ',') + JSON.stringify(row));
      else kept.push(row);
      count++;
    }
    totals = sumFigures([totals, ...page.rows]);
  }
  if (mode === 'json') {
    if (count === 0) out(allRowsHead({ from, to: null }));
    out(`],"listed":${count},"omitted":0,"totals":${JSON.stringify(totals)},"plan":null}\n`);
  } else if (mode === 'human') {
    out(stripControlChars(formatAllRows(kept, from)));
  }
}

/** The start of the `stats --all --json` document, up to its rows. */
function allRowsHead(page: { from: string; to: string | null }): string {
  const start = { schemaVersion: SCHEMA_VERSION, scope: 'fleet', from: page.from, to: page.to };
  return `${JSON.stringify(start).slice(0, -1)},"rows":[`;
}

/** Adds `stats` and `alerts` to smtpctl. */
export const registerDeliverabilityCommands: CommandModule = (program: Command, ctx: CliContext) => {
  program
    .command('stats')
    .description(STATS_DESCRIPTION)
    .argument(
      '[instance]',
      'instance slug; without it, the fleet: totals, plan usage and the instances needing attention',
    )
    .option('--from <time>', 'start of the window: ISO time or relative (30m, 24h, 7d)', '24h')
    .option(
      '--threshold <rate>',
      'fleet: bounce rate from which an instance needs attention',
      String(DEFAULT_THRESHOLD_RATE),
    )
    .option(
      '--min-accepted <n>',
      'fleet: fewer accepted messages never cross the threshold',
      String(DEFAULT_MIN_ACCEPTED),
    )
    .option('--all', `fleet: every instance's row instead, read ${STATS_PAGE_ROWS} at a time`)
    .option('--ndjson', 'with --all: one JSON row a line, printed as pages arrive')
    .action(async (instanceArg: string | undefined, o: StatsOptions, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = instanceArg === undefined ? undefined : validate.instance(instanceArg);
      const from = parseFrom(o.from);
      if (o.all && instance !== undefined) throw new UsageError('--all', 'is for the fleet: give no instance');
      if (o.ndjson && !o.all) throw new UsageError('--ndjson', 'needs --all (one row a line)');
      const thresholdRate = check('--threshold', threshold, o.threshold);
      const minAcceptedCount = check('--min-accepted', minAccepted, o.minAccepted);
      const client = await ctx.getClient();
      if (o.all) {
        await printAllRows(ctx, client, from, o.ndjson ? 'ndjson' : opts.json ? 'json' : 'human');
        return;
      }
      let input: DeliverabilityStatsInput = { from, thresholdRate, minAccepted: minAcceptedCount };
      if (instance !== undefined) {
        const status = await client.status(instance); // NoWorkflowError: exit 1 with INTERFACE's sentence
        if (status.subaccountId === null) {
          throw operationFailed(
            `instance ${instance} has no SparkPost subaccount (state ${status.state}), so it has no figures`,
          );
        }
        input = { instance, subaccountId: status.subaccountId, from };
      }
      const stats = await fetchDeliverabilityStats(client, input);
      if (stats.scope === 'fleet') {
        // A worker from before the summary returns every row: say so in the same shape.
        ctx.emit(
          opts,
          { ...stats, listed: stats.listed ?? stats.rows.length, omitted: stats.omitted ?? 0 },
          formatStats(stats),
        );
      } else {
        ctx.emit(opts, stats, formatStats(stats));
      }
    });

  const alerts = program.command('alerts').description('the bounce-rate alert over every instance');

  alertOptions(
    alerts
      .command('schedule')
      .description(`create or update the Temporal Schedule ${BOUNCE_ALERT_SCHEDULE_ID}`)
      .option('--interval <duration>', 'time between runs (at least 2m)', '15m')
      .option('--paused', 'create or leave it paused'),
  ).action(async (o: Record<string, string | undefined>, cmd: Command) => {
    const opts = cmd.optsWithGlobals() as GlobalOpts;
    const input = alertInput(o);
    const intervalMs = interval(o.interval);
    if (input.webhookUrl && !opts.json) {
      ctx.io.err(
        "note: the webhook URL is stored in the schedule and every run's history; --webhook-secret keeps it out\n",
      );
    }
    const client = await ctx.getClient();
    const paused = (o.paused as unknown) === true ? true : undefined;
    const { scheduleId, created } = await ensureBounceAlertSchedule(client.temporal, {
      ...input,
      taskQueue: client.taskQueue,
      intervalMs,
      paused,
    });
    const json = {
      scheduleId,
      created,
      intervalSeconds: intervalMs / 1000,
      thresholdRate: input.thresholdRate,
      minAccepted: input.minAccepted,
      windowHours: input.windowHours,
      webhook: input.webhookSecret ? 'secret' : input.webhookUrl ? 'url' : 'none',
      ...(input.webhookSecret ? { webhookSecret: input.webhookSecret } : {}),
    };
    const webhookText = input.webhookSecret
      ? `webhook from ${input.webhookSecret}`
      : input.webhookUrl
        ? 'webhook set'
        : 'no webhook (flags only)';
    ctx.emit(
      opts,
      json,
      `schedule ${scheduleId} ${created ? 'created' : 'updated'}: every ${intervalMs / 60_000} min, alert at ` +
        `${percent(input.thresholdRate)} with at least ${input.minAccepted} accepted over ${input.windowHours} h, ` +
        `${webhookText}${paused ? ', paused' : ''}\n`,
    );
  });

  alertOptions(alerts.command('run-once').description('run one bounce-alert pass now and print what it did')).action(
    async (o: Record<string, string | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const input = alertInput(o);
      const summary = await runBounceAlertOnce(await ctx.getClient(), input);
      if (summary.errors.length) {
        if (!opts.json) ctx.io.out(formatAlertSummary(summary));
        throw operationFailed(`bounce alert run had ${summary.errors.length} error(s): ${summary.errors[0]}`, summary);
      }
      ctx.emit(opts, summary, formatAlertSummary(summary));
    },
  );
};
