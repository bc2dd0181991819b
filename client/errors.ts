/** Errors smtpctl turns into exit codes; in their own module so command modules can import them without cycles. */

/** An operation failed (exit 1) with a message for the operator, and optionally the status it left. */
export class OperationFailed extends Error {
  constructor(
    message: string,
    readonly result?: unknown,
  ) {
    super(message);
    this.name = 'OperationFailed';
  }
}
