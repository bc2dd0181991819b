/**
 * Registers managed SMTP's search attributes on the namespace when they are missing. Where the credentials may not
 * (Temporal Cloud API keys usually cannot), it warns instead of crashing: an operator adds them once by hand.
 */
import type { NativeConnection } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../lib/search-attributes';

const INDEXED: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  Keyword: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  Text: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
  Int: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
  Double: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
  Bool: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
  Datetime: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
};

/** What registration did. */
export interface RegistrationResult {
  added: string[];
  warning?: string;
}

/** Adds the search attributes the namespace lacks. Never throws: failures come back as a warning. */
export async function ensureSearchAttributes(
  connection: NativeConnection,
  namespace: string,
): Promise<RegistrationResult> {
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    const have = new Set(Object.keys(existing.customAttributes ?? {}));
    const missing = Object.entries(SEARCH_ATTRIBUTES).filter(([name]) => !have.has(name));
    if (missing.length === 0) return { added: [] };
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map(([name, type]) => [name, INDEXED[type]])),
    });
    return { added: missing.map(([name]) => name) };
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return {
      added: [],
      warning:
        `could not register search attributes ${Object.keys(SEARCH_ATTRIBUTES).join(', ')} on namespace ` +
        `${namespace} (${why}); add them once with the temporal CLI or the Cloud UI`,
    };
  }
}
