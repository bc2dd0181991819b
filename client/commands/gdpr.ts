/**
 * `smtpctl gdpr-delete`: files SparkPost data-privacy deletion (RTBF, optionally opt-out) for an instance's
 * recipients, scoped to its subaccount, through the GDPR deletion workflow (workflows/gdpr.ts).
 *
 * Addresses never reach Temporal in plain text: `--recipient` values are sealed here with MANAGED_SMTP_CODEC_KEYS
 * (AES-256-GCM, bound to this request) and only the worker's activity opens them; `--all-recipients` sends no
 * address at all. Nothing printed here ever holds an address: invalid input is reported by position and count.
 */
import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { CODEC_KEYS_ENV, CodecConfigError, codecKeysFromEnvironment, type CodecKey } from '../../lib/codec';
import { INSTANCE_KEY } from '../../lib/search-attributes';
import { seal } from '../../lib/sealed';
import type { GdprAuditRecord } from '../../lib/types';
import {
  MAX_LISTED_RECIPIENTS,
  gdprSealContext,
  gdprWorkflowId,
  isEmailAddress,
  type GdprDeletionInput,
  type gdprDeletionWorkflow,
} from '../../workflows/gdpr';
import { WaitTimeoutError, type ManagedSmtpClient } from '../index';
import { OperationFailed } from '../errors';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';

/** A usage error whose whole message is given (not `invalid <argument>: ...`). */
class SettingRequired extends UsageError {
  constructor(argument: string, message: string) {
    super(argument, message);
    this.message = message;
  }
}

/** A GDPR deletion that was requested. */
export interface GdprRequestHandle {
  instance: string;
  requestId: string;
  workflowId: string;
  subaccountId: number;
}

/** What to delete: listed addresses (sealed before they leave this process) or every recipient of the instance. */
export type GdprTarget = { recipients: readonly string[]; keys: readonly CodecKey[] } | { allRecipients: true };

/**
 * Starts a GDPR deletion for an instance (for smtpctl and other tooling). Throws NoWorkflowError when the instance has
 * no workflow, OperationFailed when it never had a SparkPost subaccount.
 */
