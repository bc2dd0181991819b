/**
 * The workflow bundle's entry: every workflow type the worker runs. Messages, schemas and types live in contract/;
 * the instance entity in workflows/instance/ (workflow.ts wires it, one file per operation).
 */
export { managedSmtpWorkflow, type CarriedState, type ManagedSmtpInput } from './instance/workflow';
export * from './fleet';
export * from './gdpr';
export * from './deliverability';
export * from './domains';
export * from '../contract/messages';
export { describeFailure } from '../contract/failures';
export type { QueuedRequest } from '../contract/types';
