/**
 * The dev stack's part of issue 13: the SparkPost event receiver (the same WebhookService as `npm run webhooks`)
 * registered with the emulated SparkPost, and demo traffic. Once `smtpctl enable demo` created the demo subaccount,
 * a few deliveries and bounces are seeded (so `smtpctl why demo bob@demo.example` has something to explain), and
 * `POST /demo/complaints` on the state page adds a complaint burst at volume (the ladder goes to quarantine).
 */
import type { Client } from '@temporalio/client';
import type { EmulatorStack } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import { SparkPostClient } from '../vendors/sparkpost';
import { SubaccountListResolver, WebhookService } from '../worker/webhook-service';
import { protectionSignal } from '../contract/messages';

/** The demo recipients and what happens to them. */
export const DEMO_RECIPIENTS = {
  delivered: 'alice@demo.example',
  bounced: 'bob@demo.example',
  complained: 'carol@demo.example',
  unknown: 'dave@demo.example',
};

/** What startDevEvents started. */
export interface DevEvents {
  service: WebhookService;
  /** Adds a complaint burst at volume to the demo subaccount; null when demo is not enabled yet. */
  complaintBurst(): number | null;
  close(): Promise<void>;
}

/** Starts the receiver, installs it as the emulator's webhook, and seeds demo traffic once demo has a subaccount. */
export async function startDevEvents(opts: {
  stack: EmulatorStack;
  temporal: Client;
  port: number;
  log: (line: string) => void;
}): Promise<DevEvents> {
  const { stack } = opts;
  const sparkpost = new SparkPostClient({ baseUrl: stack.sparkpost.url, apiKey: stack.operatorKey });
  const password = `dev-${Math.random().toString(36).slice(2)}-webhooks`;
  const service = await WebhookService.start({
    port: opts.port,
    username: 'sparkpost',
    password,
    flushMs: 5000,
    resolver: new SubaccountListResolver(sparkpost, 60_000, 2000),
    signal: (instance, request) =>
      opts.temporal.workflow.getHandle(workflowIdFor(instance)).signal(protectionSignal, request),
    log: opts.log,
  });
  await sparkpost.createWebhook({
    name: 'managed-smtp events (dev)',
    target: `${service.origin}/`,
    events: ['delivery', 'bounce', 'out_of_band', 'spam_complaint', 'policy_rejection', 'generation_rejection'],
    basicAuth: { username: 'sparkpost', password },
  });

  const demoId = () =>
    stack.sparkpost.state.subaccounts.find((s) => s.name === 'demo' && s.status !== 'terminated')?.id ?? null;
  let seeded = false;
  const timer = setInterval(() => {
    const id = demoId();
    if (seeded || id === null) return;
    seeded = true;
    const ago = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
    stack.sparkpost.addEvents(id, [
      { type: 'injection', rcpt_to: DEMO_RECIPIENTS.delivered, timestamp: ago(30) },
      { type: 'delivery', rcpt_to: DEMO_RECIPIENTS.delivered, timestamp: ago(30) },
      { type: 'injection', rcpt_to: DEMO_RECIPIENTS.bounced, timestamp: ago(20) },
      {
        type: 'bounce',
        rcpt_to: DEMO_RECIPIENTS.bounced,
        timestamp: ago(20),
        bounce_class: '10',
        reason: '550 5.1.1 <bob@demo.example>: Recipient address rejected: User unknown',
        raw_reason: '550 5.1.1 <bob@demo.example>: Recipient address rejected: User unknown',
        error_code: '550',
      },
      { type: 'injection', rcpt_to: DEMO_RECIPIENTS.complained, timestamp: ago(10) },
      { type: 'delivery', rcpt_to: DEMO_RECIPIENTS.complained, timestamp: ago(10) },
      { type: 'spam_complaint', rcpt_to: DEMO_RECIPIENTS.complained, timestamp: ago(5) },
    ]);
    opts.log(
      `dev: seeded demo traffic (subaccount ${id}): try  npx smtpctl why demo ${DEMO_RECIPIENTS.bounced}  ` +
        `(also ${DEMO_RECIPIENTS.delivered}, ${DEMO_RECIPIENTS.complained}, ${DEMO_RECIPIENTS.unknown})`,
    );
  }, 1000);
  timer.unref();

  return {
    service,
    complaintBurst() {
      const id = demoId();
      if (id === null) return null;
      const events = Array.from({ length: 400 }, (_, n) => ({
        type: 'delivery',
        rcpt_to: `reader${n}@demo.example`,
      }));
      for (let n = 0; n < 8; n++) events.push({ type: 'spam_complaint', rcpt_to: `reader${n}@demo.example` });
      stack.sparkpost.addEvents(id, events);
      return events.length;
    },
    async close() {
      clearInterval(timer);
      await service.close();
    },
  };
}