export async function requestGdprDeletion(
  client: ManagedSmtpClient,
  instance: string,
  target: GdprTarget,
  optOut: boolean,
): Promise<GdprRequestHandle> {
  const status = await client.status(instance);
  const subaccountId = status.subaccountId;
  if (subaccountId === null) {
    throw new OperationFailed(
      `instance ${instance} has no SparkPost subaccount, so SparkPost holds no data of its recipients`,
    );
  }
  const requestId = randomUUID();
  const workflowId = gdprWorkflowId(instance, requestId);
  const input: GdprDeletionInput =
    'allRecipients' in target
      ? { instance, subaccountId, requestId, allRecipients: true, optOut }
      : {
          instance,
          subaccountId,
          requestId,
          sealedRecipients: seal(target.keys, JSON.stringify(target.recipients), gdprSealContext(instance, requestId)),
          recipientCount: target.recipients.length,
          allRecipients: false,
          optOut,
        };
  const who =
    'allRecipients' in target
      ? 'every recipient of the last 10 days of message events'
      : `${target.recipients.length} listed recipients (sealed)`;
  // Started by name: the client never needs the workflow code itself.
  await client.temporal.workflow.start<typeof gdprDeletionWorkflow>('gdprDeletionWorkflow', {
    workflowId,
    taskQueue: client.taskQueue,
    args: [input],
    typedSearchAttributes: [{ key: INSTANCE_KEY, value: instance }],
    staticSummary: `GDPR deletion for ${instance}`,
    staticDetails: `SparkPost data-privacy requests for ${who}, scoped to subaccount ${subaccountId}${
      optOut ? ', with opt-out' : ''
    }`,
  });
  return { instance, requestId, workflowId, subaccountId };
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

/** The sealing keys from the environment; exit 2 when there are none or they are malformed. */
async function sealingKeys(): Promise<CodecKey[]> {
  let keys: CodecKey[] | null;
  try {
    keys = await codecKeysFromEnvironment(process.env);
  } catch (err) {
    if (err instanceof CodecConfigError) throw new SettingRequired(CODEC_KEYS_ENV, err.message);
    throw err;
  }
  if (!keys || keys.length === 0) {
    throw new SettingRequired(
      CODEC_KEYS_ENV,
      `${CODEC_KEYS_ENV} is required for --recipient, so recipients never enter workflow history in plain text`,
    );
  }
  return keys;
}

/** Waits for the workflow's audit record, at most `seconds`. */
async function waitForRecord(
  client: ManagedSmtpClient,
  handle: GdprRequestHandle,
  seconds: number,
): Promise<GdprAuditRecord> {
  const result = client.temporal.workflow.getHandle<typeof gdprDeletionWorkflow>(handle.workflowId).result();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeoutError(handle.instance, null, seconds)), seconds * 1000);
  });
  try {
    return await Promise.race([result, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function formatRecord(instance: string, r: GdprAuditRecord): string {
  const rows: Array<[string, string]> = [
    ['GDPR deletion', `${r.requestId} for ${instance}: ${r.outcome}`],
    ['scope', r.scope],
    ['recipients', String(r.recipients)],
    ['batches', `${r.batches} (at most 1000 recipients each${r.optOut ? ', RTBF and opt-out' : ', RTBF'})`],
    ['at', r.at],
  ];
  if (r.error) rows.push(['note', r.error]);
  return rows.map(([k, v]) => `${k.padEnd(16)}${v}`).join('\n') + '\n';
}

/** Adds `smtpctl gdpr-delete`. */
export const registerGdprCommands: CommandModule = (program: Command, ctx: CliContext) => {
  program
    .command('gdpr-delete')
    .description("file SparkPost data-privacy deletion for an instance's recipients, scoped to its subaccount")
    .argument('<instance>', 'instance slug')
    .option('--recipient <email...>', 'a recipient to delete (repeatable; sealed with MANAGED_SMTP_CODEC_KEYS)')
    .option('--all-recipients', 'every recipient of the instance in the last 10 days of SparkPost message events')
    .option('--opt-out', 'also file opt-out requests for the same recipients')
    .option('--wait', 'wait for the requests to be filed and print the audit record')
    .addOption(new Option('--timeout <seconds>', 'how long --wait waits').default('900'))
    .action(async (instanceArg: string, o: Record<string, string | string[] | boolean | undefined>, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const listed = Array.isArray(o.recipient) ? o.recipient : undefined;
      const all = o.allRecipients === true;
      if (listed && all) throw new UsageError('--recipient', 'give either --recipient or --all-recipients, not both');
      if (!listed && !all) {
        throw new UsageError('--recipient', 'give --recipient EMAIL (repeatable) or --all-recipients');
      }
      const recipients = listed ? checkRecipients(listed) : null;
      const timeout = validate.timeoutSeconds(o.timeout);
      const target: GdprTarget = recipients ? { recipients, keys: await sealingKeys() } : { allRecipients: true };
      const optOut = o.optOut === true;

      const client = await ctx.getClient();
      const handle = await requestGdprDeletion(client, instance, target, optOut);
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
          `GDPR deletion requested for ${instance} (workflow ${handle.workflowId}); its audit record appears in: smtpctl status ${instance} --json\n`,
        );
        return;
      }
      if (!opts.json) ctx.io.err(`${instance}: filing GDPR deletion (workflow ${handle.workflowId})\n`);
      const record = await waitForRecord(client, handle, timeout);
      if (record.outcome !== 'filed') {
        throw new OperationFailed(`GDPR deletion for ${instance} failed: ${record.error ?? 'unknown error'}`, record);
      }
      ctx.emit(opts, { instance, workflowId: handle.workflowId, ...record }, formatRecord(instance, record));
    });
};
