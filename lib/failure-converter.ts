/**
 * The failure converter of every worker, client and workflow bundle: error messages and stack traces travel in the
 * failure's encoded attributes, so the payload codec encrypts them with the payloads (they are plaintext in history
 * otherwise). Loaded by path (`failureConverterPath`) because workflow code runs in its own sandbox.
 */
import { DefaultFailureConverter } from '@temporalio/common';

/** The failure converter, as `failureConverterPath` modules export it. */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
