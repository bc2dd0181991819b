/**
 * The model-based concurrency check in `npm test`: a fixed seed and a few short sequences, so a regression fails
 * every time the same way. `npx tsx scripts/model-check.ts --runs N` runs many more with a random seed.
 */
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { ModelRunner, sequences } from './helpers/model';
import { World } from './helpers/world';

let world: World;
let runner: ModelRunner;

before(async () => {
  world = await World.start();
  runner = new ModelRunner(world);
  await runner.start();
});
after(() => world?.close());

test(
  'random interleavings end with the operator last word, vendors matching it, no orphan key',
  { timeout: 900_000 },
  async () => {
    await fc.assert(
      fc.asyncProperty(sequences, (actions) => runner.run(actions)),
      { seed: 20261129, numRuns: 6, endOnFailure: false, interruptAfterTimeLimit: 600_000 },
    );
  },
);
