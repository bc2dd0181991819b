/**
 * The chaos suite: N instances enabled at once through ManagedSmtpClient while every vendor misbehaves (SparkPost
 * 5xx, 429 and dropped responses; Secret Manager UNAVAILABLE and drops; Sourcegraph 5xx, drops and concurrent human
 * edits of the site configuration; the SMTP relay refusing the test email with 451), worker processes are SIGKILLed
 * mid-flight and restarted, and the Temporal dev server is SIGTERMed and restarted on its SQLite file. Then the faults
 * stop, every instance must settle, and the invariant (test/helpers/invariants.ts) must hold for all of them: one
 * subaccount, one live key, one matching secret version, the managed settings in the raw site configuration, no
 * human edit lost.
 *
 *   npx tsx scripts/chaos.ts [--instances 40] [--seed 1] [--runs 1] [--kills 4] [--restarts 1] [--window 40] [--scale 1]
 *
 * `--window` is how long (seconds) faults stay on after the enables; `--scale` multiplies every fault rate.
 *
 * Fault decisions and the chaos schedule come from seeded PRNGs, so a seed injects the same sequence of faults and
 * events; the interleaving of concurrent requests (and so which request gets which fault) still varies a little.
 * Exits 1 when any run did not converge. Importable: `runChaos(opts)` returns the figures.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { ManagedSmtpClient } from '../client';
import { EmulatorStack, specFor, type EmulatedInstance } from '../emulators/stack';
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
    const env = { ...st.workerEnv(taskQueue), TEMPORAL_ADDRESS: srv.address, TEMPORAL_NAMESPACE: 'default' };

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
    for (const i of instances) {
      const races = 1 + (rand() < rates.doubleRace ? 1 : 0);
      st.sourcegraph.raceNextWrites(i.name, races, edit(i.name, 'raced'));
    }

    const enableStart = Date.now();
    await Promise.all(instances.map((i) => client.enable(i.name, specFor(i))));
    log(`${n} enables sent; faults on for ${chaosMs / 1000}s`);

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
    log(`settled ${n - pending.length}/${n} in ${(settleMs / 1000).toFixed(1)}s after faults off`);

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
    f.unsettled.length === 0
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
  const known = new Set(['--instances', '--seed', '--runs', '--kills', '--restarts', '--window', '--scale']);
  for (let i = 0; i < argv.length; i += 2) {
    if (!known.has(argv[i])) {
      process.stderr.write(
        `chaos: unknown argument ${argv[i]}; usage: chaos [--instances N] [--seed S] [--runs K] [--kills N] [--restarts N] [--window SECONDS] [--scale F]\n`,
      );
      process.exit(2);
    }
  }
  const instances = intFlag(argv, 'instances', 40, 1, 500);
  const seed = intFlag(argv, 'seed', 1, 0, 2 ** 31 - 1);
  const runs = intFlag(argv, 'runs', 1, 1, 20);
  const workerKills = intFlag(argv, 'kills', 4, 0, 50);
  const serverRestarts = intFlag(argv, 'restarts', 1, 0, 10);
  const chaosMs = intFlag(argv, 'window', 40, 5, 600) * 1000;
  const scale = scaleFlag(argv);
  const results: ChaosFigures[] = [];
  for (let r = 0; r < runs; r++) {
    const f = await runChaos({ instances, seed: seed + r, workerKills, serverRestarts, chaosMs, rates: scaled(scale) });
    results.push(f);
    process.stdout.write(`${formatFigures(f, `run ${r + 1}/${runs} `)}\n`);
  }
  const ok = results.filter(passed).length;
  const walls = results.map((f) => (f.wallMs / 1000).toFixed(1)).join(', ');
  process.stdout.write(`chaos: ${ok}/${runs} runs passed; wall times ${walls} s\n`);
  process.exit(ok === runs ? 0 : 1);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`chaos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
