/**
 * How every managed-smtp workflow bundle is built: `npm run build` (dist/workflow-bundle.js, what the image runs),
 * scripts/bundle-workflows.ts, the tests, the chaos runner and a worker that bundles at start. One set of options, so
 * the code a test proves is the code a deploy runs.
 */
import type { BundleOptions } from '@temporalio/worker';
import { DefaultLogger } from '@temporalio/worker';
import { FAILURE_CONVERTER_PATH } from '../lib/codec';

/** Path of the workflow module the worker bundles. */
export const WORKFLOWS_PATH = require.resolve('../workflows');

/**
 * Modules evaluated once per worker thread instead of once per workflow. With `reuseV8Context` (the SDK default) every
 * new workflow, and every evicted one replayed, evaluates the bundle's modules again; the request schemas and the part
 * of zod they load were most of that work. A preloaded module, and whatever it imports, must hold no per-workflow
 * state, and the SDK deep-freezes what it exports: contract/requests.ts hands its schemas out through a function, and
 * any code that writes to an exported object (zod resets `lastIndex` of a pattern) gets its own copy.
 */
export const PRELOAD_MODULES: readonly string[] = [require.resolve('../contract/requests')];

/**
 * The bundler options a worker that bundles at start passes to Worker.create (its failure converter comes with its
 * data converter), and that the prebuilt bundle uses too.
 */
export function workflowBundlerOptions(): Pick<BundleOptions, 'preloadModules' | 'webpackConfigHook'> {
  return {
    preloadModules: [...PRELOAD_MODULES],
    // The SDK needs an inline source map (it maps workflow stack traces), but not the sources in it nor column
    // precision: without them the bundle is 1.5 MiB instead of 3.6 and the worker holds ~45 MiB less (the map is parsed
    // in both of its threads). Stack traces still name the original file and line.
    webpackConfigHook: (config) => ({ ...config, devtool: 'inline-nosources-cheap-module-source-map' }),
  };
}

/** The options of bundleWorkflowCode for the production workflow bundle. */
export function workflowBundleOptions(): BundleOptions {
  return {
    workflowsPath: WORKFLOWS_PATH,
    logger: new DefaultLogger('WARN'),
    // Failures raised in workflow code carry their message and stack encoded, for the payload codec to encrypt.
    failureConverterPath: FAILURE_CONVERTER_PATH,
    ...workflowBundlerOptions(),
  };
}
