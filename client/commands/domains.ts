/**
 * `smtpctl sending-domain ...` and `smtpctl ip-pool ...`: a custom sending domain per instance (created with DKIM,
 * verified by its own long-running workflow, then the sender switches to it) and a dedicated SparkPost IP pool per
 * instance. Everything runs in the instance's workflow; these commands send the request and report the outcome.
 */
import { Option, type Command } from 'commander';
import { senderAddress } from '../../lib/instance';
import { IP_POOL_PATTERN, SENDING_DOMAIN_PATTERN, type DnsRecord, type InstanceStatus } from '../../lib/types';
import { DEFAULT_MAX_WAIT_SECONDS, DEFAULT_RECHECK_SECONDS, type DomainWorkflowStatus } from '../../workflows/domains';
import { RequestRejectedError, type ManagedSmtpClient, type RequestHandle } from '../index';
import { OperationFailed } from '../errors';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';

/** Printed after a pool assignment: dedicated IPs start with no reputation. */
export const WARM_UP_NOTE =
  'note: dedicated IPs need reputation warm-up: start with a small share of the volume and raise it over 4-6 ' +
  'weeks (SparkPost can automate this); full volume from a cold pool gets throttled or filtered as spam';

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds from `90`, `90s`, `10m`, `6h` or `2d`, between 1 and `max`; UsageError naming `argument` otherwise. */
export function parseDuration(argument: string, value: string, max: number): number {
  const m = /^(\d+)([smhd]?)$/.exec(value.trim());
  const seconds = m ? Number(m[1]) * UNITS[m[2] || 's'] : NaN;
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > max) {
    throw new UsageError(argument, `must be a duration like 30s, 10m, 6h or 2d, at most ${formatDuration(max)}`);
  }
  return seconds;
}

