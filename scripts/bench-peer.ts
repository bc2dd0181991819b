/**
 * The benchmark's peer (scripts/bench.ts starts it): the seeds' way of enabling managed SMTP, a plain script that
 * makes an enable's vendor calls in sequence, with no Temporal. It calls the very same activity functions
 * (createActivities over the vendor clients in vendors/), in the order the entity workflow does on a first enable,
 * configured by the same environment as the worker. Driven over IPC: `{ op: 'run', instances, concurrency }` in,
 * the per-instance times, what each enable recorded (for seeding a fleet), CPU seconds and peak RSS out.
 */
import { createActivities, type SiteRef } from '../activities';
import type { EmulatedInstance } from '../emulators/stack';
import type { EmailSettings } from '../lib/site-config';
import type { TestEmailRecord } from '../lib/types';
import { loadWorkerConfig } from '../worker/config';
import { vendorDeps } from '../worker/vendors';

/** What one plain enable did: its time and the facts the entity would have recorded. */
export interface PeerEnable {
  name: string;
  ms: number;
  error?: string;
  subaccountId?: number;
  keyId?: string;
  secretVersion?: string;
  sender?: string;
  previous?: EmailSettings;
  lastTestEmail?: TestEmailRecord;
}

/** The result of one run. */
export interface PeerRun {
  wallMs: number;
  enables: PeerEnable[];
  cpuSeconds: number;
  peakRssBytes: number;
}

// The worker's own configuration path and vendor clients (allow-list, egress guard and all), so the two sides differ
// only in Temporal.
const activities = createActivities(vendorDeps(loadWorkerConfig(process.env)));

/** A first enable, step by step as the entity workflow runs it (inspect, subaccount, key, site config, test). */
async function enable(i: EmulatedInstance): Promise<PeerEnable> {
  const started = performance.now();
  // The same SiteRef the entity builds (workflows/instance/shared.ts siteOf): the project lets the activity check that
  // the admin token is the instance's own, the instance that no other instance has claimed the project.
  const site: SiteRef = {
    sourcegraphUrl: i.sourcegraphUrl,
    adminTokenSecret: i.adminTokenSecret,
    gcpProject: i.gcpProject,
    instance: i.name,
  };
  try {
    const inspection = await activities.inspectSiteConfig(site);
    const existing = await activities.findSubaccount({ instance: i.name });
    const sub = await activities.ensureSubaccount({
      instance: i.name,
      knownId: existing?.id ?? null,
      ...(existing === null ? { absentAtStart: true } : {}),
    });
    const key = await activities.ensureSendKey({
      instance: i.name,
      gcpProject: i.gcpProject,
      subaccountId: sub.id,
      ...(existing === null ? { freshSubaccount: true } : {}),
    });
    const { sender } = await activities.applyManagedSiteConfig({
      ...site,
      instance: i.name,
      secretVersion: key.secretVersion,
      guard: inspection.ownership === 'customer' ? 'any' : 'managed-or-none',
    });
    const lastTestEmail = await activities.sendTestEmail(site);
    return {
      name: i.name,
      ms: performance.now() - started,
      subaccountId: sub.id,
      keyId: key.keyId,
      secretVersion: key.secretVersion,
      sender,
      previous: inspection.previous,
      lastTestEmail,
    };
  } catch (err) {
    return { name: i.name, ms: performance.now() - started, error: err instanceof Error ? err.message : String(err) };
  }
}

async function run(instances: EmulatedInstance[], concurrency: number): Promise<PeerRun> {
  const cpu0 = process.cpuUsage();
  let peakRssBytes = process.memoryUsage.rss();
  const sampler = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss())), 100);
  const enables: PeerEnable[] = new Array<PeerEnable>(instances.length);
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, instances.length) }, async () => {
      while (next < instances.length) {
        const n = next++;
        enables[n] = await enable(instances[n]);
      }
    }),
  );
  const wallMs = performance.now() - started;
  clearInterval(sampler);
  const cpu = process.cpuUsage(cpu0);
  return {
    wallMs,
    enables,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssBytes: Math.max(peakRssBytes, process.memoryUsage.rss()),
  };
}

process.on('message', (msg: { id: number; op: 'run'; instances: EmulatedInstance[]; concurrency: number }) => {
  run(msg.instances, msg.concurrency).then(
    (result) => process.send!({ id: msg.id, result }),
    (err: unknown) => process.send!({ id: msg.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });
