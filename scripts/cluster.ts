/**
 * `npm run cluster`: the production topology on this machine, the one docker-compose.yml describes. Temporal's own
 * server (`go.temporal.io/server/cmd/server`, built with `go install` from the Go module proxy and cached), on a
 * private PostgreSQL cluster (Debian's package) holding both the default store and advanced (SQL) visibility, its
 * schemas created with the server's SQL tool, the `default` namespace and managed SMTP's search attributes created
 * through the API, two worker processes (`worker/main.ts`, as `npm run worker` runs it) on a Worker Deployment
 * version, the Web UI (`temporalio/ui-server`, same route) with the codec server, and the vendor emulators.
 *
 * Ctrl-C stops everything and deletes the database. Options:
 *   --exit-after-ready   stop once everything is up (smoke test, timing)
 *   --build-only         build or find the binaries, print their paths and exit
 *   --cached             exit 0 when the binaries are already cached, 1 otherwise (.ci/run asks this)
 *   --no-ui              skip the Web UI
 *
 * Binaries are cached outside the repository, in `$MANAGED_SMTP_CACHE_DIR`, else `$XDG_CACHE_HOME/managed-smtp`,
 * else `~/.cache/managed-smtp`, so a fresh clone on the same machine (CI) reuses them. The library half of this file
 * (startCluster, spawnWorker, setCurrentVersion) is what test/cluster/ drives.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { msToTs } from '@temporalio/common/lib/time';
import { NativeConnection } from '@temporalio/worker';
import { EmulatorStack } from '../emulators/stack';
import { AesGcmCodec, CODEC_KEYS_ENV, generateCodecKey, parseCodecKeys } from '../lib/codec';
import { startCodecServer } from '../worker/codec-server';
import { ensureSearchAttributes } from '../worker/search-attributes';

const ROOT = path.resolve(__dirname, '..');

/** Temporal server module version: the newest the proxy serves that builds with this machine's Go (1.26.8). */
export const TEMPORAL_SERVER_VERSION = 'v1.32.0';
/** Web UI server module version: the one the Temporal CLI 1.9.1 (server 1.32.0) embeds. */
export const TEMPORAL_UI_VERSION = 'v2.54.1';
/** The server configuration template, shared with docker-compose.yml. */
export const SERVER_CONFIG = path.join(ROOT, 'deploy', 'temporal', 'server.yaml');
/** Dynamic configuration, shared with docker-compose.yml. */
export const DYNAMIC_CONFIG = path.join(ROOT, 'deploy', 'dynamicconfig', 'managed-smtp.yaml');
/** PostgreSQL major version used when several are installed (Debian 12's). */
const PG_MAJOR = '15';

/** Where built binaries live: outside the repository so every clone on this machine shares them. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.MANAGED_SMTP_CACHE_DIR) return path.resolve(env.MANAGED_SMTP_CACHE_DIR);
  const base = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'managed-smtp');
}

/** Paths of the binaries `go install` produces. */
export interface Binaries {
  /** temporal-server (`go.temporal.io/server/cmd/server`). */
  server: string;
  /** temporal-sql-tool (`go.temporal.io/server/cmd/tools/sql`). */
  sqlTool: string;
  /** The Web UI server and the directory holding its `config/docker.yaml`, or null where it could not be built. */
  ui: { binary: string; root: string } | null;
}

function serverDir(): string {
  return path.join(cacheDir(), `temporal-server-${TEMPORAL_SERVER_VERSION}`);
}
function uiDir(): string {
  return path.join(cacheDir(), `temporal-ui-${TEMPORAL_UI_VERSION}`);
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The cached binaries, or null when the server or the SQL tool is missing. A `.complete` stamp marks a whole build. */
export function cachedBinaries(): Binaries | null {
  const dir = serverDir();
  const server = path.join(dir, 'bin', 'server');
  const sqlTool = path.join(dir, 'bin', 'sql');
  if (!existsSync(path.join(dir, '.complete')) || !isExecutable(server) || !isExecutable(sqlTool)) return null;
  const uiBinary = path.join(uiDir(), 'bin', 'server');
  const ui =
    existsSync(path.join(uiDir(), '.complete')) && isExecutable(uiBinary) ? { binary: uiBinary, root: uiDir() } : null;
  return { server, sqlTool, ui };
}

type Log = (line: string) => void;
const stderrLog: Log = (line) => process.stderr.write(`[cluster] ${line}\n`);

function goInstall(packages: string[], gobin: string): void {
  execFileSync('go', ['install', ...packages], {
    stdio: ['ignore', 'ignore', 'pipe'],
    // GOTOOLCHAIN=local: never fetch another Go; the pinned versions build with the one installed.
    env: { ...process.env, GOBIN: gobin, GOTOOLCHAIN: 'local', CGO_ENABLED: '0' },
    timeout: 45 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
}

function lastLine(err: unknown): string {
  const e = err as { stderr?: Buffer | string; message?: string };
  const text = (e.stderr ? e.stderr.toString() : '') || e.message || String(err);
  return (
    text
      .trim()
      .split('\n')
      .filter((l) => l.trim())
      .pop() ?? 'unknown error'
  );
}

/**
 * Returns the binaries, building what is missing with `go install` (the server and SQL tool are required; the UI is
 * optional and its failure only logged). `buildMs` is how long building took, 0 when everything was cached.
 */
export function ensureBinaries(log: Log = stderrLog, opts: { ui?: boolean } = {}): Binaries & { buildMs: number } {
  const started = Date.now();
  const wantUi = opts.ui ?? true;
  let found = cachedBinaries();
  let built = false;
  if (!found) {
    built = true;
    if (spawnSync('go', ['version']).status !== 0) {
      throw new Error('go is not installed: it builds the Temporal server (apt-get install golang-go, or see go.dev)');
    }
    const dir = serverDir();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'bin'), { recursive: true });
    log(`building temporal-server and temporal-sql-tool ${TEMPORAL_SERVER_VERSION} with go install into ${dir}`);
    try {
      goInstall(
        [
          `go.temporal.io/server/cmd/server@${TEMPORAL_SERVER_VERSION}`,
          `go.temporal.io/server/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`,
        ],
        path.join(dir, 'bin'),
      );
    } catch (err) {
      throw new Error(`go install of the Temporal server failed: ${lastLine(err)}`);
    }
    writeFileSync(path.join(dir, '.complete'), `${new Date().toISOString()}\n`);
    found = cachedBinaries();
    if (!found) throw new Error(`go install finished but ${dir}/bin has no server and sql binaries`);
    log(`built the server in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  // A UI build that failed once is not retried at every start (delete the .failed file to retry).
  if (wantUi && !found.ui && !existsSync(path.join(uiDir(), '.failed'))) {
    const dir = uiDir();
    const uiStarted = Date.now();
    built = true;
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(path.join(dir, 'bin'), { recursive: true });
    log(`building the Web UI server ${TEMPORAL_UI_VERSION} with go install into ${dir}`);
    try {
      goInstall([`github.com/temporalio/ui-server/v2/cmd/server@${TEMPORAL_UI_VERSION}`], path.join(dir, 'bin'));
      // Its env-driven config template ships in the module; the binary wants it at <root>/config/docker.yaml.
      const modDir = execFileSync(
        'go',
        ['list', '-m', '-f', '{{.Dir}}', `github.com/temporalio/ui-server/v2@${TEMPORAL_UI_VERSION}`],
        { encoding: 'utf8', env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-mod=mod' }, cwd: os.tmpdir() },
      ).trim();
      mkdirSync(path.join(dir, 'config'), { recursive: true });
      copyFileSync(path.join(modDir, 'config', 'docker.yaml'), path.join(dir, 'config', 'docker.yaml'));
      writeFileSync(path.join(dir, '.complete'), `${new Date().toISOString()}\n`);
      log(`built the Web UI server in ${((Date.now() - uiStarted) / 1000).toFixed(0)} s`);
    } catch (err) {
      writeFileSync(path.join(dir, '.failed'), `${lastLine(err)}\n`);
      log(`could not build the Web UI server (${lastLine(err)}); the cluster runs without it`);
    }
    found = cachedBinaries() ?? found;
  }
  return { ...found, buildMs: built ? Date.now() - started : 0 };
}

/** Free TCP ports on 127.0.0.1, all distinct (held together while picking). */
export async function freePorts(count: number, opts: { below?: number } = {}): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    // Port 0 lets the kernel choose; a bound range tries random ports in [20000, below), at most 200 of them.
    for (let attempt = 0; servers.length < count && attempt < 200 + count; attempt++) {
      const want = opts.below ? 20_000 + Math.floor(Math.random() * (opts.below - 20_000)) : 0;
      const s = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        s.once('error', () => resolve(false));
        s.listen(want, '127.0.0.1', () => resolve(true));
      });
      if (ok) servers.push(s);
    }
    if (servers.length < count) throw new Error(`could not find ${count} free ports`);
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline)
          reject(new Error(`${what}: nothing listens on 127.0.0.1:${port} after ${timeoutMs / 1000}s`));
        else setTimeout(attempt, 200);
      });
    };
    attempt();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A private PostgreSQL cluster on 127.0.0.1, in its own directory, run as the `postgres` user when we are root. */
export class Postgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly user: string,
    readonly password: string,
    private readonly binDir: string,
    private readonly runAs: string | null,
  ) {}

  /** Finds PostgreSQL's binaries (installing Debian's package as root when absent). */
  static binDir(log: Log = stderrLog): string {
    const find = () => {
      const base = '/usr/lib/postgresql';
      if (!existsSync(base)) return null;
      const versions = readdirSync(base).filter((v) => isExecutable(path.join(base, v, 'bin', 'initdb')));
      const pick = versions.includes(PG_MAJOR) ? PG_MAJOR : versions.sort((a, b) => Number(b) - Number(a))[0];
      return pick ? path.join(base, pick, 'bin') : null;
    };
    let dir = find();
    if (dir) return dir;
    if (process.getuid?.() !== 0) {
      throw new Error(`PostgreSQL is not installed: apt-get install postgresql-${PG_MAJOR} (needs root)`);
    }
    log(`installing PostgreSQL (apt-get install postgresql-${PG_MAJOR})`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 600_000 });
    const r = spawnSync('apt-get', ['install', '-y', '-qq', `postgresql-${PG_MAJOR}`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env,
      timeout: 900_000,
    });
    dir = find();
    if (r.status !== 0 || !dir) throw new Error(`apt-get install postgresql-${PG_MAJOR} failed: ${lastLine(r)}`);
    return dir;
  }

  /** initdb in a fresh temporary directory, then starts the server on a free port. */
  static async start(log: Log = stderrLog): Promise<Postgres> {
    const binDir = Postgres.binDir(log);
    const runAs = process.getuid?.() === 0 ? 'postgres' : null; // initdb refuses to run as root
    const dir = mkdtempSync(path.join(os.tmpdir(), 'managed-smtp-pg-'));
    const password = randomBytes(18).toString('base64url');
    const pwfile = path.join(dir, 'pwfile');
    writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
    if (runAs) {
      const uid = Number(execFileSync('id', ['-u', runAs], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', runAs], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
      chownSync(pwfile, uid, gid);
    }
    chmodSync(dir, 0o700);
    const [port] = await freePorts(1);
    const pg = new Postgres(dir, port, 'temporal', password, binDir, runAs);
    pg.run('initdb', [
      '-D',
      path.join(dir, 'data'),
      '-U',
      pg.user,
      `--pwfile=${pwfile}`,
      '--auth-host=scram-sha-256',
      '--auth-local=peer',
      '-E',
      'UTF8',
      '--no-sync',
    ]);
    rmSync(pwfile);
    pg.run('pg_ctl', [
      '-D',
      path.join(dir, 'data'),
      '-l',
      path.join(dir, 'postgres.log'),
      '-o',
      `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c max_connections=200`,
      '-w',
      '-t',
      '60',
      'start',
    ]);
    return pg;
  }

  private run(tool: string, args: string[]): void {
    const bin = path.join(this.binDir, tool);
    const [cmd, argv] = this.runAs ? ['runuser', ['-u', this.runAs, '--', bin, ...args]] : [bin, args];
    const r = spawnSync(cmd, argv, { cwd: this.dir, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${tool} failed: ${(r.stderr || r.stdout || '').trim().split('\n').pop()}`);
  }

  /** Stops the server (fast shutdown) and deletes its directory. Safe to call twice. */
  stop(): void {
    if (!existsSync(this.dir)) return;
    try {
      this.run('pg_ctl', ['-D', path.join(this.dir, 'data'), '-m', 'fast', '-w', 'stop']);
    } catch {
      // not running
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Creates the two databases and brings both schemas to the server's version with temporal-sql-tool. */
export function createSchemas(sqlTool: string, pg: Postgres): void {
  const base = ['--plugin', 'postgres12', '--ep', '127.0.0.1', '-p', String(pg.port), '-u', pg.user];
  // The password goes through the environment, not the command line (ps would show it).
  const env = { ...process.env, SQL_PASSWORD: pg.password };
  const sql = (args: string[]) => {
    const r = spawnSync(sqlTool, [...base, ...args], { env, encoding: 'utf8', timeout: 180_000 });
    if (r.status !== 0) {
      throw new Error(`temporal-sql-tool ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim().split('\n').pop()}`);
    }
  };
  for (const [db, schema] of [
    ['temporal', 'postgresql/v12/temporal'],
    ['temporal_visibility', 'postgresql/v12/visibility'],
  ]) {
    sql(['--db', db, 'create-database']);
    sql(['--db', db, 'setup-schema', '-v', '0.0']);
    sql(['--db', db, 'update-schema', '--schema-name', schema]);
  }
}

/** The ports one server process binds. */
interface ServerPorts {
  grpc: number;
  http: number;
  rest: number[];
}

/** A Temporal server process (all four services) on the shared config template. */
export class TemporalServer {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly binary: string,
    private readonly pg: Postgres,
    private readonly ports: ServerPorts,
    private readonly logFile: string,
  ) {}

  /** Where the server's output goes. */
  get log(): string {
    return this.logFile;
  }

  /** `host:port` of the frontend. */
  get address(): string {
    return `127.0.0.1:${this.ports.grpc}`;
  }

  /** The environment the template reads: the same variable names compose sets. */
  environment(): Record<string, string> {
    const [fm, matching, mm, history, hm, worker, wm] = this.ports.rest;
    return {
      POSTGRES_SEEDS: '127.0.0.1',
      DB_PORT: String(this.pg.port),
      POSTGRES_USER: this.pg.user,
      POSTGRES_PWD: this.pg.password,
      BIND_ON_IP: '127.0.0.1',
      TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
      FRONTEND_GRPC_PORT: String(this.ports.grpc),
      FRONTEND_HTTP_PORT: String(this.ports.http),
      FRONTEND_MEMBERSHIP_PORT: String(fm),
      MATCHING_GRPC_PORT: String(matching),
      MATCHING_MEMBERSHIP_PORT: String(mm),
      HISTORY_GRPC_PORT: String(history),
      HISTORY_MEMBERSHIP_PORT: String(hm),
      WORKER_GRPC_PORT: String(worker),
      WORKER_MEMBERSHIP_PORT: String(wm),
      DYNAMIC_CONFIG_FILE_PATH: DYNAMIC_CONFIG,
      LOG_LEVEL: 'warn',
    };
  }

  /** Starts the process and waits until the frontend accepts connections. */
  async start(): Promise<void> {
    if (this.child) throw new Error('the Temporal server is already running');
    const out = openSync(this.logFile, 'a');
    const child = spawn(this.binary, ['--config-file', SERVER_CONFIG, '--allow-no-auth', 'start'], {
      env: { ...process.env, ...this.environment() },
      stdio: ['ignore', out, out],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const early = this.exited.then(() => {
      throw new Error(`the Temporal server exited at start; see ${this.logFile}:\n${this.tail()}`);
    });
    await Promise.race([waitForPort(this.ports.grpc, 90_000, 'Temporal frontend'), early]);
  }

  /** The last lines of the server's log. */
  tail(lines = 15): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  /** Stops the process (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(graceMs = 20_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
  }

  /** Kills the process at once (for process-exit cleanup). */
  killNow(): void {
    this.child?.kill('SIGKILL');
  }
}

/** Connects once the frontend reports healthy (bounded by `timeoutMs`). */
export async function connectWhenHealthy(address: string, timeoutMs: number): Promise<NativeConnection> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await NativeConnection.connect({ address });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(1000);
    }
  }
}

/** Registers the namespace (ignoring "already exists") and waits until it answers list queries. */
export async function ensureNamespace(connection: NativeConnection, namespace: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  // The frontend answers "not healthy yet" for a few seconds after it listens.
  for (;;) {
    try {
      await connection.workflowService.registerNamespace({
        namespace,
        workflowExecutionRetentionPeriod: msToTs('3 days'),
      });
      break;
    } catch (err) {
      if (/already exists|AlreadyExists/i.test(String((err as Error).message))) break;
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
  // The frontend's namespace cache refreshes every few seconds; until then the namespace is "not found".
  for (;;) {
    try {
      await connection.workflowService.listWorkflowExecutions({ namespace, pageSize: 1 });
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

/**
 * Makes `buildId` the current version of the Worker Deployment `deploymentName`. The version exists only once one of
 * its workers has polled, so this retries (bounded) until the server knows it.
 */
export async function setCurrentVersion(
  connection: NativeConnection,
  namespace: string,
  deploymentName: string,
  buildId: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await connection.workflowService.setWorkerDeploymentCurrentVersion({
        namespace,
        deploymentName,
        buildId,
        identity: 'managed-smtp cluster',
      });
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        throw new Error(`could not make ${deploymentName}/${buildId} current: ${(err as Error).message}`);
      }
      await sleep(500);
    }
  }
}

/** A worker process started as `npm run worker` starts it (worker/main.ts), output kept for inspection. */
export interface WorkerProcess {
  child: ChildProcess;
  buildId: string;
  /** Everything it printed so far. */
  output(): string;
  /** Resolves with the exit code (or signal) once it exits. */
  exited: Promise<number | string | null>;
}

/** Starts a worker process and waits until it polls. Its output is also appended to `logFile` when given. */
export async function spawnWorker(
  env: Record<string, string>,
  opts: { timeoutMs?: number; label?: string; logFile?: string } = {},
): Promise<WorkerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'worker', 'main.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    // INFO: the "polling task queue" line is how readiness is seen.
    env: { ...process.env, MANAGED_SMTP_LOG_FORMAT: 'text', MANAGED_SMTP_LOG_LEVEL: 'INFO', ...env },
  });
  let out = '';
  // A file survives the process (and the test's memory) for reading after a failure.
  const file = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : null;
  const collect = (c: Buffer) => {
    out += c.toString();
    file?.write(c);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string | null>((resolve) =>
    child.once('exit', (code, signal) => {
      file?.end();
      resolve(code ?? signal);
    }),
  );
  const w: WorkerProcess = {
    child,
    buildId: env.MANAGED_SMTP_WORKER_BUILD_ID ?? '',
    output: () => out,
    exited,
  };
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  while (!/polling task queue/.test(out)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`worker ${opts.label ?? ''} exited before polling:\n${out}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`worker ${opts.label ?? ''} not polling after ${(opts.timeoutMs ?? 120_000) / 1000}s:\n${out}`);
    }
    await sleep(100);
  }
  return w;
}

/** Stops a worker with SIGTERM (it drains its in-flight activities) and returns its exit code. */
export async function stopWorker(w: WorkerProcess, timeoutMs = 60_000): Promise<number | string | null> {
  if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
  const timer = setTimeout(() => w.child.kill('SIGKILL'), timeoutMs);
  const code = await w.exited;
  clearTimeout(timer);
  return code;
}

/** The running cluster: PostgreSQL, the Temporal server, and a connection to it. */
export interface Cluster {
  pg: Postgres;
  server: TemporalServer;
  binaries: Binaries;
  /** `host:port` of the frontend. */
  address: string;
  namespace: string;
  connection: NativeConnection;
  /** Milliseconds per start-up phase (build, postgres, schema, server, searchAttributes), for the report. */
  timings: Record<string, number>;
  /** Milliseconds from the call to startCluster until the namespace and search attributes were ready. */
  startMs: number;
  /** Stops the Temporal server and PostgreSQL and deletes the database. */
  stop(): Promise<void>;
}

/**
 * Builds or finds the binaries, then starts PostgreSQL, creates the schemas, starts the server and the namespace. The
 * server's log goes to `logDir` (default: the database directory, deleted by stop()).
 */
export async function startCluster(
  opts: { log?: Log; ui?: boolean; namespace?: string; logDir?: string } = {},
): Promise<Cluster> {
  const started = Date.now();
  const log = opts.log ?? stderrLog;
  const namespace = opts.namespace ?? 'default';
  const timings: Record<string, number> = {};
  let t = Date.now();
  const lap = (name: string) => {
    timings[name] = Date.now() - t;
    t = Date.now();
  };
  const binaries = ensureBinaries(log, { ui: opts.ui });
  timings.build = binaries.buildMs;
  t = Date.now();
  const pg = await Postgres.start(log);
  const cleanup = () => pg.stop();
  process.once('exit', cleanup);
  lap('postgres');
  let server: TemporalServer | null = null;
  try {
    createSchemas(binaries.sqlTool, pg);
    lap('schema');
    // Membership ports go into a smallint column of cluster_membership: they must be below 32768.
    const [grpc, http, matching, history, worker] = await freePorts(5);
    const [fm, mm, hm, wm] = await freePorts(4, { below: 32768 });
    const rest = [fm, matching, mm, history, hm, worker, wm];
    server = new TemporalServer(
      binaries.server,
      pg,
      { grpc, http, rest },
      path.join(opts.logDir ?? pg.dir, 'temporal.log'),
    );
    const s = server;
    process.once('exit', () => s.killNow());
    await server.start();
    // connect() calls GetSystemInfo, which answers "Frontend is not healthy yet" for a while after the port opens.
    const connection = await connectWhenHealthy(server.address, 120_000);
    await ensureNamespace(connection, namespace);
    lap('server');
    // The worker does this too at start; doing it here first means clients can filter right away.
    const registration = await ensureSearchAttributes(connection, namespace);
    if (registration.warning) throw new Error(registration.warning);
    lap('searchAttributes');
    return {
      pg,
      server,
      binaries,
      address: server.address,
      namespace,
      connection,
      timings,
      startMs: Date.now() - started,
      stop: async () => {
        await connection.close().catch(() => undefined);
        await s.stop();
        pg.stop();
      },
    };
  } catch (err) {
    await server?.stop(5000);
    const tail = server?.tail() ?? '';
    pg.stop();
    throw new Error(`${(err as Error).message}${tail ? `\n--- temporal server log ---\n${tail}` : ''}`);
  }
}

/** Starts the Web UI server against `address` with the codec endpoint; returns the child process. */
export async function startUi(
  ui: NonNullable<Binaries['ui']>,
  address: string,
  port: number,
  codecEndpoint: string | null,
  logFile: string,
): Promise<ChildProcess> {
  const out = openSync(logFile, 'a');
  const child = spawn(ui.binary, ['--root', ui.root, '--env', 'docker', 'start'], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: address,
      TEMPORAL_UI_PORT: String(port),
      TEMPORAL_CODEC_ENDPOINT: codecEndpoint ?? '',
      TEMPORAL_CODEC_PASS_ACCESS_TOKEN: 'false',
      TEMPORAL_DISABLE_NEWS_FETCH: 'true',
      TEMPORAL_CSRF_COOKIE_INSECURE: 'true',
    },
    stdio: ['ignore', out, out],
  });
  await waitForPort(port, 30_000, 'Temporal Web UI');
  return child;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const known = new Set(['--exit-after-ready', '--build-only', '--cached', '--no-ui']);
  const unknown = argv.find((a) => !known.has(a));
  if (unknown) {
    process.stderr.write(`cluster: unknown option ${unknown} (known: ${[...known].join(', ')})\n`);
    process.exit(2);
  }
  if (argv.includes('--cached')) process.exit(cachedBinaries() ? 0 : 1);
  const wantUi = !argv.includes('--no-ui');
  if (argv.includes('--build-only')) {
    const b = ensureBinaries(stderrLog, { ui: wantUi });
    process.stdout.write(
      `server ${b.server}\nsql-tool ${b.sqlTool}\nui ${b.ui?.binary ?? '(none)'}\nbuild ${(b.buildMs / 1000).toFixed(1)} s\n`,
    );
    return;
  }

  const started = Date.now();
  const cluster = await startCluster({ ui: wantUi });
  const children: ChildProcess[] = [];
  const stack = await EmulatorStack.start();
  const demo = stack.addInstance('demo', { gcpProject: 'sg-demo-project' });
  const codecKeys = generateCodecKey('cluster-1');
  const [uiPort, codecPort] = await freePorts(2);
  const codecServer = await startCodecServer({
    codec: new AesGcmCodec(parseCodecKeys(codecKeys, 'cluster')),
    port: codecPort,
    host: '127.0.0.1',
    corsOrigins: [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`],
    // As in `npm run dev`: loopback only and a key made for this run, and the UI (started with
    // TEMPORAL_CODEC_PASS_ACCESS_TOKEN=false) has no way to send a bearer token. Production sets one (docker-compose.yml).
    insecureNoAuth: true,
    passPlaintext: true,
  });

  const deploymentName = 'managed-smtp';
  const buildId = `cluster-${(spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout || 'local').trim()}`;
  const workerEnv = {
    ...stack.workerEnv(),
    TEMPORAL_ADDRESS: cluster.address,
    TEMPORAL_NAMESPACE: cluster.namespace,
    [CODEC_KEYS_ENV]: codecKeys,
    MANAGED_SMTP_SOURCEGRAPH_URLS: 'http://127.0.0.1:*',
    MANAGED_SMTP_WORKER_DEPLOYMENT: deploymentName,
    MANAGED_SMTP_WORKER_BUILD_ID: buildId,
  };
  const workersStarted = Date.now();
  const workerLog = (label: string) => path.join(cluster.pg.dir, `worker-${label}.log`);
  const workers = await Promise.all(
    ['A', 'B'].map((label) => spawnWorker(workerEnv, { label, logFile: workerLog(label) })),
  );
  children.push(...workers.map((w) => w.child));
  await setCurrentVersion(cluster.connection, cluster.namespace, deploymentName, buildId);
  const workersMs = Date.now() - workersStarted;

  let uiLine = 'Web UI               not built (see the messages above)';
  if (cluster.binaries.ui) {
    const ui = await startUi(
      cluster.binaries.ui,
      cluster.address,
      uiPort,
      codecServer.url,
      path.join(cluster.pg.dir, 'ui.log'),
    );
    children.push(ui);
    uiLine = `Web UI               http://127.0.0.1:${uiPort}/namespaces/${cluster.namespace}/workflows`;
  }
  const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  process.stdout.write(`
managed-smtp cluster is ready in ${secs(Date.now() - started)} (build ${secs(cluster.timings.build)}, PostgreSQL ${secs(cluster.timings.postgres)}, schemas ${secs(cluster.timings.schema)}, server and namespace ${secs(cluster.timings.server)}, search attributes ${secs(cluster.timings.searchAttributes)}, workers ${secs(workersMs)}).

  Temporal server      ${cluster.address}   (temporal-server ${TEMPORAL_SERVER_VERSION}, ${SERVER_CONFIG})
  PostgreSQL           127.0.0.1:${cluster.pg.port}   (default store + SQL visibility; data in ${cluster.pg.dir})
  Workers              2 × worker/main.ts, Worker Deployment ${deploymentName}, current version ${buildId}
  ${uiLine}
  Codec server         ${codecServer.url}
  SparkPost emulator   ${stack.sparkpost.url}
  Logs                 ${cluster.server.log}, ${workerLog('A')}, ${workerLog('B')}${cluster.binaries.ui ? `, ${path.join(cluster.pg.dir, 'ui.log')}` : ''}

Give smtpctl the cluster's address and codec key:

  export TEMPORAL_ADDRESS=${cluster.address} ${CODEC_KEYS_ENV}=${codecKeys} MANAGED_SMTP_SOURCEGRAPH_URLS='http://127.0.0.1:*'
  npx smtpctl enable demo --sourcegraph-url ${demo.sourcegraphUrl} --gcp-project ${demo.gcpProject} --wait
`);

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    for (const c of children.reverse()) c.kill('SIGTERM');
    await Promise.all(workers.map((w) => stopWorker(w, 15_000)));
    await codecServer.close();
    await stack.close();
    await cluster.stop();
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
  if (argv.includes('--exit-after-ready')) await stop(0);
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
