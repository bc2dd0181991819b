/**
 * Tests that run `bin/smtpctl.js` or `npm run worker` run the built JavaScript in dist/ (as operators do). ensureBuilt()
 * rebuilds it first when a source file is newer than the build, so such a test never runs stale code.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const SKIP = new Set(['node_modules', 'dist', '.cache', '.git', 'test', 'scripts', 'docs', 'deploy']);

function newestSource(dir: string, depth = 0): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || (depth === 0 && SKIP.has(entry.name))) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(full, depth + 1));
    else if (depth > 0 || entry.name === 'tsconfig.json') newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` when dist/ is missing or older than a source file. */
export function ensureBuilt(): void {
  const marker = path.join(root, 'dist', 'workflow-bundle.js');
  if (existsSync(marker) && statSync(marker).mtimeMs >= newestSource(root)) return;
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts', 'build.ts')], {
    cwd: root,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`);
}
