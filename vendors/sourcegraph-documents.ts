/**
 * Every GraphQL document managed-smtp sends to a Sourcegraph instance, as named constants, so that one test
 * (test/graphql-documents.test.ts) can validate all of them against the real schema subset, and the emulator
 * can validate whatever actually arrives over the wire against the same file.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/** Reads the site configuration: its id (pass it back as `lastID`), the redacted JSONC text and problems. */
export const SITE_CONFIG_QUERY = `query SiteConfiguration {
  site {
    configuration {
      id
      effectiveContents
      validationMessages
    }
  }
}`;

/** Replaces the whole site configuration, guarded by the id last read (optimistic concurrency). */
export const UPDATE_SITE_CONFIG_MUTATION = `mutation UpdateSiteConfiguration($lastID: Int!, $input: String!) {
  updateSiteConfiguration(lastID: $lastID, input: $input)
}`;

/** Makes the instance itself send a test email through its configured SMTP settings. */
export const SEND_TEST_EMAIL_MUTATION = `mutation SendTestEmail($to: String!) {
  sendTestEmail(to: $to)
}`;

/** Every document above, keyed by its operation name (which is also the `operationName` sent with it). */
export const ALL_DOCUMENTS: Record<string, string> = {
  SiteConfiguration: SITE_CONFIG_QUERY,
  UpdateSiteConfiguration: UPDATE_SITE_CONFIG_MUTATION,
  SendTestEmail: SEND_TEST_EMAIL_MUTATION,
};

const REPO_COPY = path.join(__dirname, 'sourcegraph-schema.graphql');
const SHARED_COPY = path.resolve(__dirname, '..', '..', 'shared', 'reference', 'sourcegraph-schema.graphql');

/**
 * Absolute path of the Sourcegraph schema subset. The copy kept in the repository wins, because production images
 * do not carry the shared reference directory that CI checks out beside the repository.
 */
export const SCHEMA_PATH: string = existsSync(REPO_COPY) ? REPO_COPY : SHARED_COPY;
