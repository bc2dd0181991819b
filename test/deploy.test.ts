/**
 * Production deployment: the compose file, the Dockerfile and the Temporal Cloud profile example are checked
 * statically (no Docker engine here); the build-time workflow bundle and the worker's production entry point run
 * for real: `npm run worker`, exactly as the image's CMD starts it, from the bundle scripts/bundle-workflows.ts
 * wrote, connected through an envconfig profile, with JSON logs, Prometheus metrics, the operator key read from
 * Secret Manager, and a SIGTERM that lets an in-flight activity finish.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { after, before, describe, test } from 'node:test';
import { loadClientConfig, loadClientConnectConfig } from '@temporalio/envconfig';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { Client } from '@temporalio/client';
import { ManagedSmtpClient } from '../client';
import { AesGcmCodec, dataConverterFor, ENCODING_ENCRYPTED, generateCodecKey, parseCodecKeys } from '../lib/codec';
import { EmulatorStack, type EmulatedInstance } from '../emulators/stack';
import { workflowIdFor } from '../lib/instance';
import type { EnableSpec } from '../lib/types';
import { createRuntimeLogger, createWorkerLogger, jsonLogLine, parseLogSettings, redactMeta } from '../worker/logging';
import { parseMetricsAddress, parseShutdownGrace } from '../worker/telemetry';
import { startTemporal, uniqueTaskQueue } from './helpers/temporal';
import { DYNAMIC_CONFIG, SERVER_CONFIG, TEMPORAL_SERVER_VERSION } from '../scripts/cluster';
import { parseWorkerVersioning } from '../worker/versioning';

const root = path.resolve(__dirname, '..');
const read = (file: string) => readFileSync(path.join(root, file), 'utf8');

// merge: compose files share settings through YAML anchors and `<<` merge keys, as Docker Compose reads them.
const yaml = { load: (text: string): unknown => parseYaml(text, { merge: true }) };

type Dict = Record<string, unknown>;
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v);
function dict(v: unknown, what: string): Dict {
  assert.ok(isDict(v), `${what} must be a mapping`);
  return v;
}
/** `environment` as a mapping, whichever form (list or mapping) the file uses. */
function envOf(service: Dict): Record<string, string> {
  const e = service.environment;
  if (Array.isArray(e)) {
    return Object.fromEntries(
      e.map((item) => {
        const s = String(item);
        const i = s.indexOf('=');
        return i < 0 ? [s, ''] : [s.slice(0, i), s.slice(i + 1)];
      }),
    );
  }
  return Object.fromEntries(Object.entries(dict(e ?? {}, 'environment')).map(([k, v]) => [k, String(v)]));
}
/** Compose durations (`45s`, `1m30s`) in milliseconds. */
function composeDurationMs(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join('') === text, `bad duration ${text}`);
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2]], 0);
}

/** Variables the worker (or the libraries it uses) read; anything else in its environment is a typo. */
const WORKER_VARIABLES = new Set([
  'TEMPORAL_ADDRESS',
  'TEMPORAL_NAMESPACE',
  'TEMPORAL_API_KEY',
  'TEMPORAL_PROFILE',
  'TEMPORAL_CONFIG_FILE',
  'MANAGED_SMTP_TASK_QUEUE',
  'SPARKPOST_API_URL',
  'SPARKPOST_API_KEY',
  'SPARKPOST_API_KEY_SECRET',
  'SMTP_RELAY_HOST',
  'SMTP_RELAY_PORT',
  'SECRET_MANAGER_EMULATOR_HOST',
  'MANAGED_SMTP_SENDER_DOMAIN',
  'MANAGED_SMTP_TEST_RECIPIENT',
  'MANAGED_SMTP_CODEC_KEYS',
  'MANAGED_SMTP_CODEC_KEY_SECRET',
  'GOOGLE_APPLICATION_CREDENTIALS',
  'MANAGED_SMTP_LOG_FORMAT',
  'MANAGED_SMTP_LOG_LEVEL',
  'MANAGED_SMTP_METRICS_ADDRESS',
  'MANAGED_SMTP_SHUTDOWN_GRACE',
  'MANAGED_SMTP_WORKFLOW_BUNDLE',
  'MANAGED_SMTP_SOURCEGRAPH_URLS',
  'MANAGED_SMTP_WORKER_DEPLOYMENT',
  'MANAGED_SMTP_WORKER_BUILD_ID',
]);

