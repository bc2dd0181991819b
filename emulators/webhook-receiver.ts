/**
 * A tiny local stand-in for a Slack incoming webhook: it records every POST (path, headers, parsed JSON body) and
 * answers `200 ok`, or whatever status a test asked for next. Bound to 127.0.0.1 only. The path may carry a
 * secret-looking token, as Slack's `/services/T…/B…/<token>` does, so tests can prove the URL never leaks.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the receiver got. */
export interface ReceivedWebhook {
  at: string;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The parsed JSON body, or the raw text when it was not JSON. */
  body: unknown;
}

/** Largest body accepted (Slack's own limit is far lower); larger bodies get 413. */
const MAX_BODY_BYTES = 1024 * 1024;

/** The receiver. */
export class WebhookReceiver {
  /** Every request, oldest first (failed ones included). */
  readonly received: ReceivedWebhook[] = [];
  private failures: number[] = [];

  private constructor(
    private readonly server: Server,
    /** `http://127.0.0.1:PORT`. */
    readonly origin: string,
  ) {}

  /** Starts on 127.0.0.1 (a random port unless given). */
  static async start(opts: { port?: number } = {}): Promise<WebhookReceiver> {
    let self: WebhookReceiver | null = null;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_BODY_BYTES) chunks.push(c);
      });
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // kept as text
        }
        self!.received.push({
          at: new Date().toISOString(),
          method: req.method ?? '',
          path: req.url ?? '/',
          headers: req.headers,
          body,
        });
        const status = size > MAX_BODY_BYTES ? 413 : (self!.failures.shift() ?? 200);
        res.writeHead(status, { 'Content-Type': 'text/plain' });
        // Slack answers `ok`, or a short error code such as `invalid_payload`.
        res.end(status === 200 ? 'ok' : status === 413 ? 'payload_too_large' : 'service_unavailable');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    self = new WebhookReceiver(server, `http://127.0.0.1:${port}`);
    return self;
  }

  /** A Slack-like webhook URL on this receiver; `token` stands for the secret part. */
  url(token = 'T0000/B0000/not-a-real-token'): string {
    return `${this.origin}/services/${token}`;
  }

  /** The next `statuses.length` requests get these statuses instead of 200. */
  failNext(...statuses: number[]): void {
    this.failures.push(...statuses);
  }

  /** Forgets what was received and any pending failures. */
  reset(): void {
    this.received.length = 0;
    this.failures = [];
  }

  /** Stops listening and drops open connections. */
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
