/**
 * Connects to Temporal with @temporalio/envconfig, so TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
 * TEMPORAL_TLS_* and TEMPORAL_PROFILE (or a Temporal Cloud profile file) work unchanged.
 */
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';

/** A connected Temporal client and its namespace. */
export async function connectTemporal(): Promise<Client> {
  const { connectionOptions, namespace } = loadClientConnectConfig();
  const connection = await Connection.connect({ ...connectionOptions, connectTimeout: '10s' });
  return new Client({ connection, namespace: process.env.TEMPORAL_NAMESPACE || namespace || 'default' });
}
