/**
 * `smtpctl protection status|clear|configure <instance>`: the instance's reputation-protection ladder
 * (lib/protection.ts). Clear and configure go to the entity as the `protectionRequest` update, which only validates
 * and queues: the entity runs the decision and the vendor action in order with every other request.
 */
import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { SECRET_VERSION_PATTERN, workflowIdFor } from '../../lib/instance';
import type { ProtectionConfig, ProtectionStatus } from '../../lib/protection';
import { protectionRequestUpdate } from '../../contract/messages';
import type { ProtectionRequest } from '../../contract/types';
import type { ManagedSmtpClient } from '../index';
import { NoWorkflowError, RequestRejectedError, WaitTimeoutError } from '../index';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';
import { actorOf } from './direct';

/** Sends a protection request and, when `waitMs` is set, waits until the entity ran it. */
export async function requestProtection(
  client: ManagedSmtpClient,
  instance: string,
  input: ProtectionRequest['input'],
  opts: { waitMs?: number; alertWebhookSecret?: string } = {},
): Promise<{ requestId: string; protection: ProtectionStatus | null }> {
  const requestId = randomUUID();
  const request: ProtectionRequest = {
    requestId,
    input,
    ...(opts.alertWebhookSecret ? { alertWebhook: { secret: opts.alertWebhookSecret } } : {}),
  };
  try {
    await client.temporal.workflow
      .getHandle(workflowIdFor(instance))
      .executeUpdate(protectionRequestUpdate, { args: [request] });
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
    if (err instanceof WorkflowUpdateFailedError) {
      throw new RequestRejectedError(err.cause instanceof Error ? err.cause.message : err.message);
    }
    throw err;
  }
  if (!opts.waitMs) return { requestId, protection: null };
  const deadline = Date.now() + opts.waitMs;
  for (let i = 0; i < 100_000; i++) {
    const status = await client.status(instance);
    if (status.protection?.lastRequest?.requestId === requestId) return { requestId, protection: status.protection };
    if (Date.now() > deadline) throw new WaitTimeoutError(instance, status, Math.round(opts.waitMs / 1000));
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new WaitTimeoutError(instance, null, Math.round(opts.waitMs / 1000));
}

function describe(p: ProtectionStatus | null | undefined): string {
  if (!p) return 'reputation protection: ok (never triggered)\n';
  const lines = [
    `level           ${p.level}${p.since ? ` since ${p.since}` : ''}`,
    `action          ${p.config.action} (quarantine pool ${p.config.quarantinePool})`,
    `thresholds      complaints warn > ${p.config.warnComplaintRate * 100} %, act > ${p.config.severeComplaintRate * 100} %; ` +
      `hard bounces warn > ${p.config.warnHardBounceRate * 100} %, act > ${p.config.severeHardBounceRate * 100} %; ` +
      `at ≥ ${p.config.minVolume} sent; quiet ${p.config.quietSeconds} s`,
  ];
  if (p.last) {
    lines.push(
      `last observed   ${p.last.severity}: ${p.last.complaints} complaints, ${p.last.hardBounces} hard bounces of ` +
        `${p.last.sent} sent (${p.last.source}, ${p.last.at})`,
    );
  }
  for (const t of p.transitions.slice(-10)) {
    lines.push(
      `transition      ${t.at} ${t.from} → ${t.to} by ${t.by}: ${t.reason}${t.outcome ? ` [${t.outcome}]` : ''}`,
    );
  }
  if (p.lastRequest) lines.push(`last request    ${p.lastRequest.at}: ${p.lastRequest.outcome}`);
  return lines.join('\n') + '\n';
}

const RATE = /^(\d+(\.\d+)?)%?$/;

function rate(arg: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = RATE.exec(v.trim());
  const n = m ? Number(m[1]) / (v.trim().endsWith('%') ? 100 : 1) : NaN;
  if (!(n > 0 && n <= 1)) throw new UsageError(arg, 'must be a fraction in (0, 1] or a percentage such as 0.1%');
  return n;
}

function whole(arg: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v)) throw new UsageError(arg, 'must be a whole number');
  return Number(v);
}

function duration(arg: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d{1,7})(s|m|h|d)$/.exec(v.trim());
  if (!m) throw new UsageError(arg, 'must be a duration such as 90s, 30m, 6h or 1d');
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

