/**
 * How the backup commands (backup, verify, restore, drill, logical) report a failure: one
 * redacted stderr block with the reason and, for a user's error, its hint.
 */
import { redact } from '../config/redact.js';
import { isUserError, messageOf } from '../errors.js';
import type { CommandOutput } from './show.js';

/** A failed run: nothing on stdout, the redacted text on stderr. */
export function failure(text: string, exitCode: number): CommandOutput {
  return { stdout: '', stderr: `${redact(text)}\n`, exitCode };
}

/** The error's message, with "hint: …" on its own line for a UserError that has one. */
export function describeError(error: unknown): string {
  if (isUserError(error)) return error.hint === undefined ? error.message : `${error.message}\n  hint: ${error.hint}`;
  return messageOf(error);
}
