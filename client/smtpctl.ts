/**
 * smtpctl: the operator CLI. Exit codes (INTERFACE.md): 0 success, 1 the operation failed, 2 bad usage or input
 * (one line naming the argument). `--json` prints exactly one JSON document on stdout; human output goes to stdout
 * and diagnostics to stderr. Nothing printed here ever holds a secret: statuses carry only where secrets live.
 */
import { Command, CommanderError, Option } from 'commander';
import type { Client } from '@temporalio/client';
import { defaultAdminTokenSecret } from '../lib/instance';
import type { CheckResult, EnableSpec, InstanceStatus } from '../lib/types';
import { connectTemporal } from './connection';
import {
  ManagedSmtpClient,
  NoWorkflowError,
  InvalidRequestError,
  RequestRejectedError,
  RunEndedError,
  WaitTimeoutError,
  type ListedStatus,
  type RequestHandle,
} from './index';
import { UsageError, allowedSourcegraphUrls, validate } from './validation';
import { registerFleetCommands } from './commands/fleet';
import { registerGdprCommands } from './commands/gdpr';
import { registerDeliverabilityCommands } from './commands/deliverability';
import { registerRolloutCommands } from './commands/rollout';
import { registerDomainCommands } from './commands/domains';
import { registerIssue13Commands } from './commands/why';
import { CodecConfigError } from '../lib/codec';
import { stripControlChars } from '../lib/sanitize';
import { TargetGuard, TargetRefusedError, type Resolver } from '../lib/target-guard';

import { OperationFailed } from './errors';

export { OperationFailed };

/** Where output goes; injectable so tests can run the CLI in-process. */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** Options of buildProgram/runCli that tests inject. */
export interface CliOptions {
  /** DNS for the --sourcegraph-url address check; the system resolver otherwise. */
  resolver?: Resolver;
}

/** Options every command inherits. */
export interface GlobalOpts {
  json?: boolean;
}

/** What a command module gets to register its commands (see client/commands/). */
export interface CliContext {
  io: Io;
  /** The typed client, connected on first use. */
  getClient: () => Promise<ManagedSmtpClient>;
  /** Prints `json` with --json, else `human`. */
  emit: (opts: GlobalOpts, json: unknown, human: string) => void;
  /** Reports state changes while waiting (stderr, human mode only). */
  progress: (opts: GlobalOpts) => (s: InstanceStatus) => void;
  /** Waits for a request and fails (exit 1) unless it leaves the instance in `goal`. */
  waitAndReport: (
    opts: GlobalOpts,
    handle: RequestHandle,
    goal: InstanceStatus['state'],
    timeoutSeconds: number,
  ) => Promise<void>;
  /** Formats a status for humans. */
  formatStatus: (s: InstanceStatus) => string;
}

/** A module that adds commands to smtpctl. */
export type CommandModule = (program: Command, ctx: CliContext) => void;

function formatStatus(s: InstanceStatus): string {
  const rows: Array<[string, string]> = [
    ['instance', s.instance],
    ['state', s.state],
    ['step', s.step ?? '-'],
    ['subaccount', s.subaccountId === null ? '-' : String(s.subaccountId)],
    ['send key id', s.keyId ?? '-'],
    ['secret version', s.secretVersion ?? '-'],
    ['sender', s.sender ?? '-'],
    ...(s.sendingDomain
      ? [['sending domain', `${s.sendingDomain.domain} (${s.sendingDomain.state})`] as [string, string]]
      : []),
    ...(s.ipPool ? [['ip pool', s.ipPool] as [string, string]] : []),
    [
      'last test email',
      s.lastTestEmail
        ? `${s.lastTestEmail.ok ? 'ok' : 'FAILED'} at ${s.lastTestEmail.at}: ${s.lastTestEmail.message}`
        : '-',
    ],
    ['error', s.error ?? '-'],
  ];
  const audit = s.gdprAudit?.at(-1);
  if (audit) {
    rows.push([
      'gdpr deletion',
      `${audit.outcome} at ${audit.at}: ${audit.recipients} recipients, ${audit.batches} batches` +
        // issue 11: verification and shredding, once they happened
        (audit.verifiedAt ? `; verified at ${audit.verifiedAt}, ${audit.found ?? 0} still found` : '') +
        (audit.listDestroyedAt ? `; list destroyed at ${audit.listDestroyedAt}` : ''),
    ]);
  }
  if (s.lastRotation)
    rows.push([
      'last rotation',
      `${s.lastRotation.ok ? 'ok' : 'FAILED'} at ${s.lastRotation.at}: ${s.lastRotation.message}`,
    ]);
  if (s.deliverabilityAlert) {
    const a = s.deliverabilityAlert;
    rows.push(['bounce alert', `${(a.bounceRate * 100).toFixed(1)}% of ${a.accepted} accepted since ${a.from}`]);
  }
  for (const w of s.warnings) rows.push(['warning', w]);
  rows.push(['updated', s.updatedAt]);
  return rows.map(([k, v]) => `${k.padEnd(16)}${v}`).join('\n') + '\n';
}

