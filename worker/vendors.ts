/**
 * The real vendor clients from the validated worker configuration: apart from the Temporal worker (worker.ts), so the
 * benchmark's plain-script peer builds the very same clients without loading the SDK's worker and native core.
 */
import type { ActivityDeps } from '../activities';
import type { WorkerConfig } from './config';
import { SecretStore } from '../vendors/secret-manager';
import { SourcegraphClient } from '../vendors/sourcegraph';
import { SparkPostClient } from '../vendors/sparkpost';

/** Real vendor clients from the validated environment. */
export function vendorDeps(config: WorkerConfig): ActivityDeps {
  return {
    sparkpost: new SparkPostClient({ baseUrl: config.sparkpostApiUrl, apiKey: config.sparkpostApiKey }),
    secrets: new SecretStore({ emulatorHost: config.secretManagerEmulatorHost }),
    sourcegraph: (opts) => new SourcegraphClient(opts),
    sourcegraphUrls: config.sourcegraphUrls,
    settings: {
      relayHost: config.relayHost,
      relayPort: config.relayPort,
      senderDomain: config.senderDomain,
      testRecipient: config.testRecipient,
    },
  };
}
