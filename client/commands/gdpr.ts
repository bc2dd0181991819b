/**
 * `smtpctl gdpr-delete`, `smtpctl gdpr-status` and `smtpctl offboard`: SparkPost data-privacy deletion for an
 * instance's recipients, scoped to its subaccount, through the GDPR deletion workflow (workflows/gdpr.ts), its
 * receipts, and the offboarding of an instance that leaves for good (workflows/offboard.ts).
 *
 * Works with the INTERFACE.md environment alone: the recipients go into a per-request secret in the instance's own
 * project (`managed-smtp-gdpr-<requestId>`, Secret Manager from SECRET_MANAGER_EMULATOR_HOST or ADC), and only that
 * secret's name goes to Temporal. Nothing printed here ever holds an address: invalid input is reported by position
 * or line number, receipts carry counts and times.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { WorkflowIdConflictPolicy } from '@temporalio/common';
import { WorkflowNotFoundError } from '@temporalio/client';
import { writeGdprSecret } from '../../lib/gdpr-secret';
import { INSTANCE_KEY } from '../../lib/search-attributes';
import type { InstanceStatus } from '../../lib/types';
import { SecretStore } from '../../vendors/secret-manager';
import {
  DEFAULT_VERIFY_AFTER_SECONDS,
  MAX_LISTED_RECIPIENTS,
  gdprReceiptQuery,
  gdprSecretId,
  gdprWorkflowId,
  isEmailAddress,
  type GdprDeletionInput,
  type GdprReceipt,
  type gdprDeletionWorkflow,
} from '../../workflows/gdpr';
import {
  offboardReceiptQuery,
  offboardWorkflowId,
  type OffboardReceipt,
  type offboardWorkflow,
} from '../../workflows/offboard';
import { NoWorkflowError, WaitTimeoutError, type ManagedSmtpClient } from '../index';
import { OperationFailed } from '../errors';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';

/** A GDPR deletion that was requested. */
export interface GdprRequestHandle {
  instance: string;
  requestId: string;
  workflowId: string;
  subaccountId: number;
  verifyAfterSeconds: number;
}

/** What to delete: listed addresses, or every recipient the subaccount knows. */
export type GdprTarget = { recipients: readonly string[] } | { allRecipients: true };

/** Secret Manager as the CLI reaches it (tests may pass their own). */
export type GdprSecretStore = Pick<
  SecretStore,
  'ensureSecret' | 'addVersion' | 'listVersions' | 'destroyVersion' | 'deleteSecret'
>;

/** The instance's subaccount and project, or OperationFailed saying why a GDPR request cannot be filed. */
function gdprScope(instance: string, status: InstanceStatus): { subaccountId: number; gcpProject: string } {
  if (status.offboarded) {
    throw new OperationFailed(
      `instance ${instance} was offboarded: its recipients were erased and its subaccount terminated`,
    );
  }
  if (status.subaccountId === null) {
    throw new OperationFailed(
      `instance ${instance} has no SparkPost subaccount, so SparkPost holds no data of its recipients`,
    );
  }
  if (!status.spec) throw new OperationFailed(`instance ${instance} has no GCP project on record (never enabled)`);
  return { subaccountId: status.subaccountId, gcpProject: status.spec.gcpProject };
}

/**
 * Starts a GDPR deletion for an instance (for smtpctl and other tooling): writes the request secret, then starts the
 * workflow with only its name. Throws NoWorkflowError when the instance has no workflow, OperationFailed when it has
 * no subaccount. If the start fails, the secret is shredded again.
 */