/** Builds the CLI and a function that closes its Temporal connection. `connect` is injectable for tests. */
export function buildProgram(
  io: Io = processIo,
  connect: () => Promise<Client> = connectTemporal,
  cliOptions: CliOptions = {},
): { program: Command; close: () => Promise<void> } {
  let client: ManagedSmtpClient | null = null;
  let ownsConnection = false;
  const getClient = async () => {
    if (!client) {
      client = new ManagedSmtpClient(await connect());
      ownsConnection = connect === connectTemporal;
    }
    return client;
  };
  const close = async () => {
    if (client && ownsConnection) await client.temporal.connection.close();
  };

  const program = new Command('smtpctl')
    .description('Operate managed SMTP (SparkPost) for hosted Sourcegraph instances')
    .option('--json', 'print one JSON document on stdout')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err });

  // Human output quotes what instances said: control characters (an ESC sequence) never reach the terminal.
  const emit = (opts: GlobalOpts, json: unknown, human: string) =>
    io.out(opts.json ? JSON.stringify(json) + '\n' : stripControlChars(human));

  const progress = (opts: GlobalOpts) => (s: InstanceStatus) => {
    if (!opts.json) io.err(`${s.instance}: ${s.state}${s.step ? ` (${s.step})` : ''}\n`);
  };

  async function waitAndReport(
    opts: GlobalOpts,
    handle: RequestHandle,
    goal: InstanceStatus['state'],
    timeoutSeconds: number,
  ): Promise<void> {
    const c = await getClient();
    const { status, outcome: done } = await c.waitForRequest(handle, {
      timeoutMs: timeoutSeconds * 1000,
      onProgress: progress(opts),
    });
    const outcome = done?.outcome ?? ManagedSmtpClient.outcomeOf(status, handle.requestId);
    const ended = /^(rejected|superseded|dropped)/.test(outcome ?? '');
    if (status.state !== goal || ended) {
      const why = ended ? `request ${outcome}` : status.error;
      throw new OperationFailed(why ?? `${handle.instance} ended ${status.state}`, status);
    }
    emit(opts, status, formatStatus(status));
  }

  program
    .command('enable')
    .description('start (or re-run) provisioning of managed SMTP for an instance')
    .argument('<instance>', 'instance slug')
    .requiredOption('--sourcegraph-url <url>', 'base URL of the Sourcegraph instance')
    .requiredOption('--gcp-project <id>', 'GCP project holding the instance secrets')
    .option(
      '--admin-token-secret <name>',
      'Secret Manager version of a site-admin token (default projects/<gcp-project>/secrets/sourcegraph-admin-token/versions/latest)',
    )
    .option('--sender-name <text>', 'email.senderName to set')
    .option(
      '--egress-ip <ip>',
      "the instance's egress IPv4 address or CIDR block (repeatable): the send key is limited to them",
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--force', "replace the instance's own SMTP settings")
    .option('--move', 'move a provisioned instance to a new URL or GCP project (restores the old site first)')
    .option('--wait', 'wait until the instance is active or failed')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .action(async (instanceArg: string, o: Record<string, string | boolean | string[] | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const gcpProject = validate.gcpProject(o.gcpProject);
      const patterns = allowedSourcegraphUrls();
      const spec: EnableSpec = {
        sourcegraphUrl: validate.sourcegraphUrl(o.sourcegraphUrl, patterns),
        gcpProject,
        adminTokenSecret: validate.adminTokenSecret(
          o.adminTokenSecret ?? defaultAdminTokenSecret(gcpProject),
          gcpProject,
        ),
        force: o.force === true,
        ...(o.move === true ? { move: true } : {}),
      };
      if (!spec.adminTokenSecret.startsWith(`projects/${gcpProject}/`)) {
        throw new UsageError('--admin-token-secret', `must lie in the instance's own project projects/${gcpProject}/`);
      }
      if (o.senderName !== undefined) spec.senderName = validate.senderName(o.senderName);
      if (o.egressIp !== undefined) spec.egressIps = validate.egressIps(o.egressIp);
      // The worker checks again after DNS right before each request; checking here too makes the mistake exit 2.
      await checkAddress(spec.sourcegraphUrl, patterns);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await getClient();
      const handle = await c.enable(instance, spec);
      if (o.wait) return waitAndReport(opts, handle, 'active', timeout);
      emit(
        opts,
        { instance, requestId: handle.requestId, workflowId: handle.workflowId, requested: 'enable' },
        `enable requested for ${instance} (workflow ${handle.workflowId}); follow it with: smtpctl status ${instance}\n`,
      );
    });

  program
    .command('disable')
    .description('undo managed SMTP for an instance: restore config, revoke key, delete secret, suspend subaccount')
    .argument('<instance>', 'instance slug')
    .option('--reason <text>', 'why (kept in the status)')
    .option('--wait', 'wait until the instance is disabled')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .action(async (instanceArg: string, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const reason = o.reason === undefined ? undefined : validate.reason(o.reason);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await getClient();
      const handle = await c.disable(instance, reason);
      if (o.wait) return waitAndReport(opts, handle, 'disabled', timeout);
      emit(
        opts,
        { instance, requestId: handle.requestId, workflowId: handle.workflowId, requested: 'disable' },
        `disable requested for ${instance}; follow it with: smtpctl status ${instance}\n`,
      );
    });

  program
    .command('status')
    .description('state, current step, subaccount, secret version, sender, last test email, last error')
    .argument('<instance>', 'instance slug')
    .action(async (instanceArg: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const status = await (await getClient()).status(instance);
      emit(opts, status, formatStatus(status));
    });

  program
    .command('list')
    .description('instances with their state')
    .option('--state <state>', 'only instances in this state')
    .option('--stuck', 'only instances whose current step has been retried 3 times or more')
    .action(async (o: { state?: string; stuck?: boolean }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const state = o.state === undefined ? undefined : validate.state(o.state);
      const statuses = await (await getClient()).list({ state, stuck: o.stuck === true });
      const line = (s: ListedStatus) => {
        const stuck = s.stuck
          ? `  stuck: ${s.stuck.activity} attempt ${s.stuck.attempts}${s.stuck.lastFailure ? `: ${s.stuck.lastFailure}` : ''}`
          : '';
        return `${s.instance.padEnd(24)}${s.state.padEnd(18)}${s.step ?? ''}${s.error ? `  ${s.error}` : ''}${stuck}`;
      };
      emit(opts, statuses, statuses.length === 0 ? 'no instances\n' : statuses.map(line).join('\n') + '\n');
    });

  program
    .command('check')
    .description('verify the invariant (subaccount, one send key, secret matches, site configuration)')
    .argument('<instance>', 'instance slug')
    .option('--enforce', 'repair what drifted, through the instance workflow, and wait for the repair')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for a repair').default('900'))
    .action(async (instanceArg: string, o: { enforce?: boolean; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await getClient();
      const result: CheckResult = await c.check(instance, o.enforce === true);
      const problems = result.findings.filter((f) => !f.ok);
      let repaired: InstanceStatus | null = null;
      if (result.repairRequestId) {
        repaired = await c.waitFor(
          { instance, requestId: result.repairRequestId, workflowId: '' },
          { timeoutMs: timeout * 1000, onProgress: progress(opts) },
        );
      }
      const tag = (f: { ok: boolean; repairable: boolean }) => (f.ok ? 'ok   ' : f.repairable ? 'DRIFT' : 'ALERT');
      const lines = result.findings.map((f) => `${tag(f)} ${f.check.padEnd(20)}${f.message}`);
      if (result.repairRequestId)
        lines.push(`repair: ${repaired?.state}${repaired?.error ? ` (${repaired.error})` : ''}`);
      else if (problems.length && !o.enforce) lines.push('run with --enforce to repair');
      emit(opts, { ...result, repaired }, lines.join('\n') + '\n');
      const repairedOk =
        repaired !== null &&
        (repaired.state === 'active' || repaired.state === 'disabled') &&
        problems.every((p) => p.repairable);
      if (problems.length > 0 && !repairedOk) {
        const verb = result.repairRequestId ? 'not repaired' : 'need attention';
        throw new OperationFailed(`${instance}: ${problems.length} finding(s) ${verb}`);
      }
    });

  program
    .command('rotate-key')
    .description('mint a new send key, store it, patch the site configuration, test, then revoke the old key')
    .argument('<instance>', 'instance slug')
    .option('--wait', 'wait until the rotation finished')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .action(async (instanceArg: string, o: { wait?: boolean; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const c = await getClient();
      const handle = await c.rotateKey(instance);
      if (!o.wait) {
        const json = { instance, requestId: handle.requestId, requested: 'rotate-key' };
        emit(opts, json, `key rotation requested for ${instance}\n`);
        return;
      }
      const status = await c.waitFor(handle, { timeoutMs: timeout * 1000, onProgress: progress(opts) });
      const rotation = status.lastRotation;
      if (!rotation || rotation.requestId !== handle.requestId || !rotation.ok) {
        throw new OperationFailed(rotation?.message ?? `${instance}: the rotation did not run`, status);
      }
      emit(opts, status, `${rotation.message}\n` + formatStatus(status));
    });

  /** Refuses (UsageError) a URL whose host resolves to an address the allow-list does not name explicitly. */
  async function checkAddress(url: string, patterns: ReturnType<typeof allowedSourcegraphUrls>): Promise<void> {
    try {
      await new TargetGuard(patterns, cliOptions.resolver).resolve(url);
    } catch (err) {
      if (err instanceof TargetRefusedError)
        throw new UsageError('--sourcegraph-url', err.message.replace(/^sourcegraphUrl /, ''));
      // Unresolvable from here is not proof of anything (split DNS): the worker decides.
    }
  }

  const ctx: CliContext = { io, getClient, emit, progress, waitAndReport, formatStatus };
  // Built here, not at module load, so a command module may import from this file in any order.
  for (const register of [
    registerFleetCommands,
    registerGdprCommands,
    registerDeliverabilityCommands,
    registerRolloutCommands,
    registerDomainCommands,
    registerIssue13Commands, // why, suppression, webhooks, protection
  ]) {
    register(program, ctx);
  }
  return { program, close };
}

/** Runs the CLI and returns the exit code (never calls process.exit). */
export async function runCli(
  argv: string[],
  io: Io = processIo,
  connect?: () => Promise<Client>,
  cliOptions: CliOptions = {},
): Promise<number> {
  // --json promises exactly one document on stdout: an error document only when the command printed none.
  let printed = false;
  const tracked: Io = {
    out: (t) => {
      printed = true;
      io.out(t);
    },
    err: io.err,
  };
  const { program, close } = buildProgram(tracked, connect, cliOptions);
  const json = argv.includes('--json');
  const fail = (code: number, message: string, result?: unknown) => {
    io.err(`smtpctl: ${stripControlChars(message).replace(/\n/g, ' ')}\n`);
    if (json && !printed) io.out(JSON.stringify({ error: message, ...(result ? { status: result } : {}) }) + '\n');
    return code;
  };
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander already printed its one-line usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
      if (json && !printed) io.out(JSON.stringify({ error: err.message.replace(/^error: /, '') }) + '\n');
      return 2;
    }
    if (err instanceof UsageError) return fail(2, err.message);
    if (err instanceof CodecConfigError) return fail(2, err.message);
    if (err instanceof NoWorkflowError) return fail(1, err.message);
    if (err instanceof InvalidRequestError) return fail(2, err.message);
    if (err instanceof RequestRejectedError) return fail(1, err.message);
    if (err instanceof RunEndedError) return fail(1, err.message);
    if (err instanceof OperationFailed) return fail(1, err.message, err.result);
    if (err instanceof WaitTimeoutError) return fail(1, err.message, err.lastStatus ?? undefined);
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    if (/binary\/encrypted/.test(message)) {
      return fail(
        1,
        'the workflow payloads are encrypted: set MANAGED_SMTP_CODEC_KEYS (or _KEY_SECRET) as the worker has it',
      );
    }
    return fail(1, message);
  } finally {
    await close();
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`smtpctl: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