/** Registers `smtpctl protection`. */
export const registerProtectionCommands: CommandModule = (program: Command, ctx: CliContext) => {
  const protection = program.command('protection').description('reputation protection of an instance');

  protection
    .command('status')
    .argument('<instance>', 'instance slug')
    .description('the ladder: level, thresholds, last observation, transitions (the audit trail)')
    .action(async (instanceArg: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const status = await (await ctx.getClient()).status(instance);
      ctx.emit(opts, { instance, protection: status.protection ?? null }, describe(status.protection));
    });

  protection
    .command('clear')
    .argument('<instance>', 'instance slug')
    .description('lift a warning, quarantine or suspension now (recorded with who and why)')
    .option('--reason <text>', 'why (kept in the audit trail)')
    .option('--actor <name>', 'who asks (default: the OS user)')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the entity').default('120'))
    .action(async (instanceArg: string, o: { reason?: string; actor?: string; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const reason = o.reason === undefined ? undefined : validate.reason(o.reason);
      const actor = actorOf(o.actor);
      const timeout = validate.timeoutSeconds(o.timeout);
      const r = await requestProtection(
        await ctx.getClient(),
        instance,
        { kind: 'clear', actor, ...(reason ? { reason } : {}) },
        { waitMs: timeout * 1000 },
      );
      ctx.emit(opts, { instance, ...r }, `${instance}: ${r.protection?.lastRequest?.outcome ?? 'cleared'}\n`);
    });

  protection
    .command('configure')
    .argument('<instance>', 'instance slug')
    .description('thresholds and the action of the ladder (unset options keep their value)')
    .addOption(
      new Option('--action <action>', 'what the top rung does').choices(['quarantine', 'suspend', 'alert-only']),
    )
    .option('--warn-complaint-rate <rate>', 'e.g. 0.1% (SparkPost: above 0.1 % is bad)')
    .option('--severe-complaint-rate <rate>', 'e.g. 0.5%')
    .option('--warn-hard-bounce-rate <rate>', 'e.g. 2%')
    .option('--severe-hard-bounce-rate <rate>', 'e.g. 5%')
    .option('--min-volume <n>', 'messages sent in the window before rates count')
    .option('--burst-complaints <n>', 'complaints that warn below min volume')
    .option('--quiet <duration>', 'recover after this long without a bad observation, e.g. 6h')
    .option('--quarantine-pool <pool>', 'IP pool quarantined subaccounts move to')
    .option('--alert-webhook-secret <version>', 'Secret Manager version of the Slack webhook for alerts')
    .option('--actor <name>', 'who asks (default: the OS user)')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for the entity').default('120'))
    .action(async (instanceArg: string, o: Record<string, string | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const config: Partial<ProtectionConfig> = {};
      const set = <K extends keyof ProtectionConfig>(k: K, v: ProtectionConfig[K] | undefined) => {
        if (v !== undefined) config[k] = v;
      };
      set('action', o.action as ProtectionConfig['action'] | undefined);
      set('warnComplaintRate', rate('--warn-complaint-rate', o.warnComplaintRate));
      set('severeComplaintRate', rate('--severe-complaint-rate', o.severeComplaintRate));
      set('warnHardBounceRate', rate('--warn-hard-bounce-rate', o.warnHardBounceRate));
      set('severeHardBounceRate', rate('--severe-hard-bounce-rate', o.severeHardBounceRate));
      set('minVolume', whole('--min-volume', o.minVolume));
      set('burstComplaints', whole('--burst-complaints', o.burstComplaints));
      set('quietSeconds', duration('--quiet', o.quiet));
      if (o.quarantinePool !== undefined && !/^[a-z0-9_]{1,20}$/.test(o.quarantinePool)) {
        throw new UsageError('--quarantine-pool', 'must be 1-20 of a-z, 0-9, _');
      }
      set('quarantinePool', o.quarantinePool);
      if (o.alertWebhookSecret !== undefined && !SECRET_VERSION_PATTERN.test(o.alertWebhookSecret)) {
        throw new UsageError(
          '--alert-webhook-secret',
          'must be a Secret Manager version projects/P/secrets/S/versions/N',
        );
      }
      const actor = actorOf(o.actor);
      const timeout = validate.timeoutSeconds(o.timeout);
      const r = await requestProtection(
        await ctx.getClient(),
        instance,
        { kind: 'configure', config, actor },
        { waitMs: timeout * 1000, alertWebhookSecret: o.alertWebhookSecret },
      );
      ctx.emit(opts, { instance, ...r }, describe(r.protection));
    });
};