export async function requestGdprDeletion(
  client: ManagedSmtpClient,
  secrets: GdprSecretStore,
  instance: string,
  target: GdprTarget,
  opts: { optOut: boolean; verifyAfterSeconds?: number },
): Promise<GdprRequestHandle> {
  const { subaccountId, gcpProject } = gdprScope(instance, await client.status(instance));
  const requestId = randomUUID();
  const workflowId = gdprWorkflowId(instance, requestId);
  const listed = 'recipients' in target ? target.recipients : null;
  let recipientsSecret: string;
  try {
    recipientsSecret = await writeGdprSecret(secrets, { gcpProject, instance, requestId, recipients: listed });
  } catch (err) {
    // Nothing half-done: a secret without its list (or with part of it) goes again.
    await shred(secrets, `projects/${gcpProject}/secrets/${gdprSecretId(requestId)}`).catch(() => undefined);
    throw err;
  }
  const verifyAfterSeconds = opts.verifyAfterSeconds ?? DEFAULT_VERIFY_AFTER_SECONDS;
  const input: GdprDeletionInput = {
    instance,
    subaccountId,
    requestId,
    gcpProject,
    recipientsSecret,
    scope: listed ? 'listed' : 'all-recipients',
    ...(listed ? { recipientCount: listed.length } : {}),
    optOut: opts.optOut,
    verifyAfterSeconds,
  };
  const who = listed ? `${listed.length} listed recipients` : 'every recipient the subaccount knows';
  try {
    // Started by name: the client never needs the workflow code itself.
    await client.temporal.workflow.start<typeof gdprDeletionWorkflow>('gdprDeletionWorkflow', {
      workflowId,
      taskQueue: client.taskQueue,
      args: [input],
      typedSearchAttributes: [{ key: INSTANCE_KEY, value: instance }],
      staticSummary: `GDPR deletion for ${instance}`,
      staticDetails: `SparkPost data-privacy requests for ${who}, scoped to subaccount ${subaccountId}${
        opts.optOut ? ', with opt-out' : ''
      }; recipients in ${recipientsSecret}, shredded at the end`,
    });
  } catch (err) {
    await shred(secrets, recipientsSecret).catch(() => undefined);
    throw err;
  }
  return { instance, requestId, workflowId, subaccountId, verifyAfterSeconds };
}

async function shred(secrets: GdprSecretStore, name: string): Promise<void> {
  for (const v of await secrets.listVersions(name)) if (v.state !== 'DESTROYED') await secrets.destroyVersion(v.name);
  await secrets.deleteSecret(name);
}

/** Checks `--recipient` values; errors name the position and the count, never a value. */
function checkRecipients(values: readonly string[]): string[] {
  if (values.length > MAX_LISTED_RECIPIENTS) {
    throw new UsageError(
      '--recipient',
      `at most ${MAX_LISTED_RECIPIENTS} recipients per request, got ${values.length}: split the list`,
    );
  }
  const recipients = values.map((v) => v.trim());
  const bad = recipients.flatMap((r, i) => (isEmailAddress(r) ? [] : [i + 1]));
  if (bad.length > 0) {
    const more = bad.length > 1 ? ` (${bad.length} of ${recipients.length} are invalid)` : '';
    throw new UsageError(`--recipient #${bad[0]}`, `not an email address${more}`);
  }
  return recipients;
}

/**
 * Parses a recipients file: one address a line, blank lines and `#` comments ignored. A bad line is named by its
 * number, never its text.
 */
export function parseRecipientsFile(text: string): string[] {
  const out: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!isEmailAddress(line)) throw new UsageError('--recipients-file', `line ${i + 1} is not an email address`);
    out.push(line);
  }
  if (out.length === 0) throw new UsageError('--recipients-file', 'lists no recipient');
  if (out.length > MAX_LISTED_RECIPIENTS) {
    throw new UsageError(
      '--recipients-file',
      `at most ${MAX_LISTED_RECIPIENTS} recipients per request, got ${out.length}: split the list`,
    );
  }
  return out;
}

async function readRecipientsFile(path: string): Promise<string> {
  if (path === '-') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(Buffer.from(c as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  }
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw new UsageError('--recipients-file', `cannot read ${path}${typeof code === 'string' ? ` (${code})` : ''}`);
  }
}

