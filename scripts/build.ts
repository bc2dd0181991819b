/**
 * `npm run build` (and `prepare`, so `npm ci` runs it): compiles the TypeScript to CommonJS in `dist/` and bundles
 * the workflow code into `dist/workflow-bundle.js`, so `smtpctl` and `npm run worker` start without tsx or webpack.
 *
 * What is compiled is not a hand-kept list: every folder named in tsconfig.json's `include` (except `test/` and
 * `scripts/`, which run through tsx), plus whatever those files import by relative path (a new folder such as
 * `contract/` is picked up as soon as something imports it). Files are transpiled one by one with esbuild (type
 * checking stays `npm run typecheck`); other files in those folders (e.g. the GraphQL schema) are copied beside them.
 * The result is written to a fresh directory and swapped in, so a failed build never leaves a half-written `dist/`.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';
import { parse as parseJsonc } from 'jsonc-parser';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/bundle';

const root = path.resolve(__dirname, '..');
/** Folders of tsconfig's `include` that are not part of what runs in production. */
const NOT_BUILT = new Set(['test', 'scripts']);
/** Never walked: dependencies, caches, output. */
const SKIPPED_DIRS = new Set(['node_modules', '.cache', 'dist', '.git']);
const IMPORT_SPECIFIER =
  /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"](\.{1,2}\/[^'"]*|\.{1,2})['"]/gm;

/** Folders to build, from tsconfig.json's `include`. */
function includedFolders(): string[] {
  const tsconfig = parseJsonc(readFileSync(path.join(root, 'tsconfig.json'), 'utf8')) as { include?: string[] };
  const include = tsconfig.include ?? [];
  if (include.length === 0) throw new Error('tsconfig.json has no "include": nothing to build');
  // "client" or "client/**/*": the first path segment names the folder.
  return [...new Set(include.map((p) => p.replace(/^\.\//, '').split('/')[0]))].filter((f) => !NOT_BUILT.has(f));
}

function walk(dir: string, out: { sources: string[]; assets: string[] }): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name) && !entry.name.startsWith('.')) walk(full, out);
    } else if (entry.name.endsWith('.d.ts')) {
      continue;
    } else if (entry.name.endsWith('.ts')) {
      out.sources.push(full);
    } else if (!entry.name.startsWith('.')) {
      out.assets.push(full);
    }
  }
}

/** The source file a relative specifier names, as Node16 resolution of the compiled output would find it. */
function resolveRelative(from: string, specifier: string): string | null {
  const base = path.resolve(path.dirname(from), specifier);
  // `import('./x.js')` (a lazy import in Node16 style) names the source ./x.ts.
  const ts = base.endsWith('.js') ? `${base.slice(0, -3)}.ts` : null;
  for (const candidate of [...(ts ? [ts] : []), base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (candidate.endsWith('.d.ts')) continue;
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return null;
}

/** Adds every file reachable by relative imports; throws on an import that names no file. */
function importClosure(start: string[]): string[] {
  const seen = new Set(start);
  const queue = [...start];
  for (let i = 0; i < queue.length; i++) {
    const file = queue[i];
    if (!file.endsWith('.ts')) continue;
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT_SPECIFIER)) {
      const target = resolveRelative(file, m[1]);
      if (!target) {
        throw new Error(`${path.relative(root, file)} imports ${m[1]}, which names no file`);
      }
      if (path.relative(root, target).startsWith('..') || target.includes(`${path.sep}node_modules${path.sep}`)) {
        continue;
      }
      if (!seen.has(target)) {
        seen.add(target);
        queue.push(target);
      }
    }
  }
  return [...seen];
}

async function main(): Promise<void> {
  const started = Date.now();
  const found = { sources: [] as string[], assets: [] as string[] };
  for (const folder of includedFolders()) walk(path.join(root, folder), found);
  const files = importClosure(found.sources);
  const sources = files.filter((f) => f.endsWith('.ts'));
  const assets = [...new Set([...found.assets, ...files.filter((f) => !f.endsWith('.ts'))])];

  const next = path.join(root, '.dist-next');
  const old = path.join(root, '.dist-old');
  rmSync(next, { recursive: true, force: true });
  rmSync(old, { recursive: true, force: true });
  try {
    await build({
      entryPoints: sources,
      outdir: next,
      outbase: root,
      bundle: false,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      sourcemap: 'linked',
      logLevel: 'warning',
    });
    for (const asset of assets) {
      const target = path.join(next, path.relative(root, asset));
      mkdirSync(path.dirname(target), { recursive: true });
      copyFileSync(asset, target);
    }
    // The worker loads this instead of running webpack at every start (worker/main.ts).
    const { code } = await bundleWorkflowCode(workflowBundleOptions());
    const bundlePath = path.join(next, 'workflow-bundle.js');
    writeFileSync(bundlePath, code);

    const dist = path.join(root, 'dist');
    if (existsSync(dist)) renameSync(dist, old);
    renameSync(next, dist);
    rmSync(old, { recursive: true, force: true });
    const kib = Math.round(Buffer.byteLength(code) / 1024);
    process.stdout.write(
      `build: ${sources.length} modules, ${assets.length} assets and a ${kib} KiB workflow bundle in dist/ ` +
        `(${((Date.now() - started) / 1000).toFixed(1)}s)\n`,
    );
  } finally {
    rmSync(next, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`build: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}\n`);
  process.exitCode = 1;
});
