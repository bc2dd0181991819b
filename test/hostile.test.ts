/**
 * Hostile Sourcegraph instances (emulators/sourcegraph.ts HostileMode): a never-ending body, a slow drip, terminal
 * escape sequences, a megabyte error message, a redirect. The client cuts bodies at 4 MiB and bounds the whole
 * exchange; the worker keeps serving other instances, stays under 400 MiB RSS, and no escape byte reaches a history,
 * the status or smtpctl's output.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { workflowBundle } from './helpers/temporal';
import { World, specFor } from './helpers/world';
import { WorkerProcess } from './helpers/chaos';
import { ManagedSmtpClient } from '../client';
import type { InstanceStatus } from '../lib/types';
import type { HostileMode } from '../emulators/sourcegraph';
import { isVendorError } from '../lib/errors';
import { workflowIdFor } from '../lib/instance';
import { MAX_BODY_BYTES, SourcegraphClient } from '../vendors/sourcegraph';

const MiB = 1024 * 1024;

/**
 * Every string and every payload's data (as UTF-8) of a history, joined: what an operator's tools show. The raw
 * protobuf bytes are no use here (lengths and timestamps may hold any byte, 0x1b included).
 */
function historyText(history: temporal.api.history.v1.IHistory): string {
  const out: string[] = [];
  const walk = (v: unknown, depth: number): void => {
    if (depth > 40 || v === null || v === undefined) return;
    if (typeof v === 'string') out.push(v);
    else if (v instanceof Uint8Array) out.push(Buffer.from(v).toString('utf8'));
    else if (Array.isArray(v)) v.forEach((x) => walk(x, depth + 1));
    else if (typeof v === 'object') for (const x of Object.values(v)) walk(x, depth + 1);
  };
  walk(history, 0);
  return out.join('\n');
}
const ESC = '\u001b';

/** A field of /proc/<pid>/status in KiB (VmRSS now, VmHWM the peak). */
function vmKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `${field} of ${pid}`);
  return Number(m[1]);
}

