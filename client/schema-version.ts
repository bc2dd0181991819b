/**
 * The version of smtpctl's JSON documents (schemas/). Every `--json` document carries it as "schemaVersion"; it goes
 * up when a field is removed or changes meaning, not when one is added. Kept free of zod so printing stays cheap.
 */
export const SCHEMA_VERSION = 1;

/** `doc` with "schemaVersion" first; in an array document (e.g. `list --json`), each object element carries it. */
export function withSchemaVersion(doc: unknown): unknown {
  if (Array.isArray(doc)) return doc.map((d) => withSchemaVersion(d));
  if (doc !== null && typeof doc === 'object') return { schemaVersion: SCHEMA_VERSION, ...doc };
  return doc;
}
