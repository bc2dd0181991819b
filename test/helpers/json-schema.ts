/**
 * Validates smtpctl's `--json` output against the JSON Schemas published in schemas/ (not the zod source), so a test
 * fails when a command prints something its published contract does not allow. Use it on every `--json` output:
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

/** Fails unless `doc` is valid against the published schema `name` (e.g. 'status', 'list', 'error'). */
export function assertMatchesSchema(name: string, doc: unknown): void {
  const r = validatorOf(name).safeParse(doc);
  if (!r.success) {
    const issues = r.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    assert.fail(`output does not match schemas/${name}.schema.json: ${issues.join('; ')}`);
  }
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
