/**
 * The chaos suite: N instances enabled at once through ManagedSmtpClient while every vendor misbehaves (SparkPost
 * 5xx, 429 and dropped responses; Secret Manager UNAVAILABLE and drops; Sourcegraph 5xx, drops and concurrent human
 * edits of the site configuration; the SMTP relay refusing the test email with 451), worker processes are SIGKILLed
 * mid-flight and restarted, and the Temporal dev server is SIGTERMed and restarted on its SQLite file. Then the faults
 * stop, every instance must settle, and the invariant (test/helpers/invariants.ts) must hold for all of them: one
 * subaccount, one live key, one matching secret version, the managed settings in the raw site configuration, no
 * human edit lost.
 *
 *   npx tsx scripts/chaos.ts [--preset heavy] [--instances 40] [--seed 1] [--runs 1] [--kills 4] [--restarts 1]
 *                            [--window 40] [--scale 1]
 *
 * `--window` is how long (seconds) faults stay on after the enables; `--scale` multiplies every fault rate.
 * `--preset heavy` is issue 15's operator run: 12 instances enabled at once; every SparkPost call 20 % 5xx, 10 % 429,
 * 5 % applied-then-hung (the response never comes, the client times out); Secret Manager 10 % UNAVAILABLE; 30 % of
 * the instances get a human edit racing their site-configuration write; a worker SIGKILLed twice; the Temporal server
 * restarted once. Its faults stay on until every instance is active, and a run passes only when the last one is
 * active within 120 s. Every run reports the time until the last instance was active and the longest time any
 * subaccount held two live send keys (from the emulator's key records: minted and revoked times).
 *
 * Fault decisions and the chaos schedule come from seeded PRNGs, so a seed injects the same sequence of faults and
 * events; the interleaving of concurrent requests (and so which request gets which fault) still varies a little.
 * Exits 1 when any run did not converge. Importable: `runChaos(opts)` returns the figures.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { ManagedSmtpClient } from '../client';
import { EmulatorStack, specFor, type EmulatedInstance } from '../emulators/stack';
import { SEND_KEY_LABEL, workflowIdFor } from '../lib/instance';
import { STATE_KEY } from '../lib/search-attributes';
import type { InstanceState } from '../lib/types';
import {
  applyHumanEdit,
  DevServer,
  humanEditMarkers,
  seededRandom,
  WorkerProcess,
  type WorkerLogLine,
} from '../test/helpers/chaos';
import { checkInvariants, type InstanceFinding, type InstanceRef } from '../test/helpers/invariants';
import { workflowBundleOptions } from '../worker/bundle';
import { findTemporalCli } from './temporal-cli';

/** Fault rates per request, by emulator. */
export interface ChaosRates {
  sparkpost: { error: number; rateLimit: number; drop: number };
  secretManager: { error: number; drop: number };
  sourcegraph: { error: number; drop: number };
  /** The SMTP relay answering the test email with a 451. */
  relay: { error: number };
  /** Probability that an instance's next config write races with a second human edit too (every one gets one). */
  doubleRace: number;
  /** Background human edits (not tied to a write) per second, across all instances, during the chaos window. */
  humanEditsPerSecond: number;
  /** Share of instances whose next config write races with a human edit (default 1: every one). */
  raceRate?: number;
  /** How long an applied-then-dropped SparkPost response hangs before the connection is cut (default 0: at once). */
  sparkpostHangMs?: number;
}

/** The default rates: high enough that every instance meets faults, low enough that a run ends in minutes. */
export const DEFAULT_RATES: ChaosRates = {
  sparkpost: { error: 0.1, rateLimit: 0.1, drop: 0.1 },
  secretManager: { error: 0.1, drop: 0.05 },
  sourcegraph: { error: 0.1, drop: 0.05 },
  relay: { error: 0.1 },
  doubleRace: 0.3,
  humanEditsPerSecond: 2,
};

/** A named set of options (`--preset NAME`). */
export interface ChaosPreset {
  instances: number;
  workerKills: number;
  serverRestarts: number;
  chaosMs: number;
  rates: ChaosRates;
  faultsUntilActive: boolean;
  convergeWithinMs: number;
}

