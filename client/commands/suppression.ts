/**
 * `smtpctl suppression list|remove <instance> [<email>]`: the instance's SparkPost suppression list, read and changed
 * directly with the operator key (direct.ts) and scoped to the instance's subaccount (`X-MSYS-SUBACCOUNT`).
 *
 * - list: counts by source, then one page of entries; addresses are shown masked with a keyed hash, never in clear.
 * - remove: needs `--reason`; a spam-complaint entry also needs `--force` (the recipient's own choice, which SparkPost
 *   and the law respect). The removal is audited on the instance's entity before anything changes (`requested`),
 *   then completed with the outcome (`removed`, `refused`, `failed`) under the same request id: who (OS user or
 *   --actor), why, when, the entry's source, and the address only masked and as an HMAC (keyed with the payload
 *   codec key when set, else the operator key), so a later question "was X removed?" can be answered by hashing X.
 */
import { randomUUID } from 'node:crypto';
import { Option, type Command } from 'commander';
import { WorkflowNotFoundError } from '@temporalio/client';
import { codecKeysFromEnvironment } from '../../lib/codec';
import { isVendorError } from '../../lib/errors';
import { workflowIdFor } from '../../lib/instance';
import { maskAddress, recipientHash, scrubAddresses } from '../../lib/recipients';
import type { SuppressionAuditRecord } from '../../lib/types';
import { SUPPRESSION_SOURCES } from '../../vendors/sparkpost';
import { suppressionAuditSignal } from '../../contract/messages';
import { OperationFailed } from '../errors';
import { NoWorkflowError, type ManagedSmtpClient } from '../index';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { UsageError, validate } from '../validation';
import { actorOf, operatorSparkPost } from './direct';
import { checkAddress, subaccountOf } from './direct';

/** The source SparkPost gives entries from spam complaints: removing one needs --force. */
export const SPAM_COMPLAINT = 'Spam Complaint';

/** How an address is shown: masked, and as a keyed hash. */
async function hasher(operatorKey: string): Promise<(address: string) => { masked: string; hash: string }> {
  const keys = await codecKeysFromEnvironment(process.env).catch(() => null);
  const key = keys?.[0] ?? { id: 'operator', key: operatorKey };
  return (address) => ({ masked: maskAddress(address), hash: recipientHash(address, key) });
}

async function audit(client: ManagedSmtpClient, instance: string, record: SuppressionAuditRecord): Promise<void> {
  try {
    await client.temporal.workflow.getHandle(workflowIdFor(instance)).signal(suppressionAuditSignal, record);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new NoWorkflowError(instance);
    throw err;
  }
}

