/**
 * `smtpctl enable-fleet <fleet.yaml>`: rolls managed SMTP out across a fleet (or re-enforces it) in one command.
 * Each instance's workflow is started or updated with bounded concurrency; instances whose workflow already has the
 * same settings and is active (or customer-managed) are left alone, so re-running changes nothing that is right;
 * instances flagged `managedSMTP.disabled` get the disable request. Progress is a bar on a terminal, plain lines
 * otherwise; a summary table (or --json) closes the run.
 */
import { readFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  defaultAdminTokenSecret,
  GCP_PROJECT_PATTERN,
  INSTANCE_NAME_PATTERN,
  SECRET_VERSION_PATTERN,
} from '../../lib/instance';
import type { EnableSpec, InstanceStatus } from '../../lib/types';
import { OperationFailed } from '../errors';
import { NoWorkflowError, type ManagedSmtpClient, type RequestHandle } from '../index';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, allowedSourcegraphUrls } from '../validation';
import { adminTokenSecretProblem, egressIpsProblem, sourcegraphUrlProblem } from '../../lib/allow-list';
import { requestSchemas } from '../../contract/requests';

const instanceSchema = z
  .object({
    name: z.string().regex(INSTANCE_NAME_PATTERN, 'must be an instance slug'),
    sourcegraphUrl: z.string().refine((v) => /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/.test(v), 'must be an http(s) URL'),
    gcpProject: z.string().regex(GCP_PROJECT_PATTERN, 'must be a GCP project id'),
    adminTokenSecret: z.string().regex(SECRET_VERSION_PATTERN, 'must be a Secret Manager version name').optional(),
    senderName: z.string().min(1).max(100).optional(),
    force: z.boolean().optional(),
    /** The instance's egress IPv4 addresses or CIDR blocks: the send key is limited to them. */
    egressIps: z
      .array(z.string())
      .optional()
      .superRefine((v, ctx) => {
        const problem = v === undefined ? null : egressIpsProblem(v);
        if (problem) ctx.addIssue({ code: 'custom', message: problem.replace(/^egressIps:? ?/, '') });
      }),
    managedSMTP: z.object({ disabled: z.boolean().optional() }).optional(),
  })
  .strict()
  .superRefine((i, ctx) => {
    // The same allow-list and token rule as `smtpctl enable` (and the worker).
    const url = sourcegraphUrlProblem(i.sourcegraphUrl.replace(/\/+$/, ''), allowedSourcegraphUrls());
    if (url) ctx.addIssue({ code: 'custom', path: ['sourcegraphUrl'], message: url.replace(/^sourcegraphUrl /, '') });
    if (i.adminTokenSecret !== undefined) {
      const token = adminTokenSecretProblem(i.adminTokenSecret, i.gcpProject);
      if (token) {
        ctx.addIssue({ code: 'custom', path: ['adminTokenSecret'], message: token.replace(/^adminTokenSecret /, '') });
      }
    }
  });

const fleetSchema = z.object({ instances: z.array(instanceSchema).max(20_000) }).strict();

/** One instance of a fleet file. */
export type FleetInstance = z.infer<typeof instanceSchema>;

/** Parses and validates a fleet file; throws UsageError naming the first problem's path. */
export function parseFleet(text: string, file: string): FleetInstance[] {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new UsageError(
      file,
      `is not valid YAML (${(err instanceof Error ? err.message : String(err)).split('\n')[0]})`,
    );
  }
  const r = fleetSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
    throw new UsageError(`${file}: ${where.replace(/^\./, '') || 'document'}`, issue.message);
  }
  const seen = new Set<string>();
  r.data.instances.forEach((i, n) => {
    if (seen.has(i.name)) throw new UsageError(`${file}: instances[${n}].name`, `${i.name} is listed twice`);
    seen.add(i.name);
    // The same schema every enable request is parsed with (client and workflow): an entry that would only fail at its
    // own enable is refused here, before any instance of the file is sent.
    const spec = requestSchemas().enableSpec.safeParse(specOf(i));
    if (!spec.success) {
      const issue = spec.error.issues[0];
      const where = issue?.path.length ? `.${issue.path.map(String).join('.')}` : '';
      throw new UsageError(`${file}: instances[${n}]${where}`, issue?.message ?? 'is invalid');
    }
  });
  return r.data.instances;
}

/** What the rollout did with one instance. */
export interface RolloutRow {
  instance: string;
  action: 'enable' | 'disable' | 'unchanged' | 'error';
  state: InstanceStatus['state'] | 'none' | null;
  error: string | null;
}

function specOf(i: FleetInstance): EnableSpec {
  const spec: EnableSpec = {
    sourcegraphUrl: i.sourcegraphUrl.replace(/\/+$/, ''),
    gcpProject: i.gcpProject,
    adminTokenSecret: i.adminTokenSecret ?? defaultAdminTokenSecret(i.gcpProject),
    force: i.force ?? false,
  };
  if (i.senderName !== undefined) spec.senderName = i.senderName;
  if (i.egressIps !== undefined) spec.egressIps = i.egressIps;
  return spec;
}

function sameSpec(a: EnableSpec | null, b: EnableSpec): boolean {
  return (
    !!a &&
    a.sourcegraphUrl === b.sourcegraphUrl &&
    a.gcpProject === b.gcpProject &&
    a.adminTokenSecret === b.adminTokenSecret &&
    (a.senderName ?? null) === (b.senderName ?? null) &&
    // A change of egress IPs re-runs enable, which updates the key's valid_ips.
    JSON.stringify([...(a.egressIps ?? [])].sort()) === JSON.stringify([...(b.egressIps ?? [])].sort()) &&
    (a.egressIps === undefined) === (b.egressIps === undefined)
  );
}