/** Issue 15's heavy preset (see the file comment); the CI-sized chaos test runs it too. */
export const HEAVY_PRESET: ChaosPreset = {
  instances: 12,
  workerKills: 2,
  serverRestarts: 1,
  // The kills and the restart fall in the first 45 s, while instances are still provisioning.
  chaosMs: 45_000,
  rates: {
    sparkpost: { error: 0.2, rateLimit: 0.1, drop: 0.05 },
    secretManager: { error: 0.1, drop: 0 },
    sourcegraph: { error: 0, drop: 0 },
    relay: { error: 0 },
    doubleRace: 0,
    humanEditsPerSecond: 0,
    raceRate: 0.3,
    // Longer than the vendor client's 15 s timeout: the client gives up without an answer.
    sparkpostHangMs: 20_000,
  },
  faultsUntilActive: true,
  convergeWithinMs: 120_000,
};

/** Presets by name. */
export const PRESETS: Readonly<Record<string, ChaosPreset>> = { heavy: HEAVY_PRESET };

/** Options of runChaos. */
export interface ChaosOptions {
  /** How many instances (default 40). */
  instances?: number;
  /** Seed of the faults and the schedule (default 1). */
  seed?: number;
  /** Worker processes (default 2). */
  workers?: number;
  /** SIGKILLs of a worker during the chaos window (default 4). */
  workerKills?: number;
  /** SIGTERM + restarts of the Temporal server during the chaos window (default 1). */
  serverRestarts?: number;
  /** How long faults stay on after the enables are sent, in ms (default 40 s). */
  chaosMs?: number;
  /** How long instances get to settle once faults are off, in ms (default 5 min). */
  settleTimeoutMs?: number;
  rates?: ChaosRates;
  /**
   * Keep the faults on after the chaos window until every instance is active (or the settle timeout), instead of
   * turning them off at the end of the window.
   */
  faultsUntilActive?: boolean;
  /** A run passes only when the last instance was active within this many ms of the enables (default: no limit). */
  convergeWithinMs?: number;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Path of the temporal binary (default: findTemporalCli()). */
  temporalCli?: string;
}

/** Faults injected by each emulator, by kind. */
export interface InjectedFaults {
  sparkpost: { error: number; rateLimit: number; drop: number };
  secretManager: { error: number; rateLimit: number; drop: number };
  sourcegraph: { error: number; rateLimit: number; drop: number };
  relay: { error: number; rateLimit: number; drop: number };
  /** Human edits applied: racing a config write, and in the background. */
  humanEdits: { raced: number; background: number };
}

/** What one chaos run measured. */
export interface ChaosFigures {
  seed: number;
  instances: number;
  /** Instances for which the whole invariant held at the end. */
  converged: number;
  orphans: number;
  duplicates: number;
  lostEdits: number;
  /** Instances whose enable ended `failed` under the faults (then checked for a clean undo and enabled again). */
  failedUnderFaults: number;
  /** Of those, how many had left something behind after their compensation. */
  dirtyFailures: number;
  /** Instances that had not settled by the deadline. */
  unsettled: string[];
  injected: InjectedFaults;
  workerKills: number;
  serverRestarts: number;
  /** Worker exits nobody asked for (each was restarted). */
  unexpectedWorkerExits: number;
  /** Instances still provisioning when each kill or restart happened (evidence the chaos hit work in flight). */
  inFlightAtEvents: number[];
  /** From the workflow histories: activity attempts retried, those whose previous attempt timed out (a killed
   * worker or a lost completion), and workflow tasks that timed out (a killed worker's sticky queue). */
  history: { activityRetries: number; activityTimeouts: number; workflowTaskTimeouts: number };
  /** From the start of the run to the final check, in ms. */
  wallMs: number;
  /** From faults off until every instance settled, in ms. */
  settleMs: number;
  /** From the enables until the last instance was first seen active (polled every second), in ms; null: not all were. */
  lastActiveMs: number | null;
  /** The limit on lastActiveMs a run must meet (null: none). */
  convergeWithinMs: number | null;
  /** The longest time one subaccount held two or more live send keys, in ms, from the emulator's key records. */
  twoKeyWindow: { ms: number; instance: string | null };
  /** Findings of instances that did not converge (empty when all did). */
  problems: InstanceFinding[];
}

