/**
 * The long run of the model-based concurrency check: `npx tsx scripts/model-check.ts [--runs 200] [--seed N]`.
 * Prints how many sequences were checked and how long it took; on a failure, fast-check's shrunk counterexample.
 * `--replay '<counterexample JSON>'` runs one printed counterexample again (as often as `--runs`, default 1).
 */
import fc from 'fast-check';
import { ModelRunner, sequences, type Action } from '../test/helpers/model';
import { World } from '../test/helpers/world';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Runs one counterexample (`[[actions]]` as printed, or `[actions]`) `times` times; stops at the first failure. */
async function replay(json: string, times: number): Promise<void> {
  const parsed = JSON.parse(json) as Action[] | [Action[]];
  const actions = (Array.isArray(parsed[0]) ? parsed[0] : parsed) as Action[];
  const world = await World.start();
  try {
    const runner = new ModelRunner(world);
    await runner.start();
    for (let i = 1; i <= times; i++) {
      const started = Date.now();
      await runner.run(actions);
      console.log(`replay ${i}/${times} passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  } finally {
    await world.close();
  }
}

async function main(): Promise<void> {
  const at = process.argv.indexOf('--replay');
  if (at > 0) return replay(process.argv[at + 1] ?? '[]', arg('--runs', 1));
  const runs = arg('--runs', 100);
  const seed = arg('--seed', Date.now() % 2 ** 31);
  const world = await World.start();
  const started = Date.now();
  let checked = 0;
  try {
    const runner = new ModelRunner(world);
    await runner.start();
    const result = await fc.check(
      fc.asyncProperty(sequences, async (actions) => {
        await runner.run(actions);
        checked++;
      }),
      { seed, numRuns: runs },
    );
    const took = ((Date.now() - started) / 1000).toFixed(0);
    if (result.failed) {
      // The shrunk sequence and the assertion it broke: what a fix starts from.
      const error = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance);
      console.error(`model check: failed after ${result.numRuns} sequences in ${took} s (seed ${seed})`);
      console.error(`counterexample (path ${result.counterexamplePath}): ${JSON.stringify(result.counterexample)}`);
      console.error(`error: ${error}`);
      process.exitCode = 1;
      return;
    }
    console.log(`model check: ${checked} sequences passed in ${took} s (seed ${seed})`);
  } finally {
    await world.close();
  }
}

main().catch((err) => {
  console.error(String(err instanceof Error ? err.message : err));
  process.exit(1);
});
