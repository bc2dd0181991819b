/**
 * `smtpctl why <instance> <email>`: "why didn't my user get the email?" — the recipient's recent message events of
 * that instance's subaccount only (SparkPost keeps 10 days), its suppression entry and why, and a one-line verdict.
 * `smtpctl suppression list|remove` lives in suppression.ts; both read SparkPost directly with the operator key from
 * this process's environment (direct.ts), so the address never enters a workflow history; the subaccount id comes
 * from the instance's status. Every query is scoped to that subaccount, and anything SparkPost returns for another
 * subaccount is dropped before it is shown. Nothing printed holds the address: it is masked, and addresses quoted in
 * bounce reasons are scrubbed.
 */
import type { Command } from 'commander';
import { scrubAddresses, maskAddress } from '../../lib/recipients';
import type { CliContext, CommandModule, GlobalOpts } from '../smtpctl';
import { validate } from '../validation';
import { checkAddress, operatorSparkPost, subaccountOf } from './direct';
import { registerProtectionCommands } from './protection';
import { registerSuppressionCommands } from './suppression';
import { registerWebhookCommands } from './webhooks';

/** One message event of the recipient, without the address. */
export interface RecipientEvent {
  type: string;
  timestamp: string;
  subaccountId: number;
  eventId?: string;
  messageId?: string;
  subject?: string;
  bounceClass?: string;
  reason?: string;
  errorCode?: string;
}

/** One suppression entry of the recipient (one per type), without the address. */
export interface SuppressionEntry {
  type: string;
  source: string;
  description?: string;
  created?: string;
  updated?: string;
  subaccountId: number | null;
}

/** Where `why` reads from (SparkPost with the operator key; a stand-in in tests). */
export interface WhySource {
  /** The recipient's message events of one subaccount, newest first. */
  recipientEvents(subaccountId: number, recipient: string): Promise<RecipientEvent[]>;
  /** The recipient's suppression entries of one subaccount ([] when not listed). */
  suppressionOf(subaccountId: number, recipient: string): Promise<SuppressionEntry[]>;
}

/** What `why --json` prints. */
export interface WhyReport {
  instance: string;
  subaccountId: number;
  /** The address, masked. */
  recipient: string;
  events: RecipientEvent[];
  suppression: SuppressionEntry[];
  verdict: string;
  /** Events dropped because SparkPost returned them for another subaccount (should be 0). */
  droppedForeign: number;
}

/** Bounce classes (sparkpost.md) in plain words. */
export const BOUNCE_CLASSES: Record<string, string> = {
  '1': 'undetermined',
  '10': 'invalid recipient: the mailbox does not exist',
  '20': 'soft bounce',
  '21': 'DNS failure',
  '22': 'mailbox full',
  '23': 'message too large',
  '24': 'timeout',
  '25': 'admin failure',
  '30': 'generic bounce: no RCPT',
  '40': 'generic bounce',
  '50': 'mail block',
  '51': 'spam block',
  '52': 'spam content',
  '53': 'prohibited attachment',
  '54': 'relay denied',
  '60': 'auto-reply',
  '70': 'transient failure',
  '80': 'subscribe',
  '90': 'unsubscribe',
  '100': 'challenge-response',
};

const HARD = new Set(['10', '30', '90', '25']);
const BLOCK = new Set(['50', '51', '52', '53', '54']);

function day(ts: string): string {
  const t = Date.parse(ts);
  return Number.isNaN(t) ? ts : new Date(t).toISOString().slice(0, 10);
}

function classText(cls: string | undefined): string {
  return cls ? `${BOUNCE_CLASSES[cls] ?? 'unknown class'} (class ${cls})` : 'no class given';
}

/** The one-line verdict from the events (newest first) and the suppression entries. */
export function verdictOf(events: RecipientEvent[], suppression: SuppressionEntry[]): string {
  const latest = events[0];
  let main: string;
  if (!latest) {
    main = 'no message events for this address in the last 10 days (SparkPost keeps 10 days of events)';
  } else {
    const on = day(latest.timestamp);
    const why = latest.reason ? `: ${latest.reason}` : '';
    switch (latest.type) {
      case 'delivery':
        main = `delivered on ${on}: the receiving server accepted it (check the user's spam folder and filters)`;
        break;
      case 'bounce':
      case 'out_of_band': {
        const kind = latest.type === 'out_of_band' ? 'out-of-band bounce' : 'bounce';
        const cls = latest.bounceClass;
        const severity = cls && HARD.has(cls) ? 'hard' : cls && BLOCK.has(cls) ? 'block' : 'soft';
        main = `${severity} ${kind} on ${on}: ${classText(cls)}${why}`;
        break;
      }
      case 'delay':
        main = `delayed on ${on}: SparkPost is still retrying${why}`;
        break;
      case 'injection':
        main = `accepted by SparkPost on ${on}, no delivery outcome yet`;
        break;
      case 'policy_rejection':
      case 'generation_rejection':
      case 'generation_failure':
        main = `rejected by SparkPost on ${on} before sending (${latest.type.replace(/_/g, ' ')})${why}`;
        break;
      case 'spam_complaint':
        main = `the recipient reported a message as spam on ${on}`;
        break;
      default:
        main = `last event ${latest.type} on ${on}`;
    }
  }
  if (suppression.length === 0) return main;
  const first = [...suppression].sort((a, b) => (a.created ?? '').localeCompare(b.created ?? ''))[0];
  const since = first.created ? ` since ${day(first.created)}` : '';
  const what = suppression.map((s) => `${s.type}, ${s.source}${s.description ? `: ${s.description}` : ''}`).join('; ');
  return `${main}; suppressed${since} (${what}): SparkPost drops mail to this address until it is removed`;
}