const TERMINAL: ReadonlySet<InstanceState> = new Set(['active', 'failed', 'customer-managed', 'disabled']);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Comments of the emulator's default site configuration: the instance's own text, which must survive too. */
const ORIGINAL_MARKERS = [
  '// The externally accessible URL for Sourcegraph',
  '// Builtin username/password sign-in only; sign-up is by invitation.',
];

let bundled: Promise<string> | null = null;

/**
 * The workflow code bundled once per process, as the container image does (scripts/bundle-workflows.ts): a worker
 * restarted after a SIGKILL polls again within seconds, like a restarted pod, instead of bundling for a minute.
 */
function workflowBundle(): Promise<string> {
  bundled ??= bundleWorkflowCode(workflowBundleOptions()).then(({ code }) => code);
  return bundled;
}

/** One chaos run. Throws only when the set-up itself fails; convergence problems come back in the figures. */
export async function runChaos(opts: ChaosOptions = {}): Promise<ChaosFigures> {
  const n = opts.instances ?? 40;
  const seed = opts.seed ?? 1;
  const rates = opts.rates ?? DEFAULT_RATES;
  const chaosMs = opts.chaosMs ?? 40_000;
  const kills = opts.workerKills ?? 4;
  const restarts = opts.serverRestarts ?? 1;
  const started = Date.now();
  const log =
    opts.log ??
    ((line: string) => process.stderr.write(`[chaos +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`));
  const cli = opts.temporalCli ?? findTemporalCli();
  if (!cli) throw new Error('no temporal CLI binary (see scripts/temporal-cli.ts)');
  const rand = seededRandom(seed);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'managed-smtp-chaos-'));
  const workerLogs: WorkerLogLine[] = [];
  const workers: Array<WorkerProcess | null> = [];
  let stack: EmulatorStack | null = null;
  let server: DevServer | null = null;
  let connection: Connection | null = null;
  let stopping = false;
  let keepDir = false;
  try {
    stack = await EmulatorStack.start();
    const st = stack;
    const instances: EmulatedInstance[] = [];
    for (let i = 1; i <= n; i++) instances.push(st.addInstance(`chaos-${String(i).padStart(3, '0')}`));
    const edits = new Map<string, string[]>(instances.map((i) => [i.name, [...ORIGINAL_MARKERS]]));
    const injectedEdits = { raced: 0, background: 0 };
    let editSeq = 0;
    const edit = (name: string, kind: 'raced' | 'background') => (text: string) => {
      const id = `${kind}-${seed}-${++editSeq}`;
      edits.get(name)!.push(...humanEditMarkers(id));
      injectedEdits[kind]++;
      return applyHumanEdit(text, id);
    };

    server = await DevServer.start({ cli, dbFile: path.join(dir, 'chaos.db') });
    const srv = server;
    log(`temporal dev server on ${srv.address}, db ${path.join(dir, 'chaos.db')}`);
    const taskQueue = `chaos-${seed}`;
    const bundlePath = path.join(dir, 'workflow-bundle.js');
    writeFileSync(bundlePath, await workflowBundle());
    const env = {
      ...st.workerEnv(taskQueue),
      TEMPORAL_ADDRESS: srv.address,
      TEMPORAL_NAMESPACE: 'default',
      MANAGED_SMTP_WORKFLOW_BUNDLE: bundlePath,
    };

    // Worker slots: a worker that dies without being killed by us is counted and restarted.
    let unexpectedExits = 0;
    const killing = new Set<WorkerProcess>();
    const startWorker = async (slot: number): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          const w = await WorkerProcess.start({ name: `w${slot}`, env, sink: workerLogs });
          workers[slot] = w;
          w.child.once('exit', () => {
            if (stopping || killing.has(w) || workers[slot] !== w) return;
            unexpectedExits++;
            log(`worker w${slot} exited by itself; restarting`);
            workers[slot] = null;
            void startWorker(slot).catch((err) => log(`could not restart w${slot}: ${String(err)}`));
          });
          return;
        } catch (err) {
          // A worker cannot connect while the server restarts: try again (bounded).
          if (attempt >= 5 || stopping) throw err;
          await sleep(1000);
        }
      }
    };
    await Promise.all(Array.from({ length: opts.workers ?? 2 }, (_, slot) => startWorker(slot)));
    log(`${workers.length} worker processes polling ${taskQueue}`);

    connection = await Connection.connect({ address: srv.address });
    const temporal = new Client({ connection, namespace: 'default' });
    const client = new ManagedSmtpClient(temporal, taskQueue);

    // Visibility (search attributes), not queries: watching must not load the workers.
    const states = new Map<string, InstanceState>();
    const refreshStates = async (): Promise<boolean> => {
      try {
        for await (const wf of temporal.workflow.list({ query: `WorkflowType = 'managedSmtpWorkflow'` })) {
          const s = wf.typedSearchAttributes.get(STATE_KEY);
          const name = wf.workflowId.replace(/^managed-smtp\//, '');
          if (s) states.set(name, s as InstanceState);
        }
        return true;
      } catch {
        return false; // the server may be restarting
      }
    };
    const inFlight = () => instances.filter((i) => states.get(i.name) === 'provisioning').length;
    // What a straggler is waiting on, so slow can be told from stuck: its pending activities (the failure messages
    // name no secret) or, with none pending, its workflow task.
    const logPending = async (pendingInstances: readonly EmulatedInstance[]): Promise<void> => {
      for (const i of pendingInstances.slice(0, 3)) {
        try {
          const d = await temporal.workflow.getHandle(workflowIdFor(i.name)).describe();
          const acts = d.raw.pendingActivities ?? [];
          const what = acts.length
            ? acts
                .map(
                  (a) =>
                    `${a.activityType?.name ?? '?'} attempt ${a.attempt ?? '?'} (${String(a.state)}), last failure: ` +
                    `${(a.lastFailure?.message ?? 'none').slice(0, 160)}`,
                )
                .join('; ')
            : `no pending activity; workflow task ${d.raw.pendingWorkflowTask ? `attempt ${d.raw.pendingWorkflowTask.attempt}` : 'none'}`;
          log(`  ${i.name} (${states.get(i.name) ?? '?'}): ${what}`);
        } catch (err) {
          log(`  ${i.name}: describe failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
        }
      }
    };

    // Faults on; every instance's next config write races with a human edit (some with two).
    st.sparkpost.faults.set({
      errorRate: rates.sparkpost.error,
      rateLimitRate: rates.sparkpost.rateLimit,
      dropResponseRate: rates.sparkpost.drop,
      seed: seed * 3 + 1,
    });
    st.secretManager.faults.set({
      errorRate: rates.secretManager.error,
      dropResponseRate: rates.secretManager.drop,
      seed: seed * 3 + 2,
    });
    st.sourcegraph.faults.set({
      errorRate: rates.sourcegraph.error,
      dropResponseRate: rates.sourcegraph.drop,
      seed: seed * 3 + 3,
    });
    st.relay.faults.set({ errorRate: rates.relay.error, seed: seed * 3 + 4 });
    st.sparkpost.faults.set({ hangMs: rates.sparkpostHangMs ?? 0 });
    for (const i of instances) {
      if (rates.raceRate !== undefined && rand() >= rates.raceRate) continue;
      const races = 1 + (rand() < rates.doubleRace ? 1 : 0);
      st.sourcegraph.raceNextWrites(i.name, races, edit(i.name, 'raced'));
    }

    const enableStart = Date.now();
    // When each instance was first seen active, polled every second from here on (a failed poll is skipped).
    const activeAt = new Map<string, number>();
    let polling = false;
    const activePoller = setInterval(() => {
      if (polling || activeAt.size === n) return;
      polling = true;
      void refreshStates()
        .then(() => {
          const now = Date.now();
          for (const i of instances)
            if (states.get(i.name) === 'active' && !activeAt.has(i.name)) activeAt.set(i.name, now);
        })
        .finally(() => (polling = false));
    }, 1000);
    await Promise.all(instances.map((i) => client.enable(i.name, specFor(i))));
    log(
      `${n} enables sent; faults on for ${chaosMs / 1000}s${opts.faultsUntilActive ? ' and until every instance is active' : ''}`,
    );

    // The schedule: kills spread over the window, server restarts around its middle.
    type ChaosEvent = { at: number; kind: 'kill' | 'restart' };
    const events: ChaosEvent[] = [];
    for (let k = 0; k < kills; k++) {
      events.push({ at: ((k + 0.5 + (rand() - 0.5) * 0.6) / kills) * chaosMs * 0.9, kind: 'kill' });
    }
    for (let r = 0; r < restarts; r++) {
      events.push({ at: ((r + 0.5 + (rand() - 0.5) * 0.4) / restarts) * chaosMs * 0.8, kind: 'restart' });
    }
    events.sort((a, b) => a.at - b.at);

    const background = setInterval(
      () => {
        const i = instances[Math.floor(rand() * instances.length)];
        try {
          st.sourcegraph.humanEdit(i.name, edit(i.name, 'background'));
        } catch (err) {
          log(`human edit failed: ${String(err)}`);
        }
      },
      Math.max(50, Math.round(1000 / Math.max(0.001, rates.humanEditsPerSecond))),
    );
    let workerKills = 0;
    let serverRestarts = 0;
    const inFlightAtEvents: number[] = [];
    try {
      for (const ev of events) {
        await sleep(Math.max(0, enableStart + ev.at - Date.now()));
        await refreshStates();
        inFlightAtEvents.push(inFlight());
        if (ev.kind === 'kill') {
          const slot = Math.floor(rand() * workers.length);
          const w = workers[slot];
          if (!w) continue;
          killing.add(w);
          log(`SIGKILL worker w${slot} (pid ${w.pid}); ${inFlight()} instances provisioning`);
          await w.stop('SIGKILL');
          workerKills++;
          await startWorker(slot);
          log(`worker w${slot} restarted (pid ${workers[slot]?.pid})`);
        } else {
          log(`SIGTERM temporal server; ${inFlight()} instances provisioning`);
          const t = Date.now();
          await srv.restart();
          serverRestarts++;
          log(`temporal server restarted on the same database in ${((Date.now() - t) / 1000).toFixed(1)}s`);
        }
      }
      await sleep(Math.max(0, enableStart + chaosMs - Date.now()));
      if (opts.faultsUntilActive) {
        const until = enableStart + (opts.settleTimeoutMs ?? 5 * 60_000);
        let lastReport = 0;
        while (activeAt.size < n && Date.now() < until) {
          if (Date.now() - lastReport > 15_000) {
            lastReport = Date.now();
            log(`faults on; ${activeAt.size}/${n} instances active`);
            if (Date.now() - enableStart > 60_000) await logPending(instances.filter((i) => !activeAt.has(i.name)));
          }
          await sleep(500);
        }
      }
    } finally {
      clearInterval(background);
    }

    // Faults off: read the counters first (reset zeroes them).
    const counts = (f: { injected: Record<'error' | 'rate-limit' | 'drop', number> }) => ({
      error: f.injected.error,
      rateLimit: f.injected['rate-limit'],
      drop: f.injected.drop,
    });
    const injected: InjectedFaults = {
      sparkpost: counts(st.sparkpost.faults),
      secretManager: counts(st.secretManager.faults),
      sourcegraph: counts(st.sourcegraph.faults),
      relay: counts(st.relay.faults),
      humanEdits: injectedEdits,
    };
    st.sparkpost.faults.reset();
    st.secretManager.faults.reset();
    st.sourcegraph.faults.reset();
    st.relay.faults.reset();
    const faultsOff = Date.now();
    await refreshStates();
    log(`faults off; ${inFlight()} instances still provisioning`);

    // Settle: every instance in a terminal state with its request finished (visibility first, then a query).
    const settleDeadline = faultsOff + (opts.settleTimeoutMs ?? 5 * 60_000);
    const settled = async (): Promise<string[]> => {
      await refreshStates();
      const pending = instances.filter((i) => !TERMINAL.has(states.get(i.name) as InstanceState)).map((i) => i.name);
      if (pending.length) return pending;
      const notDone: string[] = [];
      for (const i of instances) {
        try {
          const s = await client.status(i.name);
          if (!TERMINAL.has(s.state) || s.requests.some((r) => !r.finishedAt)) notDone.push(i.name);
        } catch {
          notDone.push(i.name);
        }
      }
      return notDone;
    };
    let pending = await settled();
    let lastReport = 0;
    while (pending.length && Date.now() < settleDeadline) {
      if (Date.now() - lastReport > 15_000) {
        lastReport = Date.now();
        log(
          `waiting for ${pending.length} instance(s): ${pending.slice(0, 5).join(', ')}${pending.length > 5 ? '…' : ''}`,
        );
      }
      await sleep(1000);
      pending = await settled();
    }
    const settleMs = Date.now() - faultsOff;
    clearInterval(activePoller);
    log(`settled ${n - pending.length}/${n} in ${(settleMs / 1000).toFixed(1)}s after faults off`);
    const lastActiveMs = activeAt.size === n ? Math.max(...activeAt.values()) - enableStart : null;
    log(
      lastActiveMs === null
        ? `only ${activeAt.size}/${n} instances were active before the settle deadline`
        : `last instance active ${(lastActiveMs / 1000).toFixed(1)}s after the enables`,
    );

    // An enable that ran out of its test-email budget under faults ends failed, by design: its undo must be clean,
    // and an operator's second enable must then work.
    const failed = instances.filter((i) => states.get(i.name) === 'failed' && !pending.includes(i.name));
    let dirtyFailures = 0;
    if (failed.length) {
      const absent = checkInvariants(
        st,
        failed.map((i) => ({ name: i.name, gcpProject: i.gcpProject, expect: 'absent' as const })),
        { humanEdits: edits },
      );
      dirtyFailures = absent.total - absent.converged;
      for (const f of absent.findings) if (!f.converged) log(`failed ${f.name} left: ${f.problems.join('; ')}`);
      log(`${failed.length} enable(s) failed under faults (${dirtyFailures} left something behind); enabling again`);
      const handles = await Promise.all(failed.map((i) => client.enable(i.name, specFor(i))));
      await Promise.allSettled(
        handles.map((h) => client.waitFor(h, { timeoutMs: Math.max(30_000, settleDeadline - Date.now()) })),
      );
    }

    const refs: InstanceRef[] = instances.map((i) => ({ name: i.name, gcpProject: i.gcpProject }));
    const figures = checkInvariants(st, refs, { humanEdits: edits });
    const problems = figures.findings.filter((f) => !f.converged);
    for (const f of problems.slice(0, 10)) log(`NOT CONVERGED ${f.name}: ${f.problems.join('; ')}`);
    if (problems.length) {
      keepDir = true;
      writeFileSync(
        path.join(dir, 'workers.log'),
        workerLogs.map((l) => `${l.worker} ${l.stream}: ${l.line}`).join('\n') + '\n',
      );
      log(`worker logs kept in ${path.join(dir, 'workers.log')}`);
    }
    const history = await historyFigures(temporal);
    const twoKeyWindow = longestTwoKeyWindow(st, instances, Date.now());
    return {
      seed,
      instances: n,
      converged: figures.converged,
      orphans: figures.orphans,
      duplicates: figures.duplicates,
      lostEdits: figures.lostEdits,
      failedUnderFaults: failed.length,
      dirtyFailures,
      unsettled: pending,
      injected,
      workerKills,
      serverRestarts,
      unexpectedWorkerExits: unexpectedExits,
      inFlightAtEvents,
      history,
      wallMs: Date.now() - started,
      settleMs,
      lastActiveMs,
      convergeWithinMs: opts.convergeWithinMs ?? null,
      twoKeyWindow,
      problems,
    };
  } finally {
    stopping = true;
    await Promise.allSettled(workers.map((w) => w?.stop('SIGTERM', 10_000)));
    await connection?.close().catch(() => undefined);
    await server?.stop('SIGTERM');
    await stack?.close();
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The longest stretch during which one subaccount of these instances held two or more live send keys, from the
 * emulator's record of every key minted (minted and revoked times; a key still live counts until `now`).
 */
export function longestTwoKeyWindow(
  stack: EmulatorStack,
  instances: readonly { name: string }[],
  now: number,
): ChaosFigures['twoKeyWindow'] {
  const names = new Set(instances.map((i) => i.name));
  const owner = new Map<number, string>();
  for (const s of stack.sparkpost.state.subaccounts) if (names.has(s.name)) owner.set(s.id, s.name);
  const bySub = new Map<number, Array<{ at: number; delta: 1 | -1 }>>();
  for (const k of stack.sparkpost.mintedKeys) {
    if (k.subaccountId === null || !owner.has(k.subaccountId) || k.label !== SEND_KEY_LABEL) continue;
    const ev = bySub.get(k.subaccountId) ?? [];
    ev.push({ at: k.mintedAt, delta: 1 }, { at: k.revokedAt ?? now, delta: -1 });
    bySub.set(k.subaccountId, ev);
  }
  let best: ChaosFigures['twoKeyWindow'] = { ms: 0, instance: null };
  for (const [sub, ev] of bySub) {
    // Revocations before mints at the same instant: a key replaced in the same millisecond is no overlap.
    ev.sort((a, b) => a.at - b.at || a.delta - b.delta);
    let live = 0;
    let since = 0;
    for (const e of ev) {
      const before = live;
      live += e.delta;
      if (before < 2 && live >= 2) since = e.at;
      if (before >= 2 && live < 2 && e.at - since > best.ms) best = { ms: e.at - since, instance: owner.get(sub)! };
    }
  }
  return best;
}

/** Counts retries and timeouts recorded in every workflow history (the last attempt's event carries them). */
async function historyFigures(temporal: Client): Promise<ChaosFigures['history']> {
  const out = { activityRetries: 0, activityTimeouts: 0, workflowTaskTimeouts: 0 };
  let seen = 0;
  for await (const wf of temporal.workflow.list()) {
    if (++seen > 2000) break;
    const history = await temporal.workflow.getHandle(wf.workflowId, wf.runId).fetchHistory();
    for (const e of history.events ?? []) {
      const started = e.activityTaskStartedEventAttributes;
      if (started) {
        out.activityRetries += Math.max(0, (started.attempt ?? 1) - 1);
        if (started.lastFailure?.timeoutFailureInfo) out.activityTimeouts++;
      }
      if (e.workflowTaskTimedOutEventAttributes) out.workflowTaskTimeouts++;
    }
  }
  return out;
}

/** One line per figure, for people. */
export function formatFigures(f: ChaosFigures, label = ''): string {
  const i = f.injected;
  return [
    `${label}seed ${f.seed}: ${f.converged}/${f.instances} converged, orphans ${f.orphans}, duplicates ${f.duplicates}, lost edits ${f.lostEdits}` +
      (f.unsettled.length ? `, ${f.unsettled.length} never settled` : ''),
    `  faults injected: SparkPost 5xx ${i.sparkpost.error}, 429 ${i.sparkpost.rateLimit}, drop ${i.sparkpost.drop}; ` +
      `Secret Manager UNAVAILABLE ${i.secretManager.error}, drop ${i.secretManager.drop}; ` +
      `Sourcegraph 5xx ${i.sourcegraph.error}, drop ${i.sourcegraph.drop}; relay 451 ${i.relay.error}; human edits ${i.humanEdits.raced} racing writes + ${i.humanEdits.background} background`,
    `  worker kills ${f.workerKills}, server restarts ${f.serverRestarts}, unexpected worker exits ${f.unexpectedWorkerExits}; ` +
      `instances provisioning at each event: ${f.inFlightAtEvents.join(', ') || '-'}`,
    `  histories: ${f.history.activityRetries} activity retries, ${f.history.activityTimeouts} after a timed-out attempt ` +
      `(work lost with a killed worker or a restart), ${f.history.workflowTaskTimeouts} workflow task timeouts`,
    `  enables failed under faults ${f.failedUnderFaults} (left something behind: ${f.dirtyFailures}); ` +
      `settled ${(f.settleMs / 1000).toFixed(1)}s after faults off; wall time ${(f.wallMs / 1000).toFixed(1)}s`,
    `  last instance active ${f.lastActiveMs === null ? 'never (not all were)' : `${(f.lastActiveMs / 1000).toFixed(1)}s`} after the enables` +
      `${f.convergeWithinMs !== null ? ` (limit ${f.convergeWithinMs / 1000}s)` : ''}; ` +
      `longest two-key window ${(f.twoKeyWindow.ms / 1000).toFixed(1)}s${f.twoKeyWindow.instance ? ` (${f.twoKeyWindow.instance})` : ''}`,
  ].join('\n');
}

/** Whether a run is a pass: everything converged, nothing duplicated, orphaned or lost. */
export function passed(f: ChaosFigures): boolean {
  return (
    f.converged === f.instances &&
    f.orphans === 0 &&
    f.duplicates === 0 &&
    f.lostEdits === 0 &&
    f.dirtyFailures === 0 &&
    f.unsettled.length === 0 &&
    (f.convergeWithinMs === null || (f.lastActiveMs !== null && f.lastActiveMs <= f.convergeWithinMs))
  );
}

function intFlag(argv: string[], name: string, fallback: number, min: number, max: number): number {
  const at = argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const v = Number(argv[at + 1]);
  if (!Number.isInteger(v) || v < min || v > max) {
    process.stderr.write(`chaos: --${name} must be an integer from ${min} to ${max}\n`);
    process.exit(2);
  }
  return v;
}

function scaleFlag(argv: string[]): number {
  const at = argv.indexOf('--scale');
  if (at < 0) return 1;
  const v = Number(argv[at + 1]);
  if (!Number.isFinite(v) || v < 0 || v > 3) {
    process.stderr.write('chaos: --scale must be a number from 0 to 3\n');
    process.exit(2);
  }
  return v;
}

/** The default fault rates times `k` (human edits unchanged); the sum per emulator stays below 1. */
export function scaled(k: number): ChaosRates {
  const r = DEFAULT_RATES;
  const f = (x: number) => Math.min(0.33, x * k);
  return {
    ...r,
    sparkpost: { error: f(r.sparkpost.error), rateLimit: f(r.sparkpost.rateLimit), drop: f(r.sparkpost.drop) },
    secretManager: { error: f(r.secretManager.error), drop: f(r.secretManager.drop) },
    sourcegraph: { error: f(r.sourcegraph.error), drop: f(r.sourcegraph.drop) },
    relay: { error: f(r.relay.error) },
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const known = new Set([
    '--preset',
    '--instances',
    '--seed',
    '--runs',
    '--kills',
    '--restarts',
    '--window',
    '--scale',
  ]);
  for (let i = 0; i < argv.length; i += 2) {
    if (!known.has(argv[i])) {
      process.stderr.write(
        `chaos: unknown argument ${argv[i]}; usage: chaos [--preset heavy] [--instances N] [--seed S] [--runs K] [--kills N] [--restarts N] [--window SECONDS] [--scale F]\n`,
      );
      process.exit(2);
    }
  }
  const presetAt = argv.indexOf('--preset');
  let preset: ChaosPreset | null = null;
  if (presetAt >= 0) {
    const name = argv[presetAt + 1];
    preset = Object.hasOwn(PRESETS, name) ? PRESETS[name] : null;
    if (!preset) {
      process.stderr.write(`chaos: unknown --preset ${String(name)}; known: ${Object.keys(PRESETS).join(', ')}\n`);
      process.exit(2);
    }
    if (argv.includes('--scale')) {
      process.stderr.write('chaos: --scale does not apply to a preset (its rates are fixed)\n');
      process.exit(2);
    }
  }
  const instances = intFlag(argv, 'instances', preset?.instances ?? 40, 1, 500);
  const seed = intFlag(argv, 'seed', 1, 0, 2 ** 31 - 1);
  const runs = intFlag(argv, 'runs', 1, 1, 20);
  const workerKills = intFlag(argv, 'kills', preset?.workerKills ?? 4, 0, 50);
  const serverRestarts = intFlag(argv, 'restarts', preset?.serverRestarts ?? 1, 0, 10);
  const chaosMs = intFlag(argv, 'window', (preset?.chaosMs ?? 40_000) / 1000, 5, 600) * 1000;
  const rates = preset ? preset.rates : scaled(scaleFlag(argv));
  const results: ChaosFigures[] = [];
  for (let r = 0; r < runs; r++) {
    const f = await runChaos({
      instances,
      seed: seed + r,
      workerKills,
      serverRestarts,
      chaosMs,
      rates,
      ...(preset ? { faultsUntilActive: preset.faultsUntilActive, convergeWithinMs: preset.convergeWithinMs } : {}),
    });
    results.push(f);
    process.stdout.write(`${formatFigures(f, `run ${r + 1}/${runs} `)}\n`);
  }
  const ok = results.filter(passed).length;
  const walls = results.map((f) => (f.wallMs / 1000).toFixed(1)).join(', ');
  const lastActive = results.map((f) => (f.lastActiveMs === null ? 'never' : (f.lastActiveMs / 1000).toFixed(1)));
  const twoKeys = Math.max(...results.map((f) => f.twoKeyWindow.ms));
  process.stdout.write(
    `chaos: ${ok}/${runs} runs passed; last instance active at ${lastActive.join(', ')} s; ` +
      `longest two-key window ${(twoKeys / 1000).toFixed(1)} s; wall times ${walls} s\n`,
  );
  process.exit(ok === runs ? 0 : 1);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