describe('docker-compose.yml', () => {
  const compose = dict(yaml.load(read('docker-compose.yml')), 'compose file');
  const services = dict(compose.services, 'services');
  const service = (name: string) => dict(services[name], `service ${name}`);
  /** Services that keep running (the one-shot jobs and the tools profile are checked separately). */
  const longRunning = ['postgresql', 'temporal', 'temporal-ui', 'codec-server', 'worker', 'prometheus'];
  const jobs = ['temporal-schema', 'temporal-namespace'];
  const script = (s: Dict) => [s.entrypoint, s.command].flat().map(String).join('\n');
  const serverVersion = TEMPORAL_SERVER_VERSION.replace(/^v/, '');

  test('has the whole stack, every image pinned to a real version tag', () => {
    for (const name of [...longRunning, ...jobs, 'smtpctl']) assert.ok(services[name], `service ${name}`);
    assert.equal(service('postgresql').image, 'postgres:15', "the major version npm run cluster runs (Debian 12's)");
    assert.match(String(service('temporal-ui').image), /^temporalio\/ui:2\.\d+\.\d+$/);
    for (const [name, raw] of Object.entries(services)) {
      const s = dict(raw, name);
      if (s.build === undefined) {
        assert.match(String(s.image), /^[\w./-]+:[\w.-]+$/, `${name}: image with a tag`);
        assert.doesNotMatch(String(s.image), /:latest$/, `${name}: not :latest`);
      }
    }
  });

  test('Temporal is temporalio/server at the version npm run cluster builds, with no auto-setup anywhere', () => {
    assert.equal(service('temporal').image, `temporalio/server:${serverVersion}`);
    for (const name of jobs) assert.equal(service(name).image, `temporalio/admin-tools:${serverVersion}`, name);
    assert.doesNotMatch(read('docker-compose.yml'), /auto-setup/, 'the dev-only image is gone');
  });

  test('the schema job creates and migrates both databases with temporal-sql-tool before the server starts', () => {
    const job = service('temporal-schema');
    const text = script(job);
    const env = envOf(job);
    assert.equal(env.SQL_PLUGIN, 'postgres12');
    assert.equal(env.SQL_HOST, 'postgresql');
    assert.match(env.SQL_PASSWORD, /^\$\{POSTGRES_PASSWORD:\?/);
    for (const db of ['temporal', 'temporal_visibility']) assert.match(text, new RegExp(`\\b${db}\\b`));
    assert.match(text, /temporal-sql-tool .*create-database/);
    assert.match(text, /temporal-sql-tool .*setup-schema -v 0\.0/);
    // The same embedded schemas scripts/cluster.ts applies, so both paths end at the same schema version.
    assert.match(text, /--db temporal update-schema --schema-name postgresql\/v12\/temporal(\s|$)/);
    assert.match(text, /--db temporal_visibility update-schema --schema-name postgresql\/v12\/visibility(\s|$)/);
    assert.equal(
      dict(dict(job.depends_on, 'depends_on').postgresql, 'depends_on.postgresql').condition,
      'service_healthy',
    );
    assert.equal(
      dict(dict(service('temporal').depends_on, 'depends_on')['temporal-schema'], 'schema').condition,
      'service_completed_successfully',
    );
    assert.equal(job.restart, 'no');
    // The namespace job registers `default` once the server is healthy; the worker waits for it.
    const ns = service('temporal-namespace');
    assert.match(script(ns), /temporal operator namespace create --namespace default/);
    assert.equal(dict(dict(ns.depends_on, 'ns').temporal, 'ns.temporal').condition, 'service_healthy');
    assert.equal(
      dict(dict(service('worker').depends_on, 'w')['temporal-namespace'], 'w.ns').condition,
      'service_completed_successfully',
    );
  });

  test('the server runs deploy/temporal/server.yaml, the configuration npm run cluster runs, on PostgreSQL', () => {
    const pg = service('postgresql');
    const volumes = (pg.volumes as string[]).map(String);
    const data = volumes.find((v) => v.endsWith(':/var/lib/postgresql/data'));
    assert.ok(data, 'a volume on /var/lib/postgresql/data');
    assert.ok(dict(compose.volumes, 'volumes')[data.split(':')[0]] !== undefined);
    assert.match(JSON.stringify(dict(pg.healthcheck, 'postgresql healthcheck').test), /pg_isready/);

    const t = service('temporal');
    const env = envOf(t);
    assert.equal(env.POSTGRES_SEEDS, 'postgresql');
    assert.equal(env.DB_PORT, '5432');
    assert.equal(env.POSTGRES_USER, envOf(pg).POSTGRES_USER);
    assert.match(env.POSTGRES_PWD, /^\$\{POSTGRES_PASSWORD:\?/);
    const mountOf = (target: string) => {
      const m = (t.volumes as string[]).map(String).find((v) => v.split(':')[1] === target);
      assert.ok(m, `${target} mounted`);
      assert.ok(m.endsWith(':ro'), `${target} read-only`);
      return path.join(root, m.split(':')[0]);
    };
    const configDir = mountOf(path.posix.dirname(env.TEMPORAL_SERVER_CONFIG_FILE_PATH));
    assert.equal(
      path.join(configDir, path.posix.basename(env.TEMPORAL_SERVER_CONFIG_FILE_PATH)),
      SERVER_CONFIG,
      'the same file scripts/cluster.ts starts the server with',
    );
    const dynamicDir = mountOf(path.posix.dirname(env.DYNAMIC_CONFIG_FILE_PATH));
    assert.equal(path.join(dynamicDir, path.posix.basename(env.DYNAMIC_CONFIG_FILE_PATH)), DYNAMIC_CONFIG);
    const dynamic = dict(yaml.load(readFileSync(DYNAMIC_CONFIG, 'utf8')), 'dynamic config');
    for (const [k, v] of Object.entries(dynamic)) assert.ok(Array.isArray(v), `${k}: a list of {value, constraints}`);
    // Every variable the template reads is one compose sets or one the image's entrypoint exports.
    const template = readFileSync(SERVER_CONFIG, 'utf8');
    assert.match(template, /^# enable-template$/m);
    const read = new Set([...template.matchAll(/env "([A-Z_]+)"/g)].map((m) => m[1]));
    for (const name of [
      'POSTGRES_SEEDS',
      'DB_PORT',
      'POSTGRES_USER',
      'POSTGRES_PWD',
      'BIND_ON_IP',
      'DYNAMIC_CONFIG_FILE_PATH',
    ]) {
      assert.ok(read.has(name), `the template reads ${name}`);
    }
    assert.match(template, /visibilityStore: visibility/);
    assert.match(template, /pluginName: postgres12[\s\S]*pluginName: postgres12/, 'both stores on PostgreSQL');
    assert.ok(dict(t.healthcheck, 'temporal healthcheck').test, 'temporal has a healthcheck');
  });

  test('only the Web UI and the codec server are published, on 127.0.0.1', () => {
    const published = Object.entries(services)
      .filter(([, raw]) => dict(raw, 'service').ports !== undefined)
      .map(([name]) => name)
      .sort();
    assert.deepEqual(published, ['codec-server', 'temporal-ui']);
    for (const name of published) {
      for (const p of service(name).ports as unknown[]) assert.match(String(p), /^127\.0\.0\.1:\d+:\d+$/, name);
    }
  });

  test('every container is hardened: read-only root, no capabilities, no-new-privileges, not root', () => {
    for (const name of [...longRunning, ...jobs, 'smtpctl']) {
      const s = service(name);
      assert.equal(s.read_only, true, `${name}: read_only`);
      assert.deepEqual(s.cap_drop, ['ALL'], `${name}: cap_drop`);
      assert.ok((s.security_opt as string[]).includes('no-new-privileges:true'), `${name}: no-new-privileges`);
      assert.ok((s.tmpfs as string[]).includes('/tmp'), `${name}: a writable /tmp`);
      if (s.user !== undefined) assert.doesNotMatch(String(s.user), /^(root|0)(:|$)/, `${name}: user`);
    }
    // PostgreSQL's entrypoint would need CHOWN/SETUID to switch users: it starts as postgres instead.
    assert.equal(service('postgresql').user, 'postgres');
    assert.ok((service('postgresql').tmpfs as string[]).includes('/var/run/postgresql'));
  });

  test('the Web UI reaches Temporal and the codec server; the codec server demands its token', () => {
    const ui = service('temporal-ui');
    const uiEnv = envOf(ui);
    assert.equal(uiEnv.TEMPORAL_ADDRESS, 'temporal:7233');
    assert.ok(
      (ui.ports as string[]).some((p) => String(p).endsWith(':8080:8080')),
      'UI on port 8080',
    );
    const codec = service('codec-server');
    const codecEnv = envOf(codec);
    assert.deepEqual(codec.command, ['npm', 'run', 'codec-server']);
    assert.equal(codec.build, '.');
    assert.equal(codecEnv.MANAGED_SMTP_CODEC_PORT, '8888');
    // All interfaces inside its container (the published port must reach it), 127.0.0.1 on the host.
    assert.equal(codecEnv.MANAGED_SMTP_CODEC_HOST, '0.0.0.0');
    assert.deepEqual(codec.ports, ['127.0.0.1:8888:8888']);
    assert.match(codecEnv.MANAGED_SMTP_CODEC_AUTH_TOKEN, /^\$\{MANAGED_SMTP_CODEC_AUTH_TOKEN:\?[^}]+\}$/, 'required');
    assert.match(codecEnv.MANAGED_SMTP_CODEC_KEY_SECRET, /^\$\{MANAGED_SMTP_CODEC_KEY_SECRET:\?/);
    const endpoint = new URL(uiEnv.TEMPORAL_CODEC_ENDPOINT);
    assert.ok((codec.ports as string[]).some((p) => String(p).endsWith(`:${endpoint.port}:8888`)));
    const origins = codecEnv.MANAGED_SMTP_CODEC_CORS_ORIGINS.split(',');
    assert.ok(origins.includes('http://localhost:8080') && origins.includes('http://127.0.0.1:8080'));
    const scripts = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts;
    assert.ok(scripts['codec-server'], 'package.json has the codec-server script the service runs');
  });

  test('the worker: the interface environment, the operator key from Secret Manager, metrics, a grace period', () => {
    const w = service('worker');
    const env = envOf(w);
    assert.equal(w.build, '.');
    assert.equal(env.TEMPORAL_ADDRESS, 'temporal:7233');
    for (const name of [
      'MANAGED_SMTP_TASK_QUEUE',
      'SPARKPOST_API_URL',
      'SMTP_RELAY_HOST',
      'SMTP_RELAY_PORT',
      'MANAGED_SMTP_SENDER_DOMAIN',
    ]) {
      assert.ok(env[name], `worker sets ${name}`);
    }
    assert.ok(!('SPARKPOST_API_KEY' in env), 'the operator key is not a plain variable');
    assert.match(env.SPARKPOST_API_KEY_SECRET, /^\$\{SPARKPOST_API_KEY_SECRET:\?[^}]+\}$/, 'required');
    assert.doesNotMatch(read('deploy/compose.env.example'), /^SPARKPOST_API_KEY=/m);
    for (const name of Object.keys(env))
      assert.ok(WORKER_VARIABLES.has(name), `${name} is a variable the worker reads`);
    // Worker versioning is opt-in: both empty (unversioned) unless .env sets both.
    assert.equal(parseWorkerVersioning({}).options, undefined);
    assert.match(env.MANAGED_SMTP_WORKER_DEPLOYMENT, /^\$\{MANAGED_SMTP_WORKER_DEPLOYMENT:-\}$/);
    assert.match(env.MANAGED_SMTP_WORKER_BUILD_ID, /^\$\{MANAGED_SMTP_WORKER_BUILD_ID:-\}$/);
    // Credentials: a mounted file, read-only, where GOOGLE_APPLICATION_CREDENTIALS points.
    const creds = (w.volumes as string[])
      .map((v) => /^(\$\{[^}]+\}|[^:]+):([^:]+)(?::(ro|rw))?$/.exec(String(v)))
      .find((m) => m?.[2] === env.GOOGLE_APPLICATION_CREDENTIALS);
    assert.ok(creds, 'GOOGLE_APPLICATION_CREDENTIALS is mounted');
    assert.equal(creds[3], 'ro');
    assert.match(creds[1], /^\$\{GOOGLE_CREDENTIALS_FILE:\?/);
    const metricsPort = parseMetricsAddress(env.MANAGED_SMTP_METRICS_ADDRESS).address?.split(':').pop();
    assert.equal(metricsPort, '9464');
    assert.ok((w.expose as unknown[]).map(String).includes('9464'));
    const grace = parseShutdownGrace(env.MANAGED_SMTP_SHUTDOWN_GRACE).ms!;
    assert.ok(
      composeDurationMs(String(w.stop_grace_period)) > grace,
      'stop_grace_period > MANAGED_SMTP_SHUTDOWN_GRACE',
    );
    assert.equal(w.init, true, 'an init forwards signals and reaps');
  });

  test('no literal secret anywhere', () => {
    for (const [name, raw] of Object.entries(services)) {
      const s = dict(raw, name);
      for (const [k, v] of Object.entries(envOf(s))) {
        if (/(API_KEY|AUTH_TOKEN|PASSWORD|_PWD|_SECRET)$/.test(k)) {
          assert.match(v, /^\$\{[A-Z0-9_]+:[?-][^}]*\}$/, `${name}.${k} comes from the environment / .env`);
        }
      }
    }
  });

  test('the Prometheus example scrapes the worker on its metrics port', () => {
    const prom = dict(yaml.load(read('deploy/prometheus.yml')), 'prometheus.yml');
    const jobs = prom.scrape_configs as Dict[];
    const job = jobs.find((j) => j.job_name === 'managed-smtp-worker');
    assert.ok(job);
    assert.match(JSON.stringify(job), /"names":\["worker"\]/);
    assert.match(JSON.stringify(job), /"port":9464/);
    const p = service('prometheus');
    assert.deepEqual(p.profiles, ['monitoring'], 'optional');
  });

  test('docs/deployment.md: SSO or mTLS in front of the Web UI and the frontend', () => {
    const doc = read('docs/deployment.md');
    assert.match(doc, /## Access: SSO and mTLS/);
    assert.match(doc, /SSO/);
    assert.match(doc, /mTLS/);
    assert.doesNotMatch(doc, /auto-setup:/);
  });
});

describe('Dockerfile', () => {
  const text = read('Dockerfile');
  // Instructions with continuation lines joined and comments dropped.
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const args = Object.fromEntries(
    instructions.filter((l) => /^ARG \w+=/.test(l)).map((l) => l.slice(4).split('=') as [string, string]),
  );
  const stages: { from: string; name: string; body: string[] }[] = [];
  for (const line of instructions) {
    const from = /^FROM (\S+) AS (\S+)$/i.exec(line);
    if (from)
      stages.push({ from: from[1].replace(/\$\{(\w+)\}/g, (_m, a: string) => args[a] ?? ''), name: from[2], body: [] });
    else stages.at(-1)?.body.push(line);
  }

  test('two stages on node:20-bookworm-slim: build (npm ci + workflow bundle), runtime', () => {
    assert.deepEqual(
      stages.map((s) => [s.name, s.from]),
      [
        ['build', 'node:20-bookworm-slim'],
        ['runtime', 'node:20-bookworm-slim'],
      ],
    );
    const [build, runtime] = stages;
    assert.ok(build.body.includes('RUN npm ci --ignore-scripts'));
    assert.ok(build.body.includes('RUN npm run build'));
    assert.ok(runtime.body.some((l) => /^RUN npm ci --omit=dev --ignore-scripts\b/.test(l)));
    assert.ok(runtime.body.includes('COPY --from=build /app/dist /app/dist'));
  });

  test("the image's bundle (npm run build) encodes failures and preloads the request schemas", () => {
    // npm ci's `prepare` built it, exactly as the image's build stage does. Until session 4 this bundle lacked the
    // failure converter that scripts/bundle-workflows.ts and the tests used: failure messages went to history in clear.
    const code = readFileSync(path.join(root, 'dist', 'workflow-bundle.js'), 'utf8');
    assert.match(code, /encodeCommonAttributes: true/, 'lib/failure-converter.ts is in the bundle');
    const preload = /exports\.preloadModules = function preloadModules\(\) \{([^}]*)\}/.exec(code)?.[1] ?? '';
    assert.match(preload, /contract\/requests/, 'the request schemas are evaluated once per worker thread');
  });

  test('runtime: the bundle env, a non-root user, signals reach the worker, CMD node dist/worker/main.js', () => {
    const runtime = stages[1];
    const env = runtime.body.filter((l) => l.startsWith('ENV ')).join(' ');
    assert.match(env, /MANAGED_SMTP_WORKFLOW_BUNDLE=\/app\/dist\/workflow-bundle\.js/);
    assert.match(env, /NPM_CONFIG_SCRIPT_SHELL=\/bin\/bash/);
    assert.match(env, /NPM_CONFIG_LOGLEVEL=silent/);
    const user = runtime.body.filter((l) => l.startsWith('USER ')).at(-1);
    assert.ok(user && !/^USER (root|0)(:|$)/.test(user), 'runs as a non-root user');
    assert.match(user, /^USER [1-9]\d*:[1-9]\d*$/, 'numeric uid:gid, so runAsNonRoot can verify it');
    // compose runs it read_only with a tmpfs on /tmp: npm must not write under $HOME.
    assert.match(env, /NPM_CONFIG_CACHE=\/tmp\//);
    assert.equal(
      runtime.body.filter((l) => l.startsWith('CMD ')).at(-1),
      'CMD ["node", "--max-old-space-size=256", "dist/worker/main.js"]',
    );
    const pkg = JSON.parse(read('package.json')) as {
      scripts: Record<string, string>;
      dependencies: Record<string, string>;
    };
    // The built worker (npm ci's prepare builds dist/), with the V8 heap limit as a node option (README: sizing).
    assert.match(pkg.scripts.worker, /^node --max-old-space-size=\S+ dist\/worker\/main\.js$/);
    assert.ok(pkg.dependencies.tsx, 'tsx is a runtime dependency (npm ci --omit=dev keeps it)');
  });

  test('.dockerignore keeps node_modules, builds and secrets out of the context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    for (const p of ['**/node_modules', 'dist', '.git', '**/.env', '**/*.pem', '**/*.key']) {
      assert.ok(ignored.includes(p), p);
    }
  });

  test('runtime code imports only production dependencies (the image omits dev ones)', () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    const missing: string[] = [];
    const visit = (dir: string) => {
      for (const entry of readdirSync(path.join(root, dir))) {
        const rel = path.join(dir, entry);
        if (statSync(path.join(root, rel)).isDirectory()) visit(rel);
        else if (rel.endsWith('.ts')) {
          const source = readFileSync(path.join(root, rel), 'utf8');
          for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^'.][^']*)'/g)) {
            if (m[0].includes('import type') || m[1].startsWith('node:')) continue;
            const name = m[1].startsWith('@') ? m[1].split('/').slice(0, 2).join('/') : m[1].split('/')[0];
            if (!pkg.dependencies[name]) missing.push(`${rel}: ${m[1]}`);
          }
        }
      }
    };
    for (const dir of ['worker', 'lib', 'activities', 'vendors', 'workflows', 'client']) visit(dir);
    assert.deepEqual(missing, []);
  });
});