/** A receipt: from the result when the workflow is closed, else from its query. Null when there is none. */
export async function gdprReceipt(client: ManagedSmtpClient, workflowId: string): Promise<GdprReceipt | null> {
  const handle = client.temporal.workflow.getHandle<typeof gdprDeletionWorkflow>(workflowId);
  try {
    const d = await handle.describe();
    if (d.status.name === 'COMPLETED') return await handle.result();
    if (d.status.name === 'RUNNING') return await handle.query(gdprReceiptQuery);
    return null;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

/** Every GDPR receipt of an instance, oldest first (visibility lists the workflows). */
export async function gdprReceipts(client: ManagedSmtpClient, instance: string): Promise<GdprReceipt[]> {
  const query = `WorkflowType = 'gdprDeletionWorkflow' AND ${INSTANCE_KEY.name} = '${instance}'`;
  const ids: Array<{ id: string; start: number }> = [];
  for await (const wf of client.temporal.workflow.list({ query })) {
    ids.push({ id: wf.workflowId, start: wf.startTime.getTime() });
    if (ids.length >= 1000) break;
  }
  ids.sort((a, b) => a.start - b.start);
  const out: GdprReceipt[] = [];
  for (const { id } of ids) {
    const r = await gdprReceipt(client, id).catch(() => null);
    if (r) out.push(r);
  }
  return out;
}

/** Waits for a GDPR request: until it is final if verification falls within `seconds`, else until it is filed. */
async function waitForReceipt(
  client: ManagedSmtpClient,
  handle: GdprRequestHandle,
  seconds: number,
): Promise<GdprReceipt> {
  const deadline = Date.now() + seconds * 1000;
  const untilFinal = handle.verifyAfterSeconds * 2 < seconds;
  let last: GdprReceipt | null = null;
  while (Date.now() < deadline) {
    last = await gdprReceipt(client, handle.workflowId).catch(() => last);
    if (last) {
      const final = last.state === 'complete' || last.state === 'failed';
      if (final || (!untilFinal && last.filedAt !== null)) return last;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new WaitTimeoutError(handle.instance, null, seconds);
}

/** A receipt for humans. */
export function formatReceipt(r: GdprReceipt): string {
  const v = r.verifications.at(-1);
  const rows: Array<[string, string]> = [
    ['GDPR request', `${r.requestId} for ${r.instance}: ${r.state}`],
    ['subaccount', String(r.subaccountId)],
    ['scope', `${r.scope}${r.optOut ? ', with opt-out' : ''}`],
    ['recipients', String(r.recipients)],
    [
      'batches',
      `${r.batches} (at most 1000 recipients each)${r.resumedBatches ? `, ${r.resumedBatches} resumed` : ''}`,
    ],
    ['filed at', r.filedAt ?? '-'],
    ['list hashed at', r.listHashedAt ?? '-'],
    ['verify due', r.verifiedAt ? '-' : (r.verifyDueAt ?? '-')],
    ['verified at', r.verifiedAt ?? '-'],
    [
      'found',
      r.found === null
        ? '-'
        : `${r.found} recipients still present` +
          (v
            ? ` (${v.events} events, ${v.suppressions} suppression entries, ${v.keptForCompliance} kept for compliance)`
            : '') +
          (r.verifications[0]?.refiled ? `; ${r.verifications[0].refiled} re-filed once` : ''),
    ],
    ['list destroyed at', r.listDestroyedAt ? `${r.listDestroyedAt} (${r.destroyedVersions} versions)` : '-'],
  ];
  if (r.error) rows.push(['note', r.error]);
  return rows.map(([k, val]) => `${k.padEnd(18)}${val}`).join('\n') + '\n';
}

function formatOffboard(r: OffboardReceipt): string {
  const rows: Array<[string, string]> = [
    ['offboarding', `${r.instance} (${r.requestId}): ${r.state}`],
    ['subaccount', r.subaccountId === null ? '-' : String(r.subaccountId)],
    ['disabled at', r.disabledAt ?? '-'],
    [
      'erasure',
      r.erasure
        ? `${r.erasure.recipients} recipients in ${r.erasure.batches} batches, filed at ${r.erasure.filedAt ?? '-'}, list destroyed at ${r.erasure.listDestroyedAt ?? '-'}`
        : '-',
    ],
    ['subaccount ended', r.subaccountTerminatedAt ? `terminated at ${r.subaccountTerminatedAt}` : '-'],
    ['secrets deleted', r.secretsDeletedAt ? `${r.secretsDeleted} at ${r.secretsDeletedAt}` : '-'],
    ['finished at', r.finishedAt ?? '-'],
  ];
  if (r.error) rows.push(['error', r.error]);
  return rows.map(([k, val]) => `${k.padEnd(18)}${val}`).join('\n') + '\n';
}

/** Secret Manager for the CLI: the emulator from SECRET_MANAGER_EMULATOR_HOST, or the real service with ADC. */
let secretStoreFactory: () => GdprSecretStore & { close?: () => Promise<void> } = () => SecretStore.fromEnvironment();

/** Tests and embedding tools may give the CLI another Secret Manager. */
export function setGdprSecretStoreFactory(f: () => GdprSecretStore & { close?: () => Promise<void> }): void {
  secretStoreFactory = f;
}

/** Adds `smtpctl gdpr-delete`, `gdpr-status` and `offboard`. */
export const registerGdprCommands: CommandModule = (program: Command, ctx: CliContext) => {
  program
    .command('gdpr-delete')
    .description("file SparkPost data-privacy deletion for an instance's recipients, scoped to its subaccount")
    .argument('<instance>', 'instance slug')
    .option('--recipient <email...>', 'a recipient to delete (repeatable)')
    .option('--recipients-file <file>', "one address a line ('-' for stdin; blank lines and # comments ignored)")
    .option(
      '--all-recipients',
      'every recipient the subaccount knows (message events within retention, suppression list)',
    )
    .option('--opt-out', 'also file opt-out requests for the same recipients')
    .option('--wait', 'wait for the receipt (final when verification falls within --timeout, else once filed)')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .addOption(
      new Option('--verify-after <seconds>', 'wait this long before verifying (SparkPost takes up to 30 days)').default(
        String(DEFAULT_VERIFY_AFTER_SECONDS),
      ),
    )
    .action(async (instanceArg: string, o: Record<string, string | string[] | boolean | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const listed = Array.isArray(o.recipient) ? o.recipient : undefined;
      const file = typeof o.recipientsFile === 'string' ? o.recipientsFile : undefined;
      const all = o.allRecipients === true;
      if ([listed, file, all || undefined].filter((x) => x !== undefined).length > 1) {
        throw new UsageError(
          '--recipient',
          'give one of --recipient, --recipients-file and --all-recipients, not several',
        );
      }
      if (!listed && !file && !all) {
        throw new UsageError(
          '--recipient',
          'give --recipient EMAIL (repeatable), --recipients-file FILE|- or --all-recipients',
        );
      }
      const timeout = validate.timeoutSeconds(o.timeout);
      const verifyAfter = Number(o.verifyAfter);
      if (!/^\d+$/.test(String(o.verifyAfter)) || !Number.isSafeInteger(verifyAfter)) {
        throw new UsageError('--verify-after', 'must be a whole number of seconds');
      }
      let recipients: string[] | null = null;
      if (listed) recipients = checkRecipients(listed);
      else if (file) recipients = parseRecipientsFile(await readRecipientsFile(file));
      const target: GdprTarget = recipients ? { recipients } : { allRecipients: true };
      const optOut = o.optOut === true;

      const client = await ctx.getClient();
      const secrets = secretStoreFactory();
      let handle: GdprRequestHandle;
      try {
        handle = await requestGdprDeletion(client, secrets, instance, target, {
          optOut,
          verifyAfterSeconds: verifyAfter,
        });
      } finally {
        await secrets.close?.();
      }
      if (!o.wait) {
        ctx.emit(
          opts,
          {
            instance,
            requestId: handle.requestId,
            workflowId: handle.workflowId,
            requested: 'gdpr-delete',
            scope: recipients ? 'listed' : 'all-recipients',
            recipients: recipients ? recipients.length : null,
            optOut,
          },
          `GDPR deletion requested for ${instance} (request ${handle.requestId}); its receipt: smtpctl gdpr-status ${instance} ${handle.requestId}\n`,
        );
        return;
      }
      if (!opts.json) ctx.io.err(`${instance}: GDPR request ${handle.requestId} (workflow ${handle.workflowId})\n`);
      const receipt = await waitForReceipt(client, handle, timeout);
      if (receipt.state === 'failed') {
        throw new OperationFailed(`GDPR deletion for ${instance} failed: ${receipt.error ?? 'unknown error'}`, receipt);
      }
      if (receipt.state === 'complete' && (receipt.found ?? 0) > 0) {
        throw new OperationFailed(
          `GDPR deletion for ${instance}: ${receipt.found} recipients were still found after re-filing once`,
          receipt,
        );
      }
      ctx.emit(opts, { workflowId: handle.workflowId, ...receipt }, formatReceipt(receipt));
    });

  program
    .command('gdpr-status')
    .description("the receipts of an instance's GDPR requests (never an address)")
    .argument('<instance>', 'instance slug')
    .argument('[requestId]', 'one request')
    .action(async (instanceArg: string, requestIdArg: string | undefined, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      if (requestIdArg !== undefined && !/^[A-Za-z0-9-]{1,64}$/.test(requestIdArg)) {
        throw new UsageError('<requestId>', 'must be 1 to 64 of [A-Za-z0-9-]');
      }
      const client = await ctx.getClient();
      if (requestIdArg) {
        const r = await gdprReceipt(client, gdprWorkflowId(instance, requestIdArg));
        if (!r) throw new OperationFailed(`no GDPR request ${requestIdArg} for instance ${instance}`);
        ctx.emit(opts, r, formatReceipt(r));
        return;
      }
      const receipts = await gdprReceipts(client, instance);
      if (receipts.length === 0) {
        // Requests whose workflows are past retention survive as the entity's audit records.
        let audit: InstanceStatus['gdprAudit'] = [];
        try {
          audit = (await client.status(instance)).gdprAudit ?? [];
        } catch (err) {
          if (!(err instanceof NoWorkflowError)) throw err;
        }
        ctx.emit(
          opts,
          { instance, receipts: [], auditRecords: audit },
          audit.length
            ? audit
                .map((a) => `${a.requestId}  ${a.outcome} at ${a.at}: ${a.recipients} recipients, ${a.batches} batches`)
                .join('\n') + '\n'
            : `no GDPR requests for ${instance}\n`,
        );
        return;
      }
      ctx.emit(opts, { instance, receipts }, receipts.map(formatReceipt).join('\n'));
    });

  program
    .command('offboard')
    .description('for an instance that leaves for good: disable, erase its recipients, terminate, delete secrets')
    .argument('<instance>', 'instance slug')
    .option('--wait', 'wait for the offboarding to finish and print its receipt')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .action(async (instanceArg: string, o: Record<string, string | boolean | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const timeout = validate.timeoutSeconds(o.timeout);
      const client = await ctx.getClient();
      const status = await client.status(instance);
      if (!status.spec) throw new OperationFailed(`instance ${instance} was never enabled: nothing to offboard`);
      const workflowId = offboardWorkflowId(instance);
      const handle = await client.temporal.workflow.start<typeof offboardWorkflow>('offboardWorkflow', {
        workflowId,
        taskQueue: client.taskQueue,
        // A second `offboard` while one runs attaches to it.
        workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
        args: [
          {
            instance,
            requestId: randomUUID(),
            subaccountId: status.subaccountId,
            gcpProject: status.spec.gcpProject,
          },
        ],
        typedSearchAttributes: [{ key: INSTANCE_KEY, value: instance }],
        staticSummary: `Offboarding ${instance}`,
        staticDetails: 'disable, erase every known recipient, terminate the subaccount, delete managed secrets',
      });
      if (!o.wait) {
        const r = await handle.query(offboardReceiptQuery).catch(() => null);
        ctx.emit(
          opts,
          { instance, workflowId, requested: 'offboard', requestId: r?.requestId ?? null },
          `offboarding ${instance} (workflow ${workflowId}); follow it with: smtpctl offboard ${instance} --wait\n`,
        );
        return;
      }
      if (!opts.json) ctx.io.err(`${instance}: offboarding (workflow ${workflowId})\n`);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new WaitTimeoutError(instance, null, timeout)), timeout * 1000);
      });
      let r: OffboardReceipt;
      try {
        r = await Promise.race([handle.result(), timedOut]);
      } finally {
        clearTimeout(timer);
      }
      if (r.state !== 'complete')
        throw new OperationFailed(`offboarding ${instance} failed: ${r.error ?? 'unknown'}`, r);
      ctx.emit(opts, r, formatOffboard(r));
    });
};
