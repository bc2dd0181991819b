/**
 * `npm run dev`: the whole local stack in one command. A Temporal dev server with its Web UI and managed SMTP's
 * search attributes, the vendor emulators seeded with a demo instance (its admin token in the Secret Manager
 * emulator), and a worker process started exactly as `npm run worker` would be, configured by the environment.
 * Prints the UI address and a ready-to-paste `smtpctl enable` line. Ctrl-C stops everything.
 *
 * `--port-offset N` shifts every port (to run beside another stack); `--exit-after-ready` stops once ready (smoke test).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { EmulatorStack, STACK_SOURCEGRAPH_URLS } from '../emulators/stack';
import { SOURCEGRAPH_URLS_ENV } from '../lib/allow-list';
import { AesGcmCodec, CODEC_KEYS_ENV, generateCodecKey, parseCodecKeys } from '../lib/codec';
import { startCodecServer } from '../worker/codec-server';
import { SEARCH_ATTRIBUTES } from '../lib/search-attributes';
import { findTemporalCli } from './temporal-cli';
import { Client, Connection } from '@temporalio/client';
import { dataConverterFor } from '../lib/codec';
import { DEMO_RECIPIENTS, startDevEvents, type DevEvents } from './dev-events';

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const offsetArg = argv.indexOf('--port-offset');
const offset = offsetArg >= 0 ? Number(argv[offsetArg + 1]) : 0;
if (!Number.isInteger(offset) || offset < 0 || offset > 50_000) {
  process.stderr.write('dev: invalid --port-offset: must be an integer from 0 to 50000\n');
  process.exit(2);
}

/** The dev stack's ports (before the offset). */
export const DEV_PORTS = {
  temporal: 7233,
  ui: 8233,
  sparkpost: 4010,
  relay: 2587,
  secretManager: 8085,
  sourcegraph: 3080,
  state: 4000,
  codec: 8888,
  webhooks: 8090,
};
const port = (name: keyof typeof DEV_PORTS) => DEV_PORTS[name] + offset;

const DEMO_CONFIG = `{
  // Site configuration of the demo instance. managed-smtp edits only the email keys and keeps these comments.
  "externalURL": "http://127.0.0.1:${port('sourcegraph')}/demo",
  "auth.providers": [{ "type": "builtin", "allowSignup": true }],
  "email.senderName": "Demo Sourcegraph"
}
`;

const children: ChildProcess[] = [];

function waitForPort(p: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = net.connect(p, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('error', () => {
        socket.destroy();
        if (Date.now() > deadline) reject(new Error(`nothing listens on 127.0.0.1:${p} after ${timeoutMs / 1000}s`));
        else setTimeout(attempt, 250);
      });
    };
    attempt();
  });
}

function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker not ready after ${timeoutMs / 1000}s`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      process.stdout.write(chunk);
      if (pattern.test(chunk.toString())) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with code ${code}`));
    });
  });
}