describe('Temporal Cloud profile example', () => {
  test('parses strictly with @temporalio/envconfig and gives mTLS and API-key connections', () => {
    const source = { path: path.join(root, 'deploy', 'temporal-cloud.toml.example') };
    const config = loadClientConfig({ configSource: source, configFileStrict: true });
    const mtls = config.profiles['cloud-mtls'];
    assert.match(mtls.address ?? '', /\.tmprl\.cloud:7233$/);
    assert.ok(mtls.tls?.clientCert && mtls.tls.clientKey, 'client certificate and key paths');
    const apiKey = loadClientConnectConfig({
      profile: 'cloud-api-key',
      configSource: source,
      overrideEnvVars: { TEMPORAL_API_KEY: 'test-only-not-a-key' },
    });
    assert.equal(apiKey.connectionOptions.tls, true, 'an API key switches TLS on');
    assert.equal(apiKey.connectionOptions.apiKey, 'test-only-not-a-key');
    assert.equal(apiKey.namespace, mtls.namespace);
  });
});

describe('worker versioning settings', () => {
  test('both variables or neither; AUTO_UPGRADE by default; one line naming the variable otherwise', () => {
    assert.deepEqual(parseWorkerVersioning({}), {});
    assert.deepEqual(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_DEPLOYMENT: ' ', MANAGED_SMTP_WORKER_BUILD_ID: '' }),
      {},
    );
    assert.deepEqual(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_DEPLOYMENT: 'managed-smtp', MANAGED_SMTP_WORKER_BUILD_ID: 'abc123' })
        .options,
      {
        version: { deploymentName: 'managed-smtp', buildId: 'abc123' },
        useWorkerVersioning: true,
        defaultVersioningBehavior: 'AUTO_UPGRADE',
      },
    );
    assert.match(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_DEPLOYMENT: 'managed-smtp' }).problem ?? '',
      /^MANAGED_SMTP_WORKER_BUILD_ID: must be set together with MANAGED_SMTP_WORKER_DEPLOYMENT$/,
    );
    assert.match(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_BUILD_ID: 'v1' }).problem ?? '',
      /^MANAGED_SMTP_WORKER_DEPLOYMENT: /,
    );
    assert.match(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_DEPLOYMENT: 'a b', MANAGED_SMTP_WORKER_BUILD_ID: 'v1' }).problem ??
        '',
      /^MANAGED_SMTP_WORKER_DEPLOYMENT: must be/,
    );
    assert.match(
      parseWorkerVersioning({ MANAGED_SMTP_WORKER_DEPLOYMENT: 'd', MANAGED_SMTP_WORKER_BUILD_ID: 'v1/../x' }).problem ??
        '',
      /^MANAGED_SMTP_WORKER_BUILD_ID: must be/,
    );
  });
});

