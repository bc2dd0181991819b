/**
 * smtpctl: the operator CLI. Exit codes (INTERFACE.md): 0 success, 1 the operation failed, 2 bad usage or input
 * (one line naming the argument). `--json` prints exactly one JSON document on stdout (with "schemaVersion"; the JSON
 * Schemas are in schemas/); human output goes to stdout and diagnostics to stderr. Nothing printed here ever holds a
 * secret: statuses carry only where secrets live. The process ends by setting its exit code and letting stdout and
 * stderr drain, never by process.exit(), so large outputs reach a pipe whole.
 */
import { once } from 'node:events';
import { Command, CommanderError, Help, Option } from 'commander';
import type { Client } from '@temporalio/client';
import { defaultAdminTokenSecret } from '../lib/instance';
import type { CheckResult, EnableSpec, InstanceStatus } from '../lib/types';
import type { ListedStatus, ManagedSmtpClient, RequestHandle } from './index';
import type * as Validation from './validation';
import type { Resolver } from '../lib/target-guard';
import { stripControlChars } from '../lib/sanitize';
import { OperationFailed } from './errors';
import { SCHEMA_VERSION, withSchemaVersion } from './schema-version';

export { OperationFailed };

// Start-up cost matters (an operator types these): only commander and small local modules load eagerly. The Temporal
// client, zod and each command module load when a command needs them; `--help` loads none of them.
const loadValidation = (): Promise<typeof Validation> => import('./validation.js');
const loadClientModule = () => import('./index.js');

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

/** A command a lazily loaded module registers, as the top-level help lists it before the module is loaded. */
interface CommandSummary {
  name: string;
  /** How help shows it: name, `[options]`, arguments. */
  term: string;
  description: string;
}

/** A command module and the commands it registers (test/cli-output.test.ts checks these against the module). */
export interface LazyCommandModule {
  load: () => Promise<CommandModule>;
  commands: CommandSummary[];
}

/** The command modules of client/commands/, loaded only when one of their commands runs or shows its help. */
export const COMMAND_MODULES: LazyCommandModule[] = [
  {
    load: async () => (await import('./commands/fleet.js')).registerFleetCommands,
    commands: [
      {
        name: 'check-fleet',
        term: 'check-fleet [options]',
        description: 'check every instance (bounded concurrency and SparkPost budget); --enforce repairs drift',
      },
    ],
  },
  {
    load: async () => (await import('./commands/gdpr.js')).registerGdprCommands,
    commands: [
      {
        name: 'gdpr-delete',
        term: 'gdpr-delete [options] <instance>',
        description: "file SparkPost data-privacy deletion for an instance's recipients, scoped to its subaccount",
      },
      {
        name: 'gdpr-status',
        term: 'gdpr-status <instance> [requestId]',
        description: "the receipts of an instance's GDPR requests (never an address)",
      },
      {
        name: 'offboard',
        term: 'offboard [options] <instance>',
        description: 'for an instance that leaves for good: disable, erase its recipients, terminate, delete secrets',
      },
    ],
  },
  {
    load: async () => (await import('./commands/deliverability.js')).registerDeliverabilityCommands,
    commands: [
      {
        name: 'stats',
        term: 'stats [options] [instance]',
        description:
          'SparkPost figures of an instance; of the fleet, totals and the instances needing attention (--all: every row)',
      },
      { name: 'alerts', term: 'alerts', description: 'the bounce-rate alert over every instance' },
    ],
  },
  {
    load: async () => (await import('./commands/rollout.js')).registerRolloutCommands,
    commands: [
      {
        name: 'enable-fleet',
        term: 'enable-fleet [options] <fleet.yaml>',
        description: 'start or update managed SMTP for every instance of a fleet file (disable those flagged disabled)',
      },
    ],
  },
  {
    load: async () => (await import('./commands/why.js')).registerIssue13Commands,
    commands: [
      {
        name: 'why',
        term: 'why <instance> <email>',
        description: "a recipient's recent events and suppression entry for this instance only, and a verdict",
      },
      { name: 'suppression', term: 'suppression', description: "an instance's SparkPost suppression list" },
      { name: 'webhooks', term: 'webhooks', description: 'SparkPost event webhooks for reputation protection' },
      { name: 'protection', term: 'protection', description: 'reputation protection of an instance' },
    ],
  },
  {
    load: async () => (await import('./commands/domains.js')).registerDomainCommands,
    commands: [
      {
        name: 'sending-domain',
        term: 'sending-domain',
        description: "an instance's own sending domain: add (DKIM, DNS verification, sender switch), verify, remove",
      },
      {
        name: 'ip-pool',
        term: 'ip-pool',
        description: "the instance's dedicated SparkPost IP pool: assign (optionally creating it) or unassign",
      },
    ],
  },
];