/** Decides and sends what one instance needs; returns the request to wait for, if any. */
async function rollOne(
  c: ManagedSmtpClient,
  i: FleetInstance,
): Promise<{ row: RolloutRow; handle: RequestHandle | null }> {
  let status: InstanceStatus | null = null;
  try {
    status = await c.status(i.name);
  } catch (err) {
    if (!(err instanceof NoWorkflowError)) throw err;
  }
  if (i.managedSMTP?.disabled) {
    if (!status || status.state === 'disabled') {
      return {
        row: { instance: i.name, action: 'unchanged', state: status?.state ?? 'none', error: null },
        handle: null,
      };
    }
    const handle = await c.disable(i.name, 'managedSMTP.disabled in the fleet file');
    return { row: { instance: i.name, action: 'disable', state: status.state, error: null }, handle };
  }
  const spec = specOf(i);
  const settled = status && status.step === null && (status.state === 'active' || status.state === 'customer-managed');
  if (status && settled && sameSpec(status.spec, spec) && !(spec.force && status.state === 'customer-managed')) {
    return { row: { instance: i.name, action: 'unchanged', state: status.state, error: null }, handle: null };
  }
  const handle = await c.enable(i.name, spec);
  return { row: { instance: i.name, action: 'enable', state: status?.state ?? 'none', error: null }, handle };
}

/** Runs `work` over `items` with at most `limit` at once. */
async function pool<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]);
  });
  await Promise.all(lanes);
}

function progressReporter(ctx: CliContext, opts: GlobalOpts, total: number) {
  const tty = !opts.json && process.stderr.isTTY === true;
  let done = 0;
  return (row: RolloutRow) => {
    done++;
    if (opts.json) return;
    if (tty) {
      const width = 30;
      const filled = Math.round((done / total) * width);
      ctx.io.err(`\r[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} ${row.instance.padEnd(24)}`);
      if (done === total) ctx.io.err('\n');
    } else {
      ctx.io.err(
        `${done}/${total} ${row.instance}: ${row.action}${row.state ? ` (${row.state})` : ''}${row.error ? `: ${row.error}` : ''}\n`,
      );
    }
  };
}

function table(rows: RolloutRow[]): string {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.action, (counts.get(r.action) ?? 0) + 1);
  const lines = [`${'INSTANCE'.padEnd(26)}${'ACTION'.padEnd(11)}${'STATE'.padEnd(18)}ERROR`];
  for (const r of rows)
    lines.push(`${r.instance.padEnd(26)}${r.action.padEnd(11)}${(r.state ?? '').padEnd(18)}${r.error ?? ''}`);
  lines.push(`${rows.length} instances: ${[...counts].map(([k, v]) => `${v} ${k}`).join(', ')}`);
  return lines.join('\n') + '\n';
}

/** Registers `enable-fleet`. */
export const registerRolloutCommands: CommandModule = (program: Command, ctx) => {
  program
    .command('enable-fleet')
    .description('start or update managed SMTP for every instance of a fleet file (disable those flagged disabled)')
    .argument('<fleet.yaml>', 'instances with sourcegraphUrl, gcpProject and managedSMTP.disabled')
    .addOption(new Option('--concurrency <n>', 'instances handled at once').default('10'))
    .option('--wait', 'wait for every started request and report the states they ended in')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits for one instance').default('900'))
    .option('--dry-run', 'only validate the file')
    .action(
      async (
        file: string,
        o: { concurrency: string; wait?: boolean; timeout: string; dryRun?: boolean },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals() as GlobalOpts;
        const concurrency = Number(o.concurrency);
        if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 100) {
          throw new UsageError('--concurrency', 'must be a whole number from 1 to 100');
        }
        const timeout = Number(o.timeout);
        if (!(timeout > 0)) throw new UsageError('--timeout', 'must be a positive number of seconds');
        let text: string;
        try {
          text = readFileSync(file, 'utf8');
        } catch (err) {
          throw new UsageError(
            '<fleet.yaml>',
            `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
          );
        }
        const instances = parseFleet(text, file);
        if (o.dryRun) {
          ctx.emit(
            opts,
            { instances: instances.length, valid: true },
            `${file}: ${instances.length} instances, valid\n`,
          );
          return;
        }
        const c = await ctx.getClient();
        const rows: RolloutRow[] = [];
        const report = progressReporter(ctx, opts, instances.length);
        await pool(instances, concurrency, async (i) => {
          let row: RolloutRow;
          try {
            const { row: r, handle } = await rollOne(c, i);
            row = r;
            if (handle && o.wait) {
              const s = await c.waitFor(handle, { timeoutMs: timeout * 1000 });
              row.state = s.state;
              const goal = row.action === 'disable' ? 'disabled' : 'active';
              if (s.state !== goal) row.error = s.error ?? `ended ${s.state}`;
            }
          } catch (err) {
            row = {
              instance: i.name,
              action: 'error',
              state: null,
              error: err instanceof Error ? err.message.split('\n')[0] : String(err),
            };
          }
          rows.push(row);
          report(row);
        });
        rows.sort((a, b) => a.instance.localeCompare(b.instance));
        ctx.emit(opts, rows, table(rows));
        const failed = rows.filter((r) => r.error);
        if (failed.length) throw new OperationFailed(`${failed.length} of ${rows.length} instances failed`);
      },
    );
};
