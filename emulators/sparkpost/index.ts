/** The SparkPost emulators: the REST API and the SMTP relay. */
export * from './api';
export { SmtpRelayEmulator, subjectOf } from './relay';
