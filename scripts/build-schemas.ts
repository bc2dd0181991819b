/**
 * Writes the JSON Schemas of smtpctl's `--json` documents to schemas/ from the zod schemas in
 * client/output-schemas.ts: `npx tsx scripts/build-schemas.ts` after changing them (a test fails while they differ).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { jsonSchemaOf, OUTPUT_SCHEMAS, type OutputSchemaName } from '../client/output-schemas';

/** Where the schemas are published. */
export const SCHEMAS_DIR = path.resolve(__dirname, '..', 'schemas');

/** The text of schemas/<name>.schema.json. */
export function schemaFileText(name: OutputSchemaName): string {
  return JSON.stringify(jsonSchemaOf(name), null, 2) + '\n';
}

if (require.main === module) {
  mkdirSync(SCHEMAS_DIR, { recursive: true });
  for (const name of Object.keys(OUTPUT_SCHEMAS) as OutputSchemaName[]) {
    writeFileSync(path.join(SCHEMAS_DIR, `${name}.schema.json`), schemaFileText(name));
  }
  process.stdout.write(`build-schemas: wrote ${Object.keys(OUTPUT_SCHEMAS).length} schemas to ${SCHEMAS_DIR}\n`);
}