/** Where an event type sits in a message's life, to order events of the same second. */
function stage(type: string): number {
  const order = [
    'injection',
    'delay',
    'policy_rejection',
    'generation_rejection',
    'generation_failure',
    'delivery',
    'bounce',
    'out_of_band',
    'spam_complaint',
  ];
  const i = order.indexOf(type);
  return i < 0 ? order.length : i;
}

/** Builds the report for one recipient of one subaccount (all scoping happens here). */
export async function explainRecipient(
  source: WhySource,
  instance: string,
  subaccountId: number,
  recipient: string,
): Promise<WhyReport> {
  const [rawEvents, rawSuppression] = await Promise.all([
    source.recipientEvents(subaccountId, recipient),
    source.suppressionOf(subaccountId, recipient),
  ]);
  // Never another subaccount's data, even if a filter were ignored upstream.
  const events = rawEvents
    .filter((e) => e.subaccountId === subaccountId)
    .map((e) => ({
      ...e,
      ...(e.reason !== undefined ? { reason: scrubAddresses(e.reason) } : {}),
      ...(e.subject !== undefined ? { subject: scrubAddresses(e.subject, 120) } : {}),
    }))
    // Newest first; at the same second, the later stage of a message's life (delivery after injection) first.
    .sort((a, b) => Date.parse(b.timestamp) - Date.parse(a.timestamp) || stage(b.type) - stage(a.type));
  const suppression = rawSuppression
    .filter((s) => s.subaccountId === null || s.subaccountId === subaccountId)
    .map((s) => ({ ...s, ...(s.description !== undefined ? { description: scrubAddresses(s.description) } : {}) }));
  return {
    instance,
    subaccountId,
    recipient: maskAddress(recipient),
    events,
    suppression,
    verdict: verdictOf(events, suppression),
    droppedForeign: rawEvents.length - events.length,
  };
}

function human(r: WhyReport): string {
  const lines = [`${r.instance} → ${r.recipient}: ${r.verdict}`, ''];
  if (r.events.length === 0) lines.push('events: none in the last 10 days');
  for (const e of r.events.slice(0, 50)) {
    const cls = e.bounceClass ? ` class ${e.bounceClass}` : '';
    lines.push(`  ${e.timestamp}  ${e.type.padEnd(20)}${cls}${e.reason ? `  ${e.reason}` : ''}`);
  }
  if (r.events.length > 50) lines.push(`  … ${r.events.length - 50} older events (use --json)`);
  lines.push(r.suppression.length ? 'suppression:' : 'suppression: not listed');
  for (const s of r.suppression) {
    lines.push(
      `  ${s.type.padEnd(18)}${s.source}${s.created ? ` since ${s.created}` : ''}${s.description ? `: ${s.description}` : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Registers `why`, and the other issue-13 commands (suppression, webhooks, protection) with one line in smtpctl. */
export const registerIssue13Commands: CommandModule = (program: Command, ctx: CliContext) => {
  program
    .command('why')
    .description("a recipient's recent events and suppression entry for this instance only, and a verdict")
    .argument('<instance>', 'instance slug')
    .argument('<email>', 'the recipient (read directly from SparkPost; never stored or printed)')
    .action(async (instanceArg: string, emailArg: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals() as GlobalOpts;
      const instance = validate.instance(instanceArg);
      const recipient = checkAddress(emailArg);
      const sparkpost = sparkpostWhySource(operatorSparkPost('why'));
      const subaccountId = await subaccountOf(await ctx.getClient(), instance);
      const report = await explainRecipient(sparkpost, instance, subaccountId, recipient);
      ctx.emit(opts, report, human(report));
    });
  registerSuppressionCommands(program, ctx);
  registerWebhookCommands(program, ctx);
  registerProtectionCommands(program, ctx);
};

/** The SparkPost calls `why` makes, as a WhySource (the client's issue-11 event search and suppression lookup). */
export function sparkpostWhySource(sp: ReturnType<typeof operatorSparkPost>): WhySource {
  return {
    async recipientEvents(subaccountId, recipient) {
      const events = await sp.searchMessageEvents({ subaccountId, recipients: [recipient], maxPages: 10 });
      return events.map((e) => {
        const out: RecipientEvent = { type: e.type, timestamp: e.timestamp, subaccountId: e.subaccountId };
        out.eventId = e.eventId;
        if (e.messageId) out.messageId = e.messageId;
        if (e.subject !== undefined) out.subject = e.subject;
        if (e.bounceClass !== undefined) out.bounceClass = e.bounceClass;
        if (e.reason !== undefined) out.reason = e.reason;
        if (e.errorCode !== undefined) out.errorCode = e.errorCode;
        return out;
      });
    },
    async suppressionOf(subaccountId, recipient) {
      const entries = await sp.getSuppression(subaccountId, recipient);
      return entries.map((x) => ({
        type: x.type,
        source: x.source,
        description: x.description,
        ...(x.created ? { created: x.created } : {}),
        ...(x.updated ? { updated: x.updated } : {}),
        subaccountId: x.subaccountId,
      }));
    },
  };
}
