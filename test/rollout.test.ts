/**
 * Fleet rollout: `smtpctl enable-fleet` enables many instances with bounded concurrency, disables the flagged ones,
 * changes nothing on a second run, and refuses a bad file before sending anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { World, type Lane } from './helpers/world';

describe('enable-fleet', { timeout: 240_000 }, () => {
  let world: World;
  let lane: Lane;
  const dir = mkdtempSync(path.join(tmpdir(), 'fleet-'));

  before(async () => ({ world, lane } = await World.startWithLane()));
  after(() => world?.close());

  const cli = (...argv: string[]) => world.cli(...argv);

  function fleetFile(name: string, instances: object[]): string {
    const file = path.join(dir, name);
    writeFileSync(file, stringify({ instances }));
    return file;
  }

  const names = Array.from({ length: 8 }, (_, n) => `fleet${n}`);

  test('enables every instance, leaves a customer-owned one alone, and a second run changes nothing', async () => {
    const entries = names.map((name) => {
      const i = world.stack.addInstance(name);
      return { name, sourcegraphUrl: i.sourcegraphUrl, gcpProject: i.gcpProject };
    });
    const own = world.stack.addInstance('fleet-own', {
      config:
        '{"email.address":"a@own.example.com","email.smtp":{"host":"smtp.own.example.com","port":25,"authentication":"none"}}',
    });
    const neverEnabled = world.stack.addInstance('fleet-off');
    entries.push({ name: own.name, sourcegraphUrl: own.sourcegraphUrl, gcpProject: own.gcpProject });
    entries.push({
      name: neverEnabled.name,
      sourcegraphUrl: neverEnabled.sourcegraphUrl,
      gcpProject: neverEnabled.gcpProject,
      managedSMTP: { disabled: true },
    } as never);
    const file = fleetFile('fleet.yaml', entries);

    const first = await cli('--json', 'enable-fleet', file, '--concurrency', '4', '--wait');
    const rows = JSON.parse(first.out) as Array<{
      instance: string;
      action: string;
      state: string;
      error: string | null;
    }>;
    const by = new Map(rows.map((r) => [r.instance, r]));
    for (const n of names) {
      assert.equal(by.get(n)?.action, 'enable');
      assert.equal(by.get(n)?.state, 'active', by.get(n)?.error ?? '');
      assert.equal(world.liveSubaccounts(n).length, 1);
    }
    assert.equal(by.get('fleet-own')?.state, 'customer-managed');
    assert.match(by.get('fleet-own')?.error ?? '', /own SMTP settings/);
    assert.equal(by.get('fleet-off')?.action, 'unchanged', 'a disabled instance without a workflow needs nothing');
    assert.equal(first.code, 1, 'the customer-owned instance did not become active');

    const before = world.stack.sparkpost.mintedKeys.length;
    const second = await cli('--json', 'enable-fleet', file, '--wait');
    const again = JSON.parse(second.out) as Array<{ action: string }>;
    assert.ok(
      again.every((r) => r.action === 'unchanged'),
      JSON.stringify(again),
    );
    assert.equal(world.stack.sparkpost.mintedKeys.length, before, 'nothing minted on a re-run');
  });

  test('an instance flagged managedSMTP.disabled gets the disable request', async () => {
    const i = world.stack.addInstanceRef('fleet0');
    const file = fleetFile('off.yaml', [
      { name: 'fleet0', sourcegraphUrl: i.sourcegraphUrl, gcpProject: i.gcpProject, managedSMTP: { disabled: true } },
    ]);
    const r = await cli('enable-fleet', file, '--wait');
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /fleet0\s+disable\s+disabled/);
    assert.equal((await lane.client.status('fleet0')).state, 'disabled');
  });

  test('a bad fleet file exits 2 naming the entry, and sends nothing', async () => {
    const bad = fleetFile('bad.yaml', [
      { name: 'ok-one', sourcegraphUrl: 'https://a.sourcegraph.com', gcpProject: 'proj-123' },
      { name: 'Bad_Name', sourcegraphUrl: 'https://b.sourcegraph.com', gcpProject: 'proj-123' },
    ]);
    const r = await cli('enable-fleet', bad);
    assert.equal(r.code, 2);
    assert.match(r.err, /instances\[1\]\.name: must be an instance slug/);
    await assert.rejects(lane.client.status('ok-one'), /no managed SMTP workflow/);
    const dup = fleetFile('dup.yaml', [
      { name: 'dup', sourcegraphUrl: 'https://a.sourcegraph.com', gcpProject: 'proj-123' },
      { name: 'dup', sourcegraphUrl: 'https://a.sourcegraph.com', gcpProject: 'proj-123' },
    ]);
    assert.match((await cli('enable-fleet', dup)).err, /dup is listed twice/);
    writeFileSync(path.join(dir, 'broken.yaml'), 'instances: [\n');
    assert.equal((await cli('enable-fleet', path.join(dir, 'broken.yaml'))).code, 2);
    assert.equal((await cli('enable-fleet', path.join(dir, 'missing.yaml'))).code, 2);
  });

  test('an entry the enable request schema refuses exits 2 before any instance is sent', async () => {
    // The file validates first (README), with the same request schema the client and the workflow apply: an entry
    // that would only fail at its own enable must not leave the entries before it enabled and the rest not.
    const quoted = fleetFile('quoted.yaml', [
      { name: 'fine-one', sourcegraphUrl: 'https://a.sourcegraph.com', gcpProject: 'proj-123' },
      {
        name: 'quoted-two',
        sourcegraphUrl: 'https://b.sourcegraph.com',
        gcpProject: 'proj-123',
        senderName: 'Acme "Support"',
      },
    ]);
    const r = await cli('enable-fleet', quoted);
    assert.equal(r.code, 2, r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.match(r.err, /instances\[1\]\.senderName: must be plain text/);
    await assert.rejects(lane.client.status('fine-one'), /no managed SMTP workflow/);
    await assert.rejects(lane.client.status('quoted-two'), /no managed SMTP workflow/);
  });
});