describe('worker logging and telemetry settings', () => {
  test('log settings: defaults, case-insensitive values, one problem per bad variable', () => {
    assert.deepEqual(parseLogSettings({}), { settings: { format: 'text', level: 'INFO' }, problems: [] });
    assert.deepEqual(parseLogSettings({ MANAGED_SMTP_LOG_FORMAT: 'JSON', MANAGED_SMTP_LOG_LEVEL: 'debug' }).settings, {
      format: 'json',
      level: 'DEBUG',
    });
    const bad = parseLogSettings({ MANAGED_SMTP_LOG_FORMAT: 'xml', MANAGED_SMTP_LOG_LEVEL: 'loud' });
    assert.equal(bad.problems.length, 2);
    assert.match(bad.problems[0], /^MANAGED_SMTP_LOG_FORMAT: /);
    assert.match(bad.problems[1], /^MANAGED_SMTP_LOG_LEVEL: /);
  });

  test('the redaction guard drops secret-looking keys at any depth and makes values JSON-safe', () => {
    const err = new Error('boom');
    const clean = redactMeta({
      workflowId: 'managed-smtp/acme',
      apiKey: 'k1',
      send_key: 'k2',
      adminToken: 't',
      password: 'p',
      recipients: ['a@example.com'],
      nested: { deeper: { clientSecret: 's', ok: 1 } },
      list: [{ Authorization: 'Bearer x', n: 2n }],
      bytes: Buffer.from('secret bytes'),
      err,
    })!;
    const text = JSON.stringify(clean);
    for (const secret of ['k1', 'k2', '"t"', '"p"', 'a@example.com', '"s"', 'Bearer x', 'secret bytes']) {
      assert.ok(!text.includes(secret), `${secret} is not written`);
    }
    assert.equal(clean.workflowId, 'managed-smtp/acme');
    assert.deepEqual(clean.nested, { deeper: { ok: 1 } });
    assert.deepEqual(clean.list, [{ n: '2' }]);
    assert.equal(clean.bytes, '<12 bytes>');
    assert.equal((clean.err as Dict).message, 'boom');
    assert.deepEqual(
      (clean.redacted as string[]).sort(),
      [
        'adminToken',
        'apiKey',
        'list[0].Authorization',
        'nested.deeper.clientSecret',
        'password',
        'recipients',
        'send_key',
      ].sort(),
    );
    const circular: Dict = { a: 1 };
    circular.self = circular;
    assert.equal(redactMeta(circular)!.self, '[circular]');
  });

  test('JSON lines: time, level, severity, message first; meta cannot overwrite them', () => {
    const line = jsonLogLine({
      level: 'WARN',
      message: 'hello',
      timeMs: 0,
      meta: { message: 'forged', token: 'x', a: 1 },
    });
    const parsed = JSON.parse(line) as Dict;
    assert.deepEqual(Object.keys(parsed).slice(0, 4), ['time', 'level', 'severity', 'message']);
    assert.equal(parsed.time, '1970-01-01T00:00:00.000Z');
    assert.equal(parsed.severity, 'WARNING');
    assert.equal(parsed.message, 'hello');
    assert.equal(parsed.a, 1);
    assert.ok(!line.includes('"x"'));
  });

  test('loggers route by format and level', () => {
    const out: string[] = [];
    const errOut: string[] = [];
    const sinks = { stdout: (l: string) => out.push(l), stderr: (l: string) => errOut.push(l) };
    const text = createWorkerLogger({ format: 'text', level: 'INFO' }, sinks);
    text.debug('hidden');
    text.info('polling', { taskQueue: 'q' });
    text.warn('careful');
    assert.deepEqual(out, ['worker: polling {"taskQueue":"q"}']);
    assert.deepEqual(errOut, ['worker: warning: careful']);
    out.length = errOut.length = 0;
    const json = createRuntimeLogger({ format: 'json', level: 'WARN' }, sinks);
    json.info('hidden');
    json.error('bad', { sendKey: 'k', sdkComponent: 'worker' });
    assert.equal(out.length, 1);
    assert.equal(errOut.length, 0);
    const parsed = JSON.parse(out[0]) as Dict;
    assert.equal(parsed.level, 'ERROR');
    assert.equal(parsed.sdkComponent, 'worker');
    assert.ok(!out[0].includes('"k"'));
  });

  test('metrics address and shutdown grace validation', () => {
    assert.deepEqual(parseMetricsAddress(undefined), {});
    assert.equal(parseMetricsAddress('0.0.0.0:9464').address, '0.0.0.0:9464');
    assert.equal(parseMetricsAddress('[::]:9464').address, '[::]:9464');
    for (const bad of ['localhost:9464', '0.0.0.0', '1.2.3.256:80', '0.0.0.0:0', '0.0.0.0:70000', ':9464', '[x]:1']) {
      assert.match(parseMetricsAddress(bad).problem ?? '', /^MANAGED_SMTP_METRICS_ADDRESS: /, bad);
    }
    assert.equal(parseShutdownGrace(undefined).ms, 30_000);
    assert.equal(parseShutdownGrace('500ms').ms, 500);
    assert.equal(parseShutdownGrace('2m').ms, 120_000);
    assert.equal(parseShutdownGrace('0s').ms, 0);
    for (const bad of ['30', 'forever', '-1s', '2d', '61m']) {
      assert.match(parseShutdownGrace(bad).problem ?? '', /^MANAGED_SMTP_SHUTDOWN_GRACE: /, bad);
    }
  });
});

