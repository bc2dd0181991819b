/** Starting a server: one place for binding, bind errors and the URL of what was bound. */
import type { AddressInfo, Server } from 'node:net';

/** Where a server listens. */
export interface Listening {
  host: string;
  port: number;
  /** `http://host:port` (IPv6 hosts in brackets). */
  origin: string;
}

/** Listens on host:port (port 0: a random free one) and resolves once listening; a bind error rejects. */
export async function listen(server: Server, port = 0, host = '127.0.0.1'): Promise<Listening> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = (server.address() as AddressInfo).port;
  return { host, port: bound, origin: `http://${host.includes(':') ? `[${host}]` : host}:${bound}` };
}
