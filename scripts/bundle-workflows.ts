/**
 * Bundles the workflow code once, at build time: `npx tsx scripts/bundle-workflows.ts [--out FILE]` writes
 * `dist/workflow-bundle.js` (or FILE). The container image runs the worker with
 * MANAGED_SMTP_WORKFLOW_BUNDLE pointing at it, so workers start faster, never need webpack at run time, and every
 * replica of one image runs byte-identical workflow code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { workflowBundleOptions } from '../worker/bundle';

const USAGE = 'usage: tsx scripts/bundle-workflows.ts [--out FILE]';

function parseArgs(argv: string[]): { out: string } {
  let out = path.resolve(__dirname, '..', 'dist', 'workflow-bundle.js');
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--out' && argv[i + 1] && !argv[i + 1].startsWith('-')) {
      out = path.resolve(argv[++i]);
    } else if (arg.startsWith('--out=') && arg.length > '--out='.length) {
      out = path.resolve(arg.slice('--out='.length));
    } else {
      process.stderr.write(`bundle-workflows: unexpected argument ${JSON.stringify(arg)}\n${USAGE}\n`);
      process.exit(2);
    }
  }
  return { out };
}

async function main(): Promise<void> {
  const { out } = parseArgs(process.argv.slice(2));
  const started = Date.now();
  const { code } = await bundleWorkflowCode(workflowBundleOptions());
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, code);
  const kib = Math.round(Buffer.byteLength(code) / 1024);
  console.log(`bundle-workflows: wrote ${out} (${kib} KiB in ${((Date.now() - started) / 1000).toFixed(1)}s)`);
}

main().catch((err) => {
  process.stderr.write(`bundle-workflows: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
