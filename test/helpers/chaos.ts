/**
 * Real processes for the chaos suite and the leak scan: a Temporal dev server on a SQLite file that can be stopped
 * and started again on the same file and port, and worker processes started exactly as `npm run worker` starts them,
 * whose output is captured line by line. Every wait is bounded; every child is killed when this process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { applyEdits, modify } from 'jsonc-parser';
import { SEARCH_ATTRIBUTES } from '../../lib/search-attributes';
import { prng } from '../../lib/faults';

/** The repository root. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Children still running when this process exits are killed, so a failed run leaves nothing behind.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

/** mulberry32, seeded: the chaos schedule is repeatable for a seed. */
export const seededRandom = prng;

/** A free TCP port on 127.0.0.1 (the OS picks; closed again before returning). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Waits (bounded) for a child to exit; true when it did. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Options of DevServer.start. */
export interface DevServerOptions {
  /** Path of the `temporal` binary (scripts/temporal-cli.ts findTemporalCli). */
  cli: string;
  /** SQLite file: state survives a restart. */
  dbFile: string;
  /** gRPC port (default: a free one, kept across restarts). */
  port?: number;
  /** How long to wait for the frontend to answer (default 60 s). */
  readyTimeoutMs?: number;
}

/** A `temporal server start-dev` process that can be stopped and restarted on the same port and database. */
export class DevServer {
  private child: ChildProcess | null = null;
  /** stderr of every incarnation, for diagnostics. */
  readonly stderr: string[] = [];
  /** How many times it was started. */
  starts = 0;

  private constructor(
    readonly opts: DevServerOptions,
    readonly port: number,
  ) {}

  /** `127.0.0.1:<port>`, what TEMPORAL_ADDRESS takes. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Starts the server and waits until its frontend answers. */
  static async start(opts: DevServerOptions): Promise<DevServer> {
    const server = new DevServer(opts, opts.port ?? (await freePort()));
    await server.launch();
    return server;
  }

  private async launch(): Promise<void> {
    const args = [
      'server',
      'start-dev',
      '--headless',
      '--ip',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--db-filename',
      this.opts.dbFile,
      ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
      '--log-level',
      'error',
    ];
    const child = spawn(this.opts.cli, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    track(child);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.stderr.push(d);
      if (this.stderr.length > 200) this.stderr.shift();
    });
    this.child = child;
    this.starts++;
    await this.waitReady(this.opts.readyTimeoutMs ?? 60_000);
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.child?.exitCode !== null && this.child?.exitCode !== undefined) {
        throw new Error(`temporal server exited with ${this.child.exitCode}: ${this.stderr.join('').slice(-500)}`);
      }
      let conn: Connection | null = null;
      try {
        conn = await Connection.connect({ address: this.address, connectTimeout: '2s' });
        await conn.workflowService.describeNamespace({ namespace: 'default' });
        return;
      } catch (err) {
        last = err instanceof Error ? err.message.split('\n')[0] : String(err);
      } finally {
        await conn?.close().catch(() => undefined);
      }
      await sleep(250);
    }
    throw new Error(`temporal server on ${this.address} not ready after ${timeoutMs / 1000}s: ${last}`);
  }

  /** Stops the server with `signal` (SIGKILL after `timeoutMs` if it lingers). */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    child.kill(signal);
    if (!(await waitForExit(child, timeoutMs))) {
      child.kill('SIGKILL');
      await waitForExit(child, 5_000);
    }
  }

  /** Stops the server with SIGTERM and starts it again on the same port and database file. */
  async restart(): Promise<void> {
    await this.stop('SIGTERM');
    await this.launch();
  }
}

/** One line a worker process printed. */
export interface WorkerLogLine {
  worker: string;
  stream: 'stdout' | 'stderr';
  line: string;
}

/** Options of WorkerProcess.start. */
export interface WorkerProcessOptions {
  /** Name used in log lines. */
  name: string;
  /** Environment on top of process.env: stack.workerEnv(...) plus TEMPORAL_ADDRESS. */
  env: Record<string, string>;
  /** Every line goes here too (shared across restarts, for scans). */
  sink?: WorkerLogLine[];
  /** How long to wait for "polling task queue" (default 90 s: the worker bundles the workflow code first). */
  readyTimeoutMs?: number;
}

/** `node --import tsx worker/main.ts`, as `npm run worker` runs it, with its output captured. */
export class WorkerProcess {
  /** Every line printed, both streams. */
  readonly lines: WorkerLogLine[];

  private constructor(
    readonly child: ChildProcess,
    readonly name: string,
    sink: WorkerLogLine[],
  ) {
    this.lines = sink;
  }

  /** Process id. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether it is still running. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns a worker and waits until it polls its task queue. */
  static async start(opts: WorkerProcessOptions): Promise<WorkerProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'worker', 'main.ts')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    });
    track(child);
    const w = new WorkerProcess(child, opts.name, opts.sink ?? []);
    let ready = false;
    const readyWaiters: Array<() => void> = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      let pending = '';
      const s = child[stream];
      s?.setEncoding('utf8');
      s?.on('data', (d: string) => {
        pending += d;
        const parts = pending.split('\n');
        pending = parts.pop() ?? '';
        for (const line of parts) {
          w.lines.push({ worker: opts.name, stream, line });
          if (!ready && /polling task queue/.test(line)) {
            ready = true;
            for (const f of readyWaiters) f();
          }
        }
      });
      s?.on('end', () => {
        if (pending) w.lines.push({ worker: opts.name, stream, line: pending });
        pending = '';
      });
    }
    const timeoutMs = opts.readyTimeoutMs ?? 90_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`worker ${opts.name} not polling after ${timeoutMs / 1000}s`));
      }, timeoutMs);
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        const tail = w.lines
          .filter((l) => l.worker === opts.name)
          .slice(-5)
          .map((l) => l.line)
          .join(' | ');
        reject(new Error(`worker ${opts.name} exited with ${code} before polling: ${tail}`));
      };
      child.once('exit', onExit);
      readyWaiters.push(() => {
        clearTimeout(timer);
        child.off('exit', onExit);
        resolve();
      });
      if (ready) readyWaiters[readyWaiters.length - 1]();
    });
    return w;
  }

  /** Sends `signal` and waits (bounded) for the process to end; SIGKILL if SIGTERM was not enough. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    if (!(await waitForExit(this.child, timeoutMs))) {
      this.child.kill('SIGKILL');
      await waitForExit(this.child, 5_000);
    }
  }
}

/** The texts a human edit leaves in a configuration: a comment and a key, both unique. */
export function humanEditMarkers(id: string): string[] {
  return [`// human edit ${id}`, `"chaos.humanEdit.${id}"`];
}

/**
 * A human edit through the site-admin UI: adds a unique comment and a unique key, touching nothing else. Returns
 * the new text; humanEditMarkers(id) are what to look for later.
 */
export function applyHumanEdit(text: string, id: string): string {
  const [comment] = humanEditMarkers(id);
  const withKey = applyEdits(
    text,
    modify(text, [`chaos.humanEdit.${id}`], id, { formattingOptions: { insertSpaces: true, tabSize: 2, eol: '\n' } }),
  );
  const brace = withKey.indexOf('{');
  if (brace < 0) return withKey;
  return `${withKey.slice(0, brace + 1)}\n  ${comment}${withKey.slice(brace + 1)}`;
}
