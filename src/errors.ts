/**
 * The error taxonomy. A UserError is something the user can fix (bad config, unreachable server,
 * missing privilege, refused action): it is printed as one line plus the next step, without a
 * stack trace. Anything else is a bug and keeps its stack.
 */
export class UserError extends Error {
  override readonly name = 'UserError';
  /** What to do next, in one sentence. */
  readonly hint: string | undefined;

  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.hint = hint;
  }
}

/** True for errors the user can act on; false for bugs. */
export function isUserError(error: unknown): error is UserError {
  return error instanceof UserError;
}

/** The message of any thrown value, without assuming it is an Error. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
