/**
 * Local emulator of SparkPost's SMTP relay (smtp.eu.sparkpostmail.com:587): STARTTLS with smtp-server's built-in
 * self-signed certificate, AUTH (PLAIN, LOGIN) offered only after STARTTLS, username `SMTP_Injection` and an API key
 * with `smtp/inject` as password, and From domains limited to the sending domains of the key's subaccount. Accepted
 * messages are recorded in the SparkPost emulator (metrics and events), not delivered anywhere.
 */

import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';

import { Faults, type FaultConfig } from '../../lib/faults';
import type { AcceptedMessage, SparkPostEmulator } from './api';
import { listen } from '../../lib/listen';

export type { AcceptedMessage } from './api';

/** SparkPost's username for SMTP injection; the password is the API key. */
const SMTP_USERNAME = 'SMTP_Injection';
/** SparkPost accepts messages up to 20 MB. */
const MAX_MESSAGE_BYTES = 20 * 1024 * 1024;
/** Only the header block is kept (to read Subject); the body is counted and discarded. */
const MAX_HEADER_BYTES = 64 * 1024;
const MAX_RECIPIENTS = 1000;

/** Who the session authenticated as. */
interface RelayUser {
  subaccountId: number | null;
  keyId: string;
}

/** An SMTP error reply: smtp-server sends `responseCode message`. */
function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

/** The SparkPost SMTP relay emulator. */
export class SmtpRelayEmulator {
  /** Address the relay listens on. */
  readonly host: string;
  /** Port the relay listens on. */
  readonly port: number;
  /** Messages this relay accepted, oldest first. */
  readonly messages: AcceptedMessage[];
  /** Fault knobs, applied at the end of DATA (route `SMTP DATA`). */
  readonly faults: Faults;

  private constructor(
    private readonly server: SMTPServer,
    host: string,
    port: number,
    faults: Faults,
    messages: AcceptedMessage[],
  ) {
    this.host = host;
    this.port = port;
    this.faults = faults;
    this.messages = messages;
  }