describe('hostile Sourcegraph instances', { timeout: 300_000 }, () => {
  let world: World;
  let listener: http.Server;
  let listenerUrl = '';
  const received: string[] = [];

  before(async () => {
    world = await World.start();
    listener = http.createServer((req, res) => {
      received.push(`${req.method} ${req.url} auth=${req.headers.authorization ? 'yes' : 'no'}`);
      res.end('{}');
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    listenerUrl = `http://127.0.0.1:${(listener.address() as AddressInfo).port}/steal`;
  });
  after(async () => {
    listener?.close();
    await world?.close();
  });

  function hostileSite(name: string, hostile: HostileMode) {
    const token = `sgp_${randomBytes(20).toString('hex')}`;
    const i = world.stack.addInstance(name, { adminToken: token, hostile });
    return { i, client: new SourcegraphClient({ url: i.sourcegraphUrl, token, timeoutMs: 3000 }) };
  }

  /** Peak RSS while `run` runs, sampled every 20 ms. */
  async function peakRss<T>(run: () => Promise<T>): Promise<{ result: PromiseSettledResult<T>; peak: number }> {
    let peak = process.memoryUsage().rss;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const [result] = await Promise.allSettled([run()]);
      return { result, peak: Math.max(peak, process.memoryUsage().rss) };
    } finally {
      clearInterval(timer);
    }
  }

  test('a 300 MiB body is cut at 4 MiB and refused, without the memory to hold it', async (t) => {
    const { client } = hostileSite('client-huge', { kind: 'huge-body', bytes: 300 * MiB });
    const before = process.memoryUsage().rss;
    const { result, peak } = await peakRss(() => client.getSiteConfig());
    assert.equal(result.status, 'rejected');
    const err = (result as PromiseRejectedResult).reason;
    assert.ok(isVendorError(err, 'invalid', 'sourcegraph'), String(err));
    assert.match(err.message, new RegExp(`larger than ${MAX_BODY_BYTES} bytes`));
    t.diagnostic(`RSS ${Math.round(before / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB`);
    assert.ok(peak - before < 100 * MiB, `grew ${Math.round((peak - before) / MiB)} MiB`);
  });

  test('a slow drip is cut off by the deadline of the whole exchange', async () => {
    const { client } = hostileSite('client-drip', { kind: 'slow-drip', intervalMs: 200 });
    await assert.rejects(
      client.getSiteConfig(),
      (err) => isVendorError(err, 'unavailable') && /no response within 3000 ms/.test(err.message),
    );
  });

  test('a redirect is never followed (the token stays home)', async () => {
    const { client } = hostileSite('client-redirect', { kind: 'redirect', location: listenerUrl });
    await assert.rejects(
      client.getSiteConfig(),
      (err) => isVendorError(err, 'invalid') && /HTTP 307/.test(err.message),
    );
    assert.deepEqual(received, []);
  });

  test('a megabyte of escape sequences comes back as one bounded line without control characters', async () => {
    const { client } = hostileSite('client-shout', { kind: 'huge-message' });
    await assert.rejects(client.getSiteConfig(), (err: Error) => {
      assert.ok(err.message.length < 500, `${err.message.length} characters`);
      assert.ok(!/[\u0000-\u001f\u007f-\u009f\u202e]/.test(err.message), JSON.stringify(err.message)); // eslint-disable-line no-control-regex
      return true;
    });
  });

  test('through a worker process: hostile instances fail bounded, the others provision, RSS stays under 400 MiB', async (t) => {
    // A real `npm run worker` process, so its peak RSS (VmHWM) is the worker's alone.
    const taskQueue = `hostile-${randomBytes(4).toString('hex')}`;
    // With a prebuilt workflow bundle, as the container image runs it (bundling at start is not what is measured).
    const bundlePath = path.join(mkdtempSync(path.join(os.tmpdir(), 'hostile-')), 'workflows.js');
    writeFileSync(bundlePath, (await workflowBundle()).code);
    const worker = await WorkerProcess.start({
      name: 'hostile-worker',
      env: {
        ...world.stack.workerEnv(taskQueue),
        TEMPORAL_ADDRESS: world.env.address,
        TEMPORAL_NAMESPACE: 'default',
        MANAGED_SMTP_WORKFLOW_BUNDLE: bundlePath,
      },
    });
    const client = new ManagedSmtpClient(world.env.client, taskQueue);
    process.env.MANAGED_SMTP_TASK_QUEUE = taskQueue;
    let statuses: InstanceStatus[];
    let peak: number;
    const calm = world.stack.addInstance('calm-one');
    const escapes = world.stack.addInstance('escapes', { hostile: { kind: 'escape-sequences' } });
    const failing = [
      world.stack.addInstance('huge-one', { hostile: { kind: 'huge-body', bytes: 300 * MiB } }),
      world.stack.addInstance('huge-two', { hostile: { kind: 'huge-body', bytes: 300 * MiB } }),
      world.stack.addInstance('shout-one', { hostile: { kind: 'huge-message' } }),
      world.stack.addInstance('bounce-one', { hostile: { kind: 'redirect', location: listenerUrl } }),
    ];
    const all = [calm, escapes, ...failing];
    try {
      const startRss = vmKiB(worker.pid!, 'VmRSS');
      // Reset the peak: bundling the workflow code at start is not what is measured here.
      writeFileSync(`/proc/${worker.pid}/clear_refs`, '5');
      const handles = await Promise.all(all.map((i) => client.enable(i.name, specFor(i))));
      statuses = await Promise.all(handles.map((h) => client.waitFor(h, { timeoutMs: 120_000 })));
      peak = vmKiB(worker.pid!, 'VmHWM') * 1024;
      t.diagnostic(`worker RSS ${Math.round(startRss / 1024)} MiB at start, peak ${Math.round(peak / MiB)} MiB`);
    } catch (err) {
      await worker.stop('SIGTERM');
      throw err;
    }
    t.after(() => worker.stop('SIGTERM'));
    assert.ok(peak < 400 * MiB, `peak RSS ${Math.round(peak / MiB)} MiB`);
    const [calmStatus, escapesStatus, ...failed] = statuses;
    assert.equal(calmStatus.state, 'active', calmStatus.error ?? '');
    assert.equal(escapesStatus.state, 'active', escapesStatus.error ?? '');
    const message = escapesStatus.lastTestEmail?.message ?? '';
    assert.match(message, /^Sent test email/);
    assert.ok(message.length <= 2000, `${message.length} characters`);
    for (const s of failed) {
      assert.equal(s.state, 'failed', s.instance);
      assert.ok((s.error ?? '').length < 2500, `${s.instance}: ${(s.error ?? '').length} characters`);
    }
    assert.match(failed[0].error ?? '', /larger than/);
    assert.match(failed[3].error ?? '', /HTTP 307/);
    assert.deepEqual(received, [], 'the redirect target got nothing');

    // No escape byte (raw or JSON-escaped) in any history, status or smtpctl output.
    for (const i of all) {
      const history = await world.env.client.workflow.getHandle(workflowIdFor(i.name)).fetchHistory();
      const text = historyText(history);
      assert.ok(text.length > 1000, 'the walk saw the payloads');
      assert.ok(!text.includes(ESC) && !text.includes('\\u001b'), `history of ${i.name}`);
      const status = JSON.stringify(await client.status(i.name));
      assert.ok(!status.includes('\\u001b') && !status.includes(ESC), `status of ${i.name}`);
      for (const args of [['status', i.name], ['status', i.name, '--json'], ['list']]) {
        const r = await world.cli(...args);
        assert.ok(!`${r.out}${r.err}`.includes(ESC) && !r.out.includes('\\u001b'), `smtpctl ${args.join(' ')}`);
      }
    }
  });
});