/** Registers `smtpctl suppression`. */
export const registerSuppressionCommands: CommandModule = (program: Command, ctx: CliContext) => {
  const suppression = program.command('suppression').description("an instance's SparkPost suppression list");

  suppression
    .command('list')
    .argument('<instance>', 'instance slug')
    .description('counts by source and one page of entries (addresses masked)')
    .addOption(new Option('--source <source>', 'only entries of this source').choices([...SUPPRESSION_SOURCES]))
    .option('--page <n>', 'page number, from 1', '1')
    .option('--per-page <n>', 'entries per page (at most 1000)', '50')
    .action(async (instanceArg: string, o: { source?: string; page: string; perPage: string }, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const page = Number(o.page);
      const perPage = Number(o.perPage);
      if (!Number.isInteger(page) || page < 1) throw new UsageError('--page', 'must be a whole number ≥ 1');
      if (!Number.isInteger(perPage) || perPage < 1 || perPage > 1000) {
        throw new UsageError('--per-page', 'must be a whole number from 1 to 1000');
      }
      const sparkpost = operatorSparkPost('suppression list');
      const subaccountId = await subaccountOf(await ctx.getClient(), instance);
      const all = await sparkpost.searchSuppressions({
        subaccountId,
        ...(o.source ? { sources: [o.source] } : {}),
        perPage: 10_000,
      });
      const mine = all.filter((e) => e.subaccountId === subaccountId);
      const show = await hasher(process.env.SPARKPOST_API_KEY ?? '');
      const bySource: Record<string, number> = {};
      for (const e of mine) bySource[e.source] = (bySource[e.source] ?? 0) + 1;
      mine.sort((a, b) => (b.updated ?? b.created ?? '').localeCompare(a.updated ?? a.created ?? ''));
      const pages = Math.max(1, Math.ceil(mine.length / perPage));
      const entries = mine.slice((page - 1) * perPage, page * perPage).map((e) => {
        const { masked, hash } = show(e.recipient);
        return {
          recipient: masked,
          recipientHash: hash,
          type: e.type,
          source: e.source,
          description: scrubAddresses(e.description),
          created: e.created ?? null,
          updated: e.updated ?? null,
        };
      });
      const json = { instance, subaccountId, total: mine.length, bySource, page, pages, perPage, entries };
      const lines = [
        `${instance} (subaccount ${subaccountId}): ${mine.length} suppressed` +
          (mine.length
            ? ` (${Object.entries(bySource)
                .map(([k, v]) => `${k} ${v}`)
                .join(', ')})`
            : ''),
        ...entries.map(
          (e) =>
            `  ${e.recipient.padEnd(20)} ${e.type.padEnd(18)}${e.source.padEnd(18)}${e.created ?? ''}  ${e.recipientHash}`,
        ),
      ];
      if (pages > 1) lines.push(`page ${page} of ${pages} (--page N)`);
      ctx.emit(opts, json, lines.join('\n') + '\n');
    });

  suppression
    .command('remove')
    .argument('<instance>', 'instance slug')
    .argument('<email>', 'the recipient to remove (never stored or printed in clear)')
    .requiredOption('--reason <text>', 'why (kept in the audit trail)')
    .option('--force', 'also remove a spam-complaint entry (the recipient asked not to get mail)')
    .option('--actor <name>', 'who asks (default: the OS user)')
    .action(
      async (
        instanceArg: string,
        emailArg: string,
        o: { reason: string; force?: boolean; actor?: string },
        cmd: Command,
      ) => {
        const opts = cmd.optsWithGlobals() as GlobalOpts;
        const instance = validate.instance(instanceArg);
        const recipient = checkAddress(emailArg);
        const reason = validate.reason(o.reason);
        if (reason.trim() === '') throw new UsageError('--reason', 'must say why');
        const actor = actorOf(o.actor);
        const sparkpost = operatorSparkPost('suppression remove');
        const client = await ctx.getClient();
        const subaccountId = await subaccountOf(client, instance);
        const { masked, hash } = (await hasher(process.env.SPARKPOST_API_KEY ?? ''))(recipient);
        const entries = (await sparkpost.getSuppression(subaccountId, recipient)).filter(
          (e) => e.subaccountId === subaccountId,
        );
        if (entries.length === 0) {
          throw new OperationFailed(`${masked} is not on the suppression list of ${instance}`);
        }
        const complaint = entries.some((e) => e.source === SPAM_COMPLAINT);
        const base: SuppressionAuditRecord = {
          requestId: randomUUID(),
          at: new Date().toISOString(),
          actor,
          reason,
          recipientMasked: masked,
          recipientHash: hash,
          source: [...new Set(entries.map((e) => e.source))].join(', '),
          type: entries.map((e) => e.type).join(', '),
          forced: o.force === true,
          outcome: 'requested',
        };
        if (complaint && !o.force) {
          const message =
            'the entry is a spam complaint: the recipient asked not to get this mail; remove it only with --force';
          await audit(client, instance, { ...base, outcome: 'refused', message, finishedAt: base.at });
          throw new OperationFailed(`${masked}: ${message}`);
        }
        // Audited before the change: if this fails, nothing was removed.
        await audit(client, instance, base);
        let final: SuppressionAuditRecord;
        try {
          const removed = await sparkpost.deleteSuppression(subaccountId, recipient);
          final = {
            ...base,
            outcome: 'removed',
            message: removed ? `removed (${base.source})` : 'already gone',
            finishedAt: new Date().toISOString(),
          };
        } catch (err) {
          const refused = isVendorError(err) && err.kind === 'forbidden';
          final = {
            ...base,
            outcome: refused ? 'refused' : 'failed',
            message: refused
              ? 'SparkPost keeps this entry (compliance): it cannot be removed'
              : scrubAddresses(err instanceof Error ? err.message : String(err)),
            finishedAt: new Date().toISOString(),
          };
        }
        await audit(client, instance, final);
        if (final.outcome !== 'removed') throw new OperationFailed(`${masked}: ${final.message}`, final);
        ctx.emit(opts, final, `${instance}: ${masked} ${final.message}; audited as ${final.requestId} (${actor})\n`);
      },
    );
};