/** The command an argument list runs (or asks help for); global options take no values. */
function commandNameOf(argv: string[]): string | undefined {
  const words = argv.filter((a) => !a.startsWith('-'));
  return words[0] === 'help' ? words[1] : words[0];
}

/** The command module that registers `name`, if a lazily loaded one does. */
export function moduleOf(name: string | undefined): LazyCommandModule | undefined {
  return name === undefined ? undefined : COMMAND_MODULES.find((m) => m.commands.some((c) => c.name === name));
}

/** Page size of `list` when it walks the whole fleet. */
const LIST_PAGE_SIZE = 100;
/** Most workflows one `list --limit` page may ask the visibility API for. */
const MAX_LIST_LIMIT = 1000;

/**
 * Builds the CLI and a function that closes its Temporal connection. `connect` is injectable for tests. Command modules
 * in `loaded` are registered; the others appear as summaries (enough for the top-level help), see `runCli`.
 */
export function buildProgram(
  io: Io = processIo,
  connect?: () => Promise<Client>,
  loaded: ReadonlyMap<LazyCommandModule, CommandModule> = new Map(),
  cliOptions: CliOptions = {},
): { program: Command; close: () => Promise<void> } {
  let client: ManagedSmtpClient | null = null;
  let ownsConnection = false;
  const getClient = async () => {
    if (!client) {
      const { ManagedSmtpClient } = await loadClientModule();
      ownsConnection = connect === undefined;
      const temporal = connect ? await connect() : await (await import('./connection.js')).connectTemporal();
      client = new ManagedSmtpClient(temporal);
    }
    return client;
  };
  const close = async () => {
    if (client && ownsConnection) await client.temporal.connection.close();
  };

  const summaries = new Map<Command, string>();
  const defaultHelp = new Help();
  const program = new Command('smtpctl')
    .description('Operate managed SMTP (SparkPost) for hosted Sourcegraph instances')
    .option('--json', 'print one JSON document on stdout')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    // Commands of modules not loaded are summaries: show them as their module would.
    .configureHelp({ subcommandTerm: (cmd) => summaries.get(cmd) ?? defaultHelp.subcommandTerm(cmd) });

  // Human output quotes what instances said: control characters (an ESC sequence) never reach the terminal.
  const emit = (opts: GlobalOpts, json: unknown, human: string) =>
    io.out(opts.json ? JSON.stringify(withSchemaVersion(json)) + '\n' : stripControlChars(human));

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
    const { ManagedSmtpClient } = await loadClientModule();
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

  /** Writes to stdout and, when it is the process's own, waits while the pipe is full (memory stays one page). */
  async function write(text: string): Promise<void> {
    io.out(text);
    if (io === processIo && process.stdout.writableNeedDrain) await once(process.stdout, 'drain');
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
      const { validate, allowedSourcegraphUrls } = await loadValidation();
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
      const { validate } = await loadValidation();
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
      const { validate } = await loadValidation();
      const instance = validate.instance(instanceArg);
      const status = await (await getClient()).status(instance);
      emit(opts, status, formatStatus(status));
    });

  program
    .command('list')
    .description('instances with their state (the whole fleet, streamed page by page, or one page with --limit)')
    .option('--state <state>', 'only instances in this state')
    .option('--stuck', 'only instances whose current step has been retried 3 times or more')
    .option('--limit <n>', `one page: look at up to n workflows (1-${MAX_LIST_LIMIT}) and print the next page token`)
    .option('--page-token <token>', 'the page after the one that printed this token (with --limit)')
    .option('--ndjson', 'one JSON status a line, printed as pages arrive')
    .action(
      async (
        o: { state?: string; stuck?: boolean; limit?: string; pageToken?: string; ndjson?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals() as GlobalOpts;
        const { validate, UsageError } = await loadValidation();
        const state = o.state === undefined ? undefined : validate.state(o.state);
        let limit: number | undefined;
        if (o.limit !== undefined) {
          limit = Number(o.limit);
          if (!/^\d+$/.test(o.limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
            throw new UsageError('--limit', `must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
          }
        }
        if (o.pageToken !== undefined) {
          if (limit === undefined) throw new UsageError('--page-token', 'needs --limit (the size of the page)');
          if (!/^[A-Za-z0-9_-]{1,4096}$/.test(o.pageToken)) {
            throw new UsageError('--page-token', 'must be a token printed by an earlier list --limit');
          }
        }
        const mode = o.ndjson ? 'ndjson' : opts.json ? 'json' : 'human';
        const c = await getClient();
        const filter = { state, stuck: o.stuck === true };
        const line = (s: ListedStatus) => {
          const stuck = s.stuck
            ? `  stuck: ${s.stuck.activity} attempt ${s.stuck.attempts}${s.stuck.lastFailure ? `: ${s.stuck.lastFailure}` : ''}`
            : '';
          return `${s.instance.padEnd(24)}${s.state.padEnd(18)}${s.step ?? ''}${s.error ? `  ${s.error}` : ''}${stuck}\n`;
        };
        const doc = (s: ListedStatus) => JSON.stringify(withSchemaVersion(s));

        // Instances whose status could not be read are named at the end, and the command fails (exit 1).
        const unreadable: string[] = [];
        const failIfUnreadable = () => {
          if (unreadable.length === 0) return;
          const names = unreadable.slice(0, 10).join(', ') + (unreadable.length > 10 ? ', ...' : '');
          throw new OperationFailed(`could not read the status of ${unreadable.length} instance(s): ${names}`);
        };
        if (limit !== undefined) {
          const page = await c.listPage(filter, { pageSize: limit, pageToken: o.pageToken ?? null });
          unreadable.push(...page.unreadable);
          if (mode === 'json') {
            // One page is one document: the statuses and where the next page starts.
            await write(
              JSON.stringify({
                schemaVersion: SCHEMA_VERSION,
                instances: page.statuses.map((s) => withSchemaVersion(s)),
                nextPageToken: page.nextPageToken,
              }) + '\n',
            );
          } else if (mode === 'ndjson') {
            for (const s of page.statuses) await write(doc(s) + '\n');
            if (page.nextPageToken) {
              await write(JSON.stringify({ schemaVersion: SCHEMA_VERSION, nextPageToken: page.nextPageToken }) + '\n');
            }
          } else {
            for (const s of page.statuses) await write(line(s));
            if (page.statuses.length === 0) await write('no instances on this page\n');
            if (page.nextPageToken) {
              io.err(`next page: smtpctl list --limit ${limit} --page-token ${page.nextPageToken}\n`);
            }
          }
          failIfUnreadable();
          return;
        }

        // The whole fleet: page by page, each page written before the next is fetched.
        let count = 0;
        let token: string | null = null;
        if (mode === 'json') await write('[');
        for (let pages = 0; pages < 100_000; pages++) {
          const page = await c.listPage(filter, { pageSize: LIST_PAGE_SIZE, pageToken: token });
          unreadable.push(...page.unreadable);
          for (const s of page.statuses) {
            if (mode === 'json') await write((count > 0 ? ',' : '') + doc(s));
            else if (mode === 'ndjson') await write(doc(s) + '\n');
            else await write(line(s));
            count++;
          }
          token = page.nextPageToken;
          if (!token) break;
        }
        if (mode === 'json') await write(']\n');
        else if (mode === 'human' && count === 0) await write('no instances\n');
        failIfUnreadable();
      },
    );

  program
    .command('check')
    .description('verify the invariant (subaccount, one send key, secret matches, site configuration)')
    .argument('<instance>', 'instance slug')
    .option('--enforce', 'repair what drifted, through the instance workflow, and wait for the repair')
    .addOption(new Option('--timeout <seconds>', 'how long to wait for a repair').default('900'))
    .action(async (instanceArg: string, o: { enforce?: boolean; timeout: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const { validate } = await loadValidation();
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
      const { validate } = await loadValidation();
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
  async function checkAddress(
    url: string,
    patterns: ReturnType<typeof Validation.allowedSourcegraphUrls>,
  ): Promise<void> {
    const { TargetGuard, TargetRefusedError } = await import('../lib/target-guard.js');
    const { UsageError } = await loadValidation();
    try {
      await new TargetGuard(patterns, cliOptions.resolver).resolve(url);
    } catch (err) {
      if (err instanceof TargetRefusedError)
        throw new UsageError('--sourcegraph-url', err.message.replace(/^sourcegraphUrl /, ''));
      // Unresolvable from here is not proof of anything (split DNS): the worker decides.
    }
  }

  const ctx: CliContext = { io, getClient, emit, progress, waitAndReport, formatStatus };
  for (const m of COMMAND_MODULES) {
    const register = loaded.get(m);
    if (register) {
      register(program, ctx);
      continue;
    }
    for (const c of m.commands) {
      summaries.set(program.command(c.name).description(c.description), c.term);
    }
  }
  return { program, close };
}

/** Error names runCli maps to exit codes (by name, so their modules need not be loaded to recognise them). */
const USAGE_ERRORS = new Set(['UsageError', 'CodecConfigError', 'InvalidRequestError']);
const FAILED_OPERATIONS = new Set(['NoWorkflowError', 'RequestRejectedError', 'RunEndedError']);

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
  const json = argv.includes('--json') || argv.includes('--ndjson');
  const errorDoc = (message: string, result?: unknown) =>
    JSON.stringify({ schemaVersion: SCHEMA_VERSION, error: message, ...(result ? { status: result } : {}) }) + '\n';
  const fail = (code: number, message: string, result?: unknown) => {
    io.err(`smtpctl: ${stripControlChars(message).replace(/\n/g, ' ')}\n`);
    if (json && !printed) io.out(errorDoc(message, result));
    return code;
  };
  let close = async () => {};
  try {
    // Only the module of the command being run (or asked about) is loaded.
    const target = moduleOf(commandNameOf(argv));
    const loaded = new Map<LazyCommandModule, CommandModule>();
    if (target) loaded.set(target, await target.load());
    const built = buildProgram(tracked, connect, loaded, cliOptions);
    close = built.close;
    await built.program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version are not errors; commander already printed its one-line usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return 0;
      if (json && !printed) io.out(errorDoc(err.message.replace(/^error: /, '')));
      return 2;
    }
    const name = err instanceof Error ? err.name : '';
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    if (USAGE_ERRORS.has(name)) return fail(2, message);
    if (FAILED_OPERATIONS.has(name)) return fail(1, message);
    if (err instanceof OperationFailed) return fail(1, err.message, err.result);
    if (name === 'WaitTimeoutError') {
      return fail(1, message, (err as Error & { lastStatus?: InstanceStatus | null }).lastStatus ?? undefined);
    }
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

/** How long a finished CLI waits, after stdout and stderr drained, for a library's stray handle before it exits. */
const EXIT_AFTER_DRAIN_MS = 3000;

/**
 * The `smtpctl` process: runs the CLI, sets process.exitCode, and lets Node exit once stdout and stderr are drained.
 * Only if something still holds the event loop after both drained does it exit explicitly, so no output is ever cut.
 */
export function main(argv: string[]): void {
  // The reader went away (`smtpctl list | head`): nothing more can be delivered, so stop quietly, as Unix tools do.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw err;
  });
  const finish = (code: number) => {
    process.exitCode = code;
    let pending = 2;
    const drained = () => {
      if (--pending === 0) setTimeout(() => process.exit(code), EXIT_AFTER_DRAIN_MS).unref();
    };
    // A write callback runs after every earlier write on that stream was handed to the OS.
    process.stdout.write('', drained);
    process.stderr.write('', drained);
  };
  runCli(argv).then(finish, (err) => {
    process.stderr.write(`smtpctl: ${err instanceof Error ? err.message : String(err)}\n`);
    finish(1);
  });
}

if (require.main === module) main(process.argv.slice(2));