function formatDuration(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** A domain as typed, lowercased and without a trailing dot; UsageError when it is not a domain name. */
export function validDomain(value: string): string {
  const d = value.trim().toLowerCase().replace(/\.$/, '');
  if (!SENDING_DOMAIN_PATTERN.test(d)) {
    throw new UsageError('domain', 'must be a domain name the customer owns, such as mail.acme.com');
  }
  return d;
}

/** A pool id; UsageError otherwise. */
export function validPool(value: string): string {
  if (!IP_POOL_PATTERN.test(value)) {
    throw new UsageError('pool', 'must be an IP pool id: 1-20 lowercase letters, digits or underscores');
  }
  return value;
}

function formatRecords(records: DnsRecord[]): string {
  return records.map((r) => `  ${r.type.padEnd(6)}${r.name}\n        ${r.value}\n        (${r.purpose})\n`).join('');
}

function isFinished(s: InstanceStatus, requestId: string): boolean {
  return !!s.requests.find((r) => r.id === requestId)?.finishedAt;
}

/** The outcome of a finished sending-domain request: the status, or OperationFailed with why. */
function domainOutcome(s: InstanceStatus, requestId: string): InstanceStatus {
  const change = s.lastSendingDomainChange;
  if (change && change.requestId === requestId && change.ok) return s;
  const rejected = s.requests.find((r) => r.id === requestId)?.outcome;
  const why =
    change?.requestId === requestId
      ? change.message
      : rejected?.startsWith('rejected')
        ? rejected
        : (s.error ?? `${s.instance}: the sending-domain request did not complete`);
  throw new OperationFailed(why, s);
}

async function waitRequest(
  ctx: CliContext,
  opts: GlobalOpts,
  handle: RequestHandle,
  timeoutSeconds: number,
): Promise<InstanceStatus> {
  const c = await ctx.getClient();
  return c.waitFor(handle, { timeoutMs: timeoutSeconds * 1000, onProgress: ctx.progress(opts) });
}

/** Polls until the domain workflow made a check after `before` checks, finished, or the request ended. */
async function waitForCheck(
  c: ManagedSmtpClient,
  instance: string,
  requestId: string,
  before: number,
  timeoutSeconds: number,
): Promise<{ status: InstanceStatus; verification: DomainWorkflowStatus | null }> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const verification = await c.domainWorkflowStatus(instance);
    const status = await c.status(instance);
    const mine = status.sendingDomain?.requestId === requestId ? status.sendingDomain : null;
    if (!mine || mine.verifiedAt || isFinished(status, requestId) || !verification || verification.checks > before) {
      return { status, verification };
    }
    if (Date.now() >= deadline) {
      throw new OperationFailed(`timed out after ${timeoutSeconds}s waiting for the verification check`, status);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

function domainSummary(s: InstanceStatus, verification: DomainWorkflowStatus | null): string {
  const d = s.sendingDomain;
  const rows: Array<[string, string]> = [['instance', s.instance]];
  if (!d) rows.push(['sending domain', '- (the shared domain)']);
  else {
    rows.push(['sending domain', `${d.domain} (${d.state})`]);
    rows.push(['requested', d.requestedAt]);
    if (d.verifiedAt) rows.push(['verified', d.verifiedAt]);
    if (verification) {
      rows.push(['verification', `${verification.step} in ${d.workflowId ?? '-'}; ${verification.checks} checks`]);
      if (verification.lastCheck)
        rows.push(['last check', `${verification.lastCheck.at}: DKIM ${verification.lastCheck.dkimStatus}`]);
      if (verification.nextCheckAt) rows.push(['next check', verification.nextCheckAt]);
      if (verification.deadline) rows.push(['gives up at', verification.deadline]);
    }
  }
  rows.push(['sender', s.sender ?? '-']);
  rows.push(['ip pool', s.ipPool ?? '-']);
  const last = s.lastSendingDomainChange;
  if (last) rows.push(['last domain op', `${last.ok ? 'ok' : 'FAILED'} at ${last.at}: ${last.message}`]);
  const pool = s.lastIpPoolChange;
  if (pool) rows.push(['last pool op', `${pool.ok ? 'ok' : 'FAILED'} at ${pool.at}: ${pool.message}`]);
  let out = rows.map(([k, v]) => `${k.padEnd(16)}${v}`).join('\n') + '\n';
  if (d && d.state === 'pending-verification' && d.dnsRecords.length) {
    out += `\nDNS records to publish:\n${formatRecords(d.dnsRecords)}`;
  }
  return out;
}

/** Registers `sending-domain` and `ip-pool`. */
export const registerDomainCommands: CommandModule = (program: Command, ctx) => {
  const sd = program
    .command('sending-domain')
    .description("an instance's own sending domain: add (DKIM, DNS verification, sender switch), verify, remove");

  sd.command('add')
    .description('create the domain for the instance, print the DNS records, wait for verification, switch the sender')
    .argument('<instance>', 'instance slug')
    .argument('<domain>', 'a domain the customer owns, e.g. mail.acme.com')
    .addOption(
      new Option('--recheck <every>', 'how often the workflow re-checks verification').default(
        formatDuration(DEFAULT_RECHECK_SECONDS),
      ),
    )
    .addOption(
      new Option('--give-up-after <duration>', 'delete the domain when it is still unverified after this').default(
        formatDuration(DEFAULT_MAX_WAIT_SECONDS),
      ),
    )
    .option('--wait', 'wait until the domain is verified and the sender switched')
    .addOption(
      new Option('--timeout <seconds>', 'how long to wait (for the DNS records, or with --wait)').default('900'),
    )
    .action(
      async (
        instanceArg: string,
        domainArg: string,
        o: { recheck: string; giveUpAfter: string; wait?: boolean; timeout: string },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals() as GlobalOpts;
        const instance = validate.instance(instanceArg);
        const domain = validDomain(domainArg);
        const recheckSeconds = parseDuration('--recheck', o.recheck, 86400);
        const maxWaitSeconds = parseDuration('--give-up-after', o.giveUpAfter, 14 * 86400);
        const timeout = validate.timeoutSeconds(o.timeout);
        const c = await ctx.getClient();
        const handle = await c.addSendingDomain(instance, domain, { recheckSeconds, maxWaitSeconds });
        let status = await c.waitForDnsRecords(handle, { timeoutMs: timeout * 1000 });
        if (isFinished(status, handle.requestId)) domainOutcome(status, handle.requestId);
        const d = status.sendingDomain;
        const sender = senderAddress(instance, domain);
        if (!opts.json && d) {
          ctx.io.out(
            (d.dnsRecords.length
              ? `sending domain ${domain} created for ${instance} (SparkPost subaccount ${status.subaccountId}); ` +
                `publish this DNS record at the domain's DNS provider:\n\n${formatRecords(d.dnsRecords)}\n`
              : `sending domain ${domain} is already verified for ${instance}\n`) +
              `${handle.domainWorkflowId} waits for verification: it re-checks every ${formatDuration(recheckSeconds)} ` +
              `for up to ${formatDuration(maxWaitSeconds)}; after publishing, check at once with: ` +
              `smtpctl sending-domain verify ${instance}\n` +
              `once verified, email.address becomes ${sender} (proved with a test email)\n`,
          );
        }
        if (!o.wait) {
          if (opts.json) {
            ctx.emit(
              opts,
              {
                instance,
                domain,
                requestId: handle.requestId,
                workflowId: handle.domainWorkflowId,
                sendingDomain: d,
                sender,
              },
              '',
            );
          }
          return;
        }
        status = domainOutcome(await waitRequest(ctx, opts, handle, timeout), handle.requestId);
        ctx.emit(opts, status, `${status.lastSendingDomainChange?.message}\n` + ctx.formatStatus(status));
      },
    );

  sd.command('verify')
    .description('check the DNS verification now (after the records were published)')
    .argument('<instance>', 'instance slug')
    .option('--wait', 'once verified, wait until the sender switched')
    .addOption(new Option('--timeout <seconds>', 'how long to wait').default('900'))
    .action(async (instanceArg: string, o: { wait?: boolean; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await ctx.getClient();
      const before = await c.status(instance);
      const d = before.sendingDomain;
      if (!d || d.state !== 'pending-verification') {
        throw new RequestRejectedError(`no sending domain of ${instance} is waiting for verification`);
      }
      const checks = (await c.domainWorkflowStatus(instance))?.checks ?? 0;
      if (!d.verifiedAt) await c.verifySendingDomain(instance);
      const { status, verification } = await waitForCheck(c, instance, d.requestId, checks, timeout);
      const mine = status.sendingDomain?.requestId === d.requestId ? status.sendingDomain : null;
      if (!mine?.verifiedAt && verification && !isFinished(status, d.requestId)) {
        const when = verification.nextCheckAt ? `; next automatic check at ${verification.nextCheckAt}` : '';
        throw new OperationFailed(
          `${d.domain} is not verified yet (DKIM ${verification.lastCheck?.dkimStatus ?? 'unchecked'}): ` +
            `publish the DNS records shown by smtpctl sending-domain show ${instance}${when}`,
          { status, verification },
        );
      }
      const handle = { instance, requestId: d.requestId, workflowId: '' };
      if (!o.wait && !isFinished(status, d.requestId)) {
        ctx.emit(
          opts,
          { instance, domain: d.domain, verified: true, requestId: d.requestId },
          `${d.domain} is verified; ${instance} switches its sender to it (follow with: smtpctl status ${instance})\n`,
        );
        return;
      }
      const done = domainOutcome(await waitRequest(ctx, opts, handle, timeout), d.requestId);
      ctx.emit(opts, done, `${done.lastSendingDomainChange?.message}\n` + ctx.formatStatus(done));
    });

  sd.command('remove')
    .alias('cancel')
    .description('switch the sender back to the shared domain, then delete the domain (cancels one still waiting)')
    .argument('<instance>', 'instance slug')
    .addOption(new Option('--timeout <seconds>', 'how long to wait').default('900'))
    .action(async (instanceArg: string, o: { timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await ctx.getClient();
      const domain = (await c.status(instance)).sendingDomain?.domain;
      const handle = await c.removeSendingDomain(instance);
      const status = await waitRequest(ctx, opts, handle, timeout);
      if (handle.accepted === 'verification-cancelled') {
        if (status.sendingDomain?.requestId === handle.requestId) {
          throw new OperationFailed(`${domain} could not be cancelled`, status);
        }
        const message = status.lastSendingDomainChange?.message ?? `cancelled ${domain}`;
        ctx.emit(opts, status, `${message}\n` + ctx.formatStatus(status));
        return;
      }
      const done = domainOutcome(status, handle.requestId);
      ctx.emit(opts, done, `${done.lastSendingDomainChange?.message}\n` + ctx.formatStatus(done));
    });

  sd.command('show')
    .description('the sending domain, its DNS records and verification progress, and the IP pool')
    .argument('<instance>', 'instance slug')
    .action(async (instanceArg: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const c = await ctx.getClient();
      const status = await c.status(instance);
      const verification =
        status.sendingDomain?.state === 'pending-verification' ? await c.domainWorkflowStatus(instance) : null;
      const json = {
        instance,
        sendingDomain: status.sendingDomain ?? null,
        verification,
        sender: status.sender,
        ipPool: status.ipPool ?? null,
        lastSendingDomainChange: status.lastSendingDomainChange ?? null,
        lastIpPoolChange: status.lastIpPoolChange ?? null,
      };
      ctx.emit(opts, json, domainSummary(status, verification));
    });

  const pool = program
    .command('ip-pool')
    .description("the instance's dedicated SparkPost IP pool: assign (optionally creating it) or unassign");

  const runPool = async (opts: GlobalOpts, handle: RequestHandle, timeout: number, warmUp: boolean) => {
    const status = await waitRequest(ctx, opts, handle, timeout);
    const change = status.lastIpPoolChange;
    if (!change || change.requestId !== handle.requestId || !change.ok) {
      throw new OperationFailed(change?.message ?? `${handle.instance}: the IP pool request did not run`, status);
    }
    ctx.emit(
      opts,
      { ...status, note: warmUp ? WARM_UP_NOTE : undefined },
      `${change.message}\n${warmUp ? `${WARM_UP_NOTE}\n` : ''}`,
    );
  };

  pool
    .command('assign')
    .description("set the subaccount's IP pool (recorded; check --enforce restores it)")
    .argument('<instance>', 'instance slug')
    .argument('<pool>', 'IP pool id, e.g. acme_dedicated')
    .option('--create', 'create the pool when it does not exist')
    .addOption(new Option('--timeout <seconds>', 'how long to wait').default('300'))
    .action(async (instanceArg: string, poolArg: string, o: { create?: boolean; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const id = validPool(poolArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const handle = await (await ctx.getClient()).assignIpPool(instance, id, o.create === true);
      await runPool(opts, handle, timeout, true);
    });

  pool
    .command('unassign')
    .description("remove the subaccount's dedicated IP pool (it sends from the default pool)")
    .argument('<instance>', 'instance slug')
    .addOption(new Option('--timeout <seconds>', 'how long to wait').default('300'))
    .action(async (instanceArg: string, o: { timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const handle = await (await ctx.getClient()).unassignIpPool(instance);
      await runPool(opts, handle, timeout, false);
    });
};
