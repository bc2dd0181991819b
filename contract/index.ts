/**
 * The shared contract of managed-smtp: messages, request schemas, ids, failure types, search attribute keys and
 * types. Workflows, activities and clients import this; none of them imports another.
 */
export * from './messages';
export * from './requests';
export * from './failures';
export * from './types';
export * from '../lib/instance';
export * from '../lib/search-attributes';
