/**
 * Validates smtpctl's `--json` output against the JSON Schemas published in schemas/ (not the zod source), so a test
 * fails when a command prints something its published contract does not allow. The test helpers that run smtpctl
 * (World.cli, and each test file's own runner) call assertCliOutput on every run, so every `--json` and `--ndjson`
 * output of the suite is checked without a test having to ask; a test may still parse with:
 *
 *   const status = parseJsonDocument('status', run.stdout);
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

const SCHEMAS_DIR = path.resolve(__dirname, '..', '..', 'schemas');
const cache = new Map<string, z.ZodType>();

/** The zod validator of schemas/<name>.schema.json. */
function validatorOf(name: string): z.ZodType {
  let v = cache.get(name);
  if (!v) {
    const json = JSON.parse(readFileSync(path.join(SCHEMAS_DIR, `${name}.schema.json`), 'utf8'));
    v = z.fromJSONSchema(json);
    cache.set(name, v);
  }
  return v;
}

/** `$.instances[3].state`: where in the document an issue is. */
function jsonPath(p: readonly PropertyKey[]): string {
  return (
    '$' +
    p
      .map((k) =>
        typeof k === 'number'
          ? `[${k}]`
          : /^[A-Za-z_$][\w$]*$/.test(String(k))
            ? `.${String(k)}`
            : `[${JSON.stringify(String(k))}]`,
      )
      .join('')
  );
}

type Issue = z.core.$ZodIssue;

/**
 * The issues that say what is wrong: a union that matched no branch reports the branch that came closest (fewest
 * issues) instead of zod's bare "Invalid input" at the union, so the message names the field that is off.
 */
function leafIssues(
  issues: readonly Issue[],
  prefix: readonly PropertyKey[] = [],
): Array<{ path: string; message: string }> {
  return issues.flatMap((i) => {
    const at = [...prefix, ...i.path];
    if (i.code === 'invalid_union' && i.errors.length > 0) {
      const closest = [...i.errors].sort((a, b) => a.length - b.length)[0];
      if (closest.length > 0) return leafIssues(closest, at);
    }
    return [{ path: jsonPath(at), message: i.message.replace(/\s+/g, ' ') }];
  });
}

/** Why `doc` is not valid against schema `name`, in one line; null when it is valid. */
export function schemaProblem(name: string, doc: unknown): string | null {
  const r = validatorOf(name).safeParse(doc);
  if (r.success) return null;
  const issues = leafIssues(r.error.issues).slice(0, 3);
  return `schemas/${name}.schema.json: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`;
}

/** Fails, with one line naming the schema and the JSON path, unless `doc` is valid against the published schema `name`. */
export function assertMatchesSchema(name: string, doc: unknown): void {
  const problem = schemaProblem(name, doc);
  if (problem) assert.fail(`output does not match ${problem}`);
}

/** Parses stdout as exactly one JSON document and validates it against schema `name`. */
export function parseJsonDocument<T = unknown>(name: string, stdout: string): T {
  const doc = JSON.parse(stdout) as T;
  assertMatchesSchema(name, doc);
  return doc;
}

/** Parses NDJSON (one document a line, each ending in a newline) and validates each line against schema `name`. */
export function parseNdjson<T = unknown>(name: string, stdout: string): T[] {
  assert.ok(stdout === '' || stdout.endsWith('\n'), 'NDJSON output ends with a newline');
  return stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const doc = JSON.parse(l) as T;
      assertMatchesSchema(name, doc);
      return doc;
    });
}

/**
 * The published schema of what `smtpctl <argv>` prints (schemas/README.md's table), or null when it prints no JSON
 * (no `--json`/`--ndjson`, or `--help`). Throws for a JSON command with no schema, so a new command needs one.
 */
export function cliSchemaOf(argv: readonly string[]): string | null {
  const has = (flag: string) => argv.includes(flag);
  if (has('--help') || has('-h') || !(has('--json') || has('--ndjson'))) return null;
  // Global options take no values, so the first words are the command, its subcommand or argument.
  const [command, sub, third] = argv.filter((a) => !a.startsWith('-'));
  const wait = has('--wait');
  switch (command) {
    case 'status':
      return 'status';
    case 'enable':
    case 'disable':
    case 'rotate-key':
      return wait ? 'status' : 'request';
    case 'list':
      return has('--ndjson') ? 'list-ndjson-line' : has('--limit') ? 'list-page' : 'list';
    case 'check':
      return 'check';
    case 'check-fleet':
      return has('--schedule') ? 'check-fleet-schedule' : 'check-fleet';
    case 'enable-fleet':
      return has('--dry-run') ? 'enable-fleet-dry-run' : 'enable-fleet';
    case 'gdpr-delete':
      return wait ? 'gdpr-receipt' : 'gdpr-delete';
    case 'gdpr-status':
      // `gdpr-status <instance> <requestId>` prints that one receipt.
      return third === undefined ? 'gdpr-status' : 'gdpr-receipt';
    case 'offboard':
      return wait ? 'offboard-receipt' : 'offboard';
    case 'stats':
      return has('--ndjson') ? 'stats-ndjson-line' : 'stats';
    case 'alerts':
      if (sub === 'schedule' || sub === 'run-once') return `alerts-${sub}`;
      break;
    case 'sending-domain':
      if (sub === 'add' || sub === 'verify') return wait ? 'status' : `sending-domain-${sub}`;
      if (sub === 'remove' || sub === 'cancel') return 'status';
      if (sub === 'show') return 'sending-domain-show';
      break;
    case 'ip-pool':
      return 'ip-pool';
    case 'why':
      return 'why';
    case 'suppression':
      if (sub === 'list' || sub === 'remove') return `suppression-${sub}`;
      break;
    case 'webhooks':
      if (sub === 'install') return 'webhooks-install';
      break;
    case 'protection':
      return 'protection';
  }
  // A usage error (unknown command) prints only the error document.
  return 'error';
}

/**
 * Fails unless what `smtpctl <argv>` printed on stdout (exit `code`) is what its published schema allows: with
 * `--json` exactly one document, with `--ndjson` one a line. A failed run prints the error document, or (check,
 * enable-fleet) its own document before failing, so either is accepted then.
 */
export function assertCliOutput(argv: readonly string[], code: number | null, stdout: string): void {
  const name = cliSchemaOf(argv);
  if (name === null) return;
  const names = code === 0 || name === 'error' ? [name] : [name, 'error'];
  const ndjson = argv.includes('--ndjson');
  const docs = ndjson ? stdout.split('\n').filter((l) => l !== '') : [stdout];
  const what = `smtpctl ${argv.join(' ')}`;
  assert.ok(stdout.trim() !== '', `${what} (exit ${code}) printed no JSON document`);
  if (ndjson) assert.ok(stdout.endsWith('\n'), `${what}: NDJSON output ends with a newline`);
  for (const [n, text] of docs.entries()) {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      assert.fail(`${what} (exit ${code}) printed ${ndjson ? `a line ${n + 1} that is` : 'stdout that is'} not JSON`);
    }
    const problems = names.map((s) => schemaProblem(s, doc));
    if (problems.some((p) => p === null)) continue;
    const where = ndjson ? ` line ${n + 1}` : '';
    assert.fail(`${what} (exit ${code})${where} does not match ${problems.join(', nor ')}`);
  }
}
