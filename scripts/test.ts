/**
 * `npm test`: finds or installs the Temporal CLI and the time-skipping test server once (so test files never race
 * to install them), then runs every test file with Node's built-in test runner through tsx. Extra arguments are
 * passed on (e.g. a single file).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { findTemporalCli, findTestServer } from './temporal-cli';

const root = path.resolve(__dirname, '..');
const cli = findTemporalCli();
if (!cli) {
  process.stderr.write('npm test: the Temporal CLI is required (see the messages above)\n');
  process.exit(1);
}
// The time-skipping test server (simulated-year tests), installed the same way and once, like the CLI.
const testServer = findTestServer();
if (!testServer) {
  process.stderr.write('npm test: the time-skipping test server is required (see the messages above)\n');
  process.exit(1);
}

const args = process.argv.slice(2);
const files = args.filter((a) => a.endsWith('.ts'));
const flags = args.filter((a) => !a.endsWith('.ts'));
const testFiles = files.length
  ? files
  : readdirSync(path.join(root, 'test'))
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => path.join('test', f));

const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...flags, ...testFiles],
  { cwd: root, stdio: 'inherit', env: { ...process.env, TEMPORAL_CLI: cli, TEMPORAL_TEST_SERVER: testServer } },
);
process.exit(result.status ?? 1);
