/**
 * Every GraphQL document the project sends validates against the real Sourcegraph schema subset, and the check is
 * able to fail: documents with a wrong field, a wrong variable type or a missing argument do not.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import { buildSchema, OperationTypeNode, parse, validate, type OperationDefinitionNode } from 'graphql';

import { ALL_DOCUMENTS, SCHEMA_PATH } from '../vendors/sourcegraph-documents';

const schema = buildSchema(readFileSync(SCHEMA_PATH, 'utf8'));

function errorsOf(document: string): string[] {
  return validate(schema, parse(document)).map((e) => e.message);
}

describe('GraphQL documents', () => {
  test('the schema file is the repository copy, identical to the shared reference when that is present', () => {
    const repoCopy = path.resolve(__dirname, '..', 'vendors', 'sourcegraph-schema.graphql');
    assert.equal(SCHEMA_PATH, repoCopy);
    const shared = path.resolve(__dirname, '..', '..', 'shared', 'reference', 'sourcegraph-schema.graphql');
    if (existsSync(shared)) assert.equal(readFileSync(repoCopy, 'utf8'), readFileSync(shared, 'utf8'));
  });

  test('there are documents to check', () => {
    assert.deepEqual(Object.keys(ALL_DOCUMENTS).sort(), [
      'SendTestEmail',
      'SiteConfiguration',
      'UpdateSiteConfiguration',
    ]);
  });

  for (const [name, document] of Object.entries(ALL_DOCUMENTS)) {
    test(`${name} validates with zero errors and is one operation of that name`, () => {
      assert.deepEqual(errorsOf(document), []);
      const ops = parse(document).definitions.filter(
        (d): d is OperationDefinitionNode => d.kind === 'OperationDefinition',
      );
      assert.equal(ops.length, 1);
      assert.equal(ops[0].name?.value, name);
      assert.equal(
        ops[0].operation,
        name === 'SiteConfiguration' ? OperationTypeNode.QUERY : OperationTypeNode.MUTATION,
      );
    });
  }

  test('deliberately wrong documents do not validate', () => {
    const wrong: [string, RegExp][] = [
      ['query Q { site { configuration { id password } } }', /Cannot query field "password"/],
      [
        'mutation M($lastID: String!, $input: String!) { updateSiteConfiguration(lastID: $lastID, input: $input) }',
        /Variable "\$lastID" of type "String!" used in position expecting type "Int!"/,
      ],
      [
        'mutation M($input: String!) { updateSiteConfiguration(input: $input) }',
        /argument "lastID" of type "Int!" is required/,
      ],
      ['mutation M { sendTestEmail(to: "a@b.c") { ok } }', /must not have a selection/],
      ['query Q { site { configuration } }', /must have a selection of subfields/],
    ];
    for (const [document, re] of wrong) {
      const errors = errorsOf(document);
      assert.ok(errors.length > 0, document);
      assert.ok(
        errors.some((e) => re.test(e)),
        `${document}: ${errors.join('; ')}`,
      );
    }
  });
});