/** A child process (leader of its own process group) with its output collected. */
interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** The process itself exited (its descendants may live on). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Output complete: every process holding the pipes is gone. */
  closed: Promise<void>;
  /** SIGKILLs whatever is left of the process group (a worker orphaned by a shell, for one). */
  killGroup: () => void;
}

function run(command: string, args: string[], env: Record<string, string>): Child {
  // detached: its own process group, so cleanup can reach grandchildren; signals in the test go to the pid only.
  const proc = spawn(command, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  const killGroup = () => {
    try {
      if (proc.pid) process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // the group is already gone
    }
  };
  return { proc, stdout: () => out, stderr: () => err, exited, closed, killGroup };
}

/** Waits for the child's exit and its complete output; kills its group if anything outlives the deadline. */
async function finished(child: Child, ms: number, what: string) {
  try {
    const result = await within(ms, what, child.exited);
    await within(3000, `${what}: output closed`, child.closed);
    return result;
  } finally {
    child.killGroup();
  }
}

const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000}s`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined> | T | undefined,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000}s`);
    await new Promise((r) => setTimeout(r, Math.min(100 * (i + 1), 500)));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

describe('worker process', { timeout: 120_000 }, () => {
  let tmp: string;
  let baseEnv: Record<string, string>;

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'managed-smtp-deploy-'));
    mkdirSync(path.join(tmp, 'home'));
    // A clean environment: nothing from the developer's shell (or ~/.config/temporalio) leaks in.
    baseEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: path.join(tmp, 'home') };
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('an invalid environment: exit 2 before any connection, one line per problem, each naming its variable', async () => {
    const toml = path.join(tmp, 'empty.toml');
    writeFileSync(toml, '[profile.other]\naddress = "127.0.0.1:1"\n');
    const child = run(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
      ...baseEnv,
      TEMPORAL_ADDRESS: '127.0.0.1:1',
      TEMPORAL_CONFIG_FILE: toml,
      TEMPORAL_PROFILE: 'missing',
      SMTP_RELAY_PORT: '99999',
      MANAGED_SMTP_METRICS_ADDRESS: 'localhost:9464',
      MANAGED_SMTP_SHUTDOWN_GRACE: 'forever',
      MANAGED_SMTP_LOG_LEVEL: 'loud',
      MANAGED_SMTP_WORKFLOW_BUNDLE: path.join(tmp, 'no-such-bundle.js'),
      SPARKPOST_API_KEY_SECRET: 'not-a-version-name',
      MANAGED_SMTP_CODEC_KEYS: 'no-colon-here',
    });
    const { code } = await finished(child, 20_000, 'worker exit');
    assert.equal(code, 2, child.stderr());
    assert.equal(child.stdout(), '');
    const problems = lines(child.stderr());
    const variables = [
      'MANAGED_SMTP_CODEC_KEYS',
      'MANAGED_SMTP_LOG_LEVEL',
      'MANAGED_SMTP_METRICS_ADDRESS',
      'MANAGED_SMTP_SHUTDOWN_GRACE',
      'MANAGED_SMTP_WORKFLOW_BUNDLE',
      'SPARKPOST_API_KEY_SECRET',
      'SMTP_RELAY_PORT',
      'TEMPORAL_PROFILE',
    ];
    assert.equal(problems.length, variables.length, child.stderr());
    for (const line of problems) assert.match(line, /^worker: invalid environment: [A-Z_/]+: \S/);
    for (const v of variables) {
      assert.equal(problems.filter((l) => l.includes(`: ${v}`)).length, 1, `one line names ${v}`);
    }
  });

  test('in JSON mode the problems are JSON lines too', async () => {
    const child = run(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
      ...baseEnv,
      MANAGED_SMTP_LOG_FORMAT: 'json',
      SMTP_RELAY_PORT: 'abc',
    });
    const { code } = await finished(child, 20_000, 'worker exit');
    assert.equal(code, 2, child.stderr());
    const out = lines(child.stdout()).map((l) => JSON.parse(l) as Dict);
    assert.ok(out.every((o) => o.level === 'ERROR'));
    const named = out.map((o) => /^invalid environment: (\w+): \S/.exec(String(o.message))?.[1]).sort();
    assert.deepEqual(named, ['SMTP_RELAY_PORT', 'SPARKPOST_API_KEY']);
  });

  describe('from the prebuilt bundle against a dev server', () => {
    let env: TestWorkflowEnvironment;
    let stack: EmulatorStack;
    let bundle: string;
    let bundleBytes = 0;

    before(async () => {
      bundle = path.join(tmp, 'dist', 'workflow-bundle.js');
      const bundler = run(
        process.execPath,
        ['--import', 'tsx', 'scripts/bundle-workflows.ts', '--out', bundle],
        baseEnv,
      );
      [env, stack] = await Promise.all([startTemporal(), EmulatorStack.start()]);
      const { code } = await finished(bundler, 60_000, 'bundle-workflows');
      assert.equal(code, 0, bundler.stderr());
      assert.match(bundler.stdout(), /^bundle-workflows: wrote /);
      bundleBytes = statSync(bundle).size;
    });
    after(async () => {
      await stack?.close();
      await env?.teardown();
    });

    test('the built bundle replays the checked-in histories (what a deploy of this image must not break)', async () => {
      const dir = path.join(root, 'test', 'histories');
      const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
      assert.ok(files.length > 0, 'test/histories holds captured histories');
      const histories = files.map((f) => ({
        workflowId: workflowIdFor(path.basename(f, '.json')),
        history: temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(path.join(dir, f), 'utf8'))),
      }));
      let replayed = 0;
      for await (const r of Worker.runReplayHistories({ workflowBundle: { codePath: bundle } }, histories)) {
        assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
        replayed++;
      }
      assert.equal(replayed, files.length);
    });

    test('a missing operator key secret stops start-up with exit 1, naming the version', async () => {
      const version = 'projects/sg-ops/secrets/sparkpost-operator-key/versions/7';
      const workerEnv = stack.workerEnv('unused');
      delete (workerEnv as Partial<typeof workerEnv>).SPARKPOST_API_KEY;
      const child = run(process.execPath, ['--import', 'tsx', 'worker/main.ts'], {
        ...baseEnv,
        ...workerEnv,
        TEMPORAL_ADDRESS: env.address,
        SPARKPOST_API_KEY_SECRET: version,
      });
      const { code } = await finished(child, 20_000, 'worker exit');
      assert.equal(code, 1, child.stderr());
      assert.match(
        child.stderr(),
        new RegExp(`^worker: Secret Manager AccessSecretVersion ${version}: NOT_FOUND`, 'm'),
      );
    });

    test('npm run worker: JSON logs, metrics, key from Secret Manager, an enable, SIGTERM drains and exits 0', async (t) => {
      assert.ok(bundleBytes > 10_000, 'the bundle has content');
      const taskQueue = uniqueTaskQueue('deploy');
      const metricsPort = await freePort();
      const toml = path.join(tmp, 'temporal.toml');
      writeFileSync(toml, `[profile.test]\naddress = "${env.address}"\nnamespace = "default"\n`);
      const keyVersion = stack.secretManager.seed('projects/sg-ops/secrets/sparkpost-operator-key', stack.operatorKey);
      const codecKeys = generateCodecKey('deploy-1');
      const codecVersion = stack.secretManager.seed('projects/sg-ops/secrets/managed-smtp-codec-keys', codecKeys);
      const temporalClient = new Client({
        connection: env.connection,
        namespace: 'default',
        dataConverter: dataConverterFor(new AesGcmCodec(parseCodecKeys(codecKeys, 'test'))),
      });
      const adminToken = `sgp_${'d'.repeat(40)}`;
      const instance: EmulatedInstance = stack.addInstance('deploy-demo', { adminToken });
      const workerEnv: Record<string, string> = { ...stack.workerEnv(taskQueue) };
      delete workerEnv.SPARKPOST_API_KEY;
      const graceMs = 10_000;

      const child = run('npm', ['run', 'worker'], {
        ...baseEnv,
        ...workerEnv,
        // Exactly what the image sets (Dockerfile), so this is the container's start and stop path.
        NPM_CONFIG_SCRIPT_SHELL: '/bin/bash',
        NPM_CONFIG_LOGLEVEL: 'silent',
        MANAGED_SMTP_WORKFLOW_BUNDLE: bundle,
        TEMPORAL_CONFIG_FILE: toml,
        TEMPORAL_PROFILE: 'test',
        SPARKPOST_API_KEY_SECRET: keyVersion,
        MANAGED_SMTP_CODEC_KEY_SECRET: codecVersion,
        MANAGED_SMTP_LOG_FORMAT: 'json',
        MANAGED_SMTP_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
        MANAGED_SMTP_SHUTDOWN_GRACE: `${graceMs / 1000}s`,
      });
      const startedAt = Date.now();
      try {
        await until('worker polling', 45_000, () => {
          if (child.proc.exitCode !== null) throw new Error(`worker exited early: ${child.stderr()}${child.stdout()}`);
          return /"message":"polling task queue /.test(child.stdout()) ? true : undefined;
        });

        t.diagnostic(
          `worker polling ${Date.now() - startedAt} ms after spawn (bundle ${Math.round(bundleBytes / 1024)} KiB)`,
        );
        const client = new ManagedSmtpClient(temporalClient, taskQueue);
        const spec: EnableSpec = {
          sourcegraphUrl: instance.sourcegraphUrl,
          gcpProject: instance.gcpProject,
          adminTokenSecret: instance.adminTokenSecret,
          force: false,
        };
        const status = await client.waitFor(await client.enable(instance.name, spec), {
          timeoutMs: 45_000,
          pollMs: 200,
        });
        assert.equal(status.state, 'active', status.error ?? '');
        t.diagnostic(`enable went active ${Date.now() - startedAt} ms after spawn`);

        const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
        assert.equal(res.status, 200);
        assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
        const metrics = await res.text();
        assert.match(metrics, /^# TYPE temporal_\w+ (counter|gauge|histogram)$/m);
        for (const name of ['temporal_worker_task_slots_available', 'temporal_activity_execution_latency']) {
          assert.match(metrics, new RegExp(`^${name}\\w*\\{[^}]*task_queue="${taskQueue}"`, 'm'), name);
        }

        // Slow SparkPost down so an activity is running when SIGTERM arrives; the worker must let it finish.
        stack.sparkpost.faults.set({ latencyMs: 2500 });
        const second = stack.addInstance('deploy-slow');
        await client.enable(second.name, {
          ...spec,
          sourcegraphUrl: second.sourcegraphUrl,
          gcpProject: second.gcpProject,
          adminTokenSecret: second.adminTokenSecret,
        });
        const handle = temporalClient.workflow.getHandle(workflowIdFor(second.name));
        const running = await until('an activity in flight', 30_000, async () => {
          const pending = (await handle.describe()).raw.pendingActivities ?? [];
          return pending.find(
            (a) => a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
          );
        });
        const stopAt = Date.now();
        child.proc.kill('SIGTERM');
        const { code, signal } = await finished(child, graceMs + 5_000, 'exit after SIGTERM');
        const stopMs = Date.now() - stopAt;
        assert.equal(code, 0, `exit code (signal ${signal}); stderr: ${child.stderr()}`);
        t.diagnostic(`SIGTERM with ${running.activityType?.name} in flight: exit ${code} after ${stopMs} ms`);
        assert.ok(stopMs < graceMs, `stopped in ${stopMs} ms, within the ${graceMs} ms grace`);

        // The activity that was running completed (it was not cut off and left to time out).
        const history = await handle.fetchHistory();
        const scheduled = history.events?.find(
          (e) => e.activityTaskScheduledEventAttributes?.activityId === running.activityId,
        );
        assert.ok(scheduled, 'the running activity was scheduled');
        const completed = history.events?.find(
          (e) => String(e.activityTaskCompletedEventAttributes?.scheduledEventId ?? '') === String(scheduled.eventId),
        );
        assert.ok(completed, `activity ${running.activityType?.name} completed during the drain`);
        // Payload encryption is on: what the server stores is ciphertext.
        const started = history.events?.[0].workflowExecutionStartedEventAttributes;
        const encoding = started?.input?.payloads?.[0].metadata?.encoding;
        assert.equal(Buffer.from(encoding ?? []).toString(), ENCODING_ENCRYPTED);
      } finally {
        stack.sparkpost.faults.reset();
        child.killGroup();
      }

      // Every stdout line is one JSON object with the fixed fields; the worker's own lines are tagged.
      const out = lines(child.stdout());
      assert.ok(out.length >= 3);
      const parsed = out.map((l) => {
        const o = JSON.parse(l) as Dict;
        assert.match(String(o.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
        assert.ok(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'].includes(String(o.level)), l);
        assert.equal(typeof o.message, 'string', l);
        return o;
      });
      const own = parsed.filter((o) => o.logger === 'managed-smtp-worker').map((o) => String(o.message));
      assert.ok(own.some((m) => m.startsWith(`read the SparkPost operator key from ${keyVersion}`)));
      assert.ok(own.some((m) => m.startsWith('serving Prometheus metrics on ')));
      assert.ok(own.some((m) => m.startsWith('payload encryption on: key ids deploy-1')));
      assert.equal(own.at(-1), 'stopped');
      assert.ok(
        parsed.some((o) => o.sdkComponent === 'worker'),
        'SDK lines go through the same logger',
      );

      // No secret and no recipient address in anything the process wrote.
      const sendKey = stack.secretManager
        .getSecret(`projects/${instance.gcpProject}/secrets/managed-smtp-send-key`)
        ?.versions.at(-1)?.data;
      assert.ok(sendKey, 'the send key was stored');
      const everything = child.stdout() + child.stderr();
      for (const [what, secret] of [
        ['operator key', stack.operatorKey],
        ['admin token', adminToken],
        ['send key', sendKey],
        ['test recipient', workerEnv.MANAGED_SMTP_TEST_RECIPIENT],
        ['codec key', codecKeys.split(':')[1]],
      ]) {
        assert.ok(!everything.includes(secret), `the ${what} is not in the output`);
      }
    });
  });
});