async function main(): Promise<void> {
  const temporalCli = findTemporalCli();
  if (!temporalCli) throw new Error('the Temporal CLI is required (see the messages above)');

  const stack = await EmulatorStack.start({
    ports: {
      sparkpost: port('sparkpost'),
      relay: port('relay'),
      secretManager: port('secretManager'),
      sourcegraph: port('sourcegraph'),
    },
  });
  const demo = stack.addInstance('demo', { config: DEMO_CONFIG, gcpProject: 'sg-demo-project' });

  // One page with every emulator's state (secrets masked), to see what provisioning did.
  let devEvents: DevEvents | null = null;
  const stateServer = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.method === 'POST' && req.url === '/demo/complaints') {
      // issue 13: a complaint burst at volume for the demo instance, to watch the protection ladder act.
      const added = devEvents?.complaintBurst() ?? null;
      res.statusCode = added === null ? 409 : 200;
      res.end(JSON.stringify(added === null ? { error: 'enable demo first' } : { added }));
      return;
    }
    // Fetched now and then: a kept-alive socket would race the server's idle timeout ("other side closed").
    res.setHeader('connection', 'close');
    res.end(JSON.stringify(stack.snapshot(), null, 2));
  });
  await new Promise<void>((r) => stateServer.listen(port('state'), '127.0.0.1', r));

  // Payload encryption as in production, with a fresh key per run (the dev server's history is in memory). The
  // Web UI decodes through the codec server; smtpctl needs the same key in its environment.
  const codecKeys = generateCodecKey('dev-1');
  const codec = new AesGcmCodec(parseCodecKeys(codecKeys, 'dev'));
  const codecServer = await startCodecServer({
    codec,
    port: port('codec'),
    host: '127.0.0.1',
    corsOrigins: [`http://127.0.0.1:${port('ui')}`, `http://localhost:${port('ui')}`],
    // Dev only: no token (loopback, a throwaway key), and plaintext passed (the UI also shows unencoded metadata).
    insecureNoAuth: true,
    passPlaintext: true,
  });

  const server = spawn(
    temporalCli,
    [
      'server',
      'start-dev',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port('temporal')),
      '--ui-port',
      String(port('ui')),
      '--log-level',
      'warn',
      '--ui-codec-endpoint',
      codecServer.url,
      ...Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  children.push(server);
  await waitForPort(port('temporal'), 30_000);

  const worker = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'worker', 'main.ts')], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: {
      ...process.env,
      ...stack.workerEnv(),
      TEMPORAL_ADDRESS: `127.0.0.1:${port('temporal')}`,
      [CODEC_KEYS_ENV]: codecKeys,
    },
  });
  children.push(worker);
  await waitForLine(worker, /polling task queue/, 60_000);
  worker.stdout?.pipe(process.stdout);

  // issue 13: the event receiver, registered as the emulated SparkPost's webhook, and demo traffic.
  const temporalClient = new Client({
    connection: await Connection.connect({ address: `127.0.0.1:${port('temporal')}` }),
    dataConverter: dataConverterFor(codec),
  });
  devEvents = await startDevEvents({
    stack,
    temporal: temporalClient,
    port: port('webhooks'),
    log: (line) => process.stdout.write(`${line}\n`),
  });

  const exports = [
    `export ${CODEC_KEYS_ENV}=${codecKeys}`,
    // smtpctl checks --sourcegraph-url against the same allow-list as the worker: the emulators are on loopback.
    `export ${SOURCEGRAPH_URLS_ENV}='${STACK_SOURCEGRAPH_URLS}'`,
  ];
  if (offset) exports.push(`export TEMPORAL_ADDRESS=127.0.0.1:${port('temporal')}`);
  process.stdout.write(`
managed-smtp dev stack is ready.

  Temporal Web UI      http://127.0.0.1:${port('ui')}/namespaces/default/workflows
  Temporal server      127.0.0.1:${port('temporal')}
  SparkPost API        ${stack.sparkpost.url}   (state: ${stack.sparkpost.origin}/__emulator/state)
  SMTP relay           ${stack.relay.host}:${stack.relay.port} (STARTTLS, AUTH SMTP_Injection + send key)
  Secret Manager       ${stack.secretManager.address} (gRPC, no auth)
  Sourcegraph (demo)   ${demo.sourcegraphUrl}   (state: ${stack.sourcegraph.origin}/__emulator/sites/demo)
  All emulator state   http://127.0.0.1:${port('state')}/   (secrets masked)
  Codec server         ${codecServer.url}   (the Web UI decodes encrypted payloads through it)

Payloads are encrypted; give smtpctl the dev key first (in the shell you run it from):

  ${exports.join('\n  ')}

Enable managed SMTP for the demo instance:

  npx smtpctl enable demo --sourcegraph-url ${demo.sourcegraphUrl} --gcp-project ${demo.gcpProject} --wait

Then: npx smtpctl status demo   and   npx smtpctl disable demo --wait

Why didn't the user get the email? (reads SparkPost directly, so smtpctl needs the operator key too):

  export SPARKPOST_API_URL=${stack.sparkpost.url} SPARKPOST_API_KEY=${stack.operatorKey}
  npx smtpctl why demo ${DEMO_RECIPIENTS.bounced}      (also ${DEMO_RECIPIENTS.delivered}, ${DEMO_RECIPIENTS.complained})
  npx smtpctl suppression list demo

Reputation protection (events reach ${devEvents.service.origin} as SparkPost webhook batches):

  curl -s -X POST http://127.0.0.1:${port('state')}/demo/complaints   # 8 complaints in 400: demo is quarantined
  npx smtpctl protection status demo      then   npx smtpctl protection clear demo --reason tried
`);

  const stop = async () => {
    for (const c of children.reverse()) c.kill('SIGTERM');
    stateServer.close();
    await devEvents?.close();
    await codecServer.close();
    await stack.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (argv.includes('--exit-after-ready')) await stop();
  server.once('exit', (code) => {
    process.stderr.write(`dev: the Temporal server exited (${code}); stopping\n`);
    void stop();
  });
}

main().catch((err) => {
  process.stderr.write(`dev: ${err instanceof Error ? err.message : String(err)}\n`);
  for (const c of children) c.kill('SIGTERM');
  process.exit(1);
});