  /** Starts the relay on 127.0.0.1 (random port unless given). */
  static async start(opts: {
    sparkpost: SparkPostEmulator;
    host?: string;
    port?: number;
    faults?: Partial<FaultConfig>;
    /** Largest accepted message in bytes (default 20 MB, SparkPost's limit). */
    maxMessageBytes?: number;
  }): Promise<SmtpRelayEmulator> {
    const sp = opts.sparkpost;
    const maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    const faults = new Faults(opts.faults);
    const messages: AcceptedMessage[] = [];
    const server: SMTPServer = new SMTPServer({
      name: 'smtp.sparkpost.emulator',
      banner: 'SparkPost relay emulator',
      logger: false,
      secure: false,
      // AUTH is neither advertised nor accepted before STARTTLS, as on SparkPost.
      allowInsecureAuth: false,
      authOptional: false,
      authMethods: ['PLAIN', 'LOGIN'],
      size: maxBytes,
      // Replies carry SparkPost's own enhanced codes, written into the messages below.
      hideENHANCEDSTATUSCODES: true,
      closeTimeout: 1000,
      // smtp-server would list AUTH in the EHLO reply before STARTTLS; SparkPost does not offer it there at all.
      onConnect(session, callback) {
        session.disabledCommands = ['AUTH'];
        callback();
      },
      onSecure(_socket, session, callback) {
        session.disabledCommands = [];
        callback();
      },
      onAuth(auth, session, callback) {
        const key = typeof auth.password === 'string' ? auth.password : '';
        const who = auth.username === SMTP_USERNAME ? sp.authenticateSmtpKey(key, session.remoteAddress) : null;
        if (!who) {
          callback(smtpError(535, '5.7.8 Error: authentication failed: No authentication type succeeded'));
          return;
        }
        callback(null, { user: who satisfies RelayUser });
      },
      onMailFrom(address, session, callback) {
        const user = session.user as RelayUser | undefined;
        // smtp-server does not demand AUTH while it is disabled (before STARTTLS): this does.
        if (!user) return callback(smtpError(530, '5.7.0 Must issue a STARTTLS command first'));
        const at = address.address.lastIndexOf('@');
        const domain = at >= 0 ? address.address.slice(at + 1).toLowerCase() : '';
        if (!domain || !sp.canSendFrom(user.subaccountId, domain)) {
          return callback(smtpError(550, `5.7.1 Unconfigured Sending Domain <${domain}>`));
        }
        callback();
      },
      onRcptTo(_address, session, callback) {
        if (session.envelope.rcptTo.length >= MAX_RECIPIENTS) {
          return callback(smtpError(452, '4.5.3 Too many recipients'));
        }
        callback();
      },
      onData(stream, session, callback) {
        readHeaders(stream)
          .then(async (headers) => {
            if (stream.sizeExceeded) {
              return callback(smtpError(552, `5.3.4 Message size exceeds fixed limit of ${maxBytes}`));
            }
            await faults.delay();
            const decision = faults.decide('SMTP DATA');
            if (decision === 'error') return callback(smtpError(451, '4.3.0 Temporary failure, try again later'));
            if (decision === 'rate-limit') return callback(smtpError(421, '4.7.0 Too many messages, slow down'));
            const user = session.user as RelayUser;
            const msg: AcceptedMessage = {
              at: new Date().toISOString(),
              subaccountId: user.subaccountId,
              keyId: user.keyId,
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
              subject: subjectOf(headers),
            };
            sp.recordAccepted({
              subaccountId: msg.subaccountId,
              keyId: msg.keyId,
              from: msg.from,
              to: msg.to,
              subject: msg.subject,
            });
            messages.push(msg);
            if (decision === 'drop') {
              // Accepted, but the reply is lost: the client cannot know it was sent.
              dropConnection(server, session);
              return;
            }
            callback(null, `2.0.0 OK ${session.id}`);
          })
          .catch((e: unknown) => callback(smtpError(451, `4.3.0 ${e instanceof Error ? e.message : 'error'}`)));
      },
    });
    const bound = await listen(server.server, opts.port, opts.host);
    server.on('error', () => {
      // Client-side socket errors are the client's problem; keep serving.
    });
    return new SmtpRelayEmulator(server, bound.host, bound.port, faults, messages);
  }

  /** Stops the relay (open sessions are cut after at most a second). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function dropConnection(server: SMTPServer, session: SMTPServerSession): void {
  for (const c of server.connections) {
    if (c.id === session.id) c._socket.destroy();
  }
}

/** Reads the header block (bounded) and drains the rest of the message. */
function readHeaders(stream: SMTPServerDataStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    stream.on('data', (chunk: Buffer) => {
      if (done) return;
      chunks.push(chunk);
      size += chunk.length;
      const text = Buffer.concat(chunks).toString('utf8');
      if (/\r?\n\r?\n/.test(text) || size >= MAX_HEADER_BYTES) done = true;
    });
    stream.once('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const m = /\r?\n\r?\n/.exec(text);
      resolve(m ? text.slice(0, m.index) : text.slice(0, MAX_HEADER_BYTES));
    });
    stream.once('error', reject);
  });
}

/** The decoded Subject header, '' when absent. */
export function subjectOf(headers: string): string {
  const unfolded = headers.replace(/\r?\n[ \t]+/g, ' ');
  const line = unfolded.split(/\r?\n/).find((l) => /^subject:/i.test(l));
  return line ? decodeWords(line.slice('subject:'.length).trim()) : '';
}

/** RFC 2047 encoded words (`=?UTF-8?B?...?=`, `=?UTF-8?Q?...?=`), as nodemailer writes non-ASCII subjects. */
function decodeWords(value: string): string {
  return value
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=/g, (_all, charset: string, enc: string, text: string) => {
      const buf =
        enc.toUpperCase() === 'B'
          ? Buffer.from(text, 'base64')
          : Buffer.from(
              text
                .replace(/_/g, ' ')
                .replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))),
              'latin1',
            );
      return /^(utf-?8|us-ascii)$/i.test(charset) ? buf.toString('utf8') : buf.toString('latin1');
    });
}
