import { UserError, messageOf } from '../errors.js';
import { redact } from '../config/redact.js';
import { causeOf } from './sqlstate.js';

/** A database failure with its SQLSTATE and a readable cause; a UserError, since the fix is outside pgwarden. */
export class DbError extends UserError {
  readonly sqlstate: string | undefined;
  /** The label of the node, e.g. "postgres@db1:5432/postgres". */
  readonly target: string;

  constructor(target: string, message: string, sqlstate: string | undefined, hint: string | undefined, cause: unknown) {
    super(message, hint, { cause });
    this.sqlstate = sqlstate;
    this.target = target;
  }
}

const networkCauses: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused: is the server running and listening on that host and port?',
  ENOTFOUND: 'host name not found',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ECONNRESET: 'connection reset by the server',
  ENOENT: 'no Unix socket there: is the server running, and is the socket directory right?',
};

/** Turns anything the pg driver throws into a DbError with a readable message and the fix. */
export function toDbError(target: string, error: unknown, secrets: readonly string[] = []): DbError {
  if (error instanceof DbError) return error;
  const fields = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown };
  const code = typeof fields.code === 'string' ? fields.code : undefined;
  const raw = redact(messageOf(error), secrets);
  const isSqlState = code !== undefined && /^[0-9A-Z]{5}$/.test(code);
  if (isSqlState) {
    const cause = causeOf(code);
    const message = cause === undefined ? `${target}: ${raw} (SQLSTATE ${code})` : `${target}: ${cause.cause}: ${raw} (SQLSTATE ${code})`;
    return new DbError(target, message, code, cause?.fix, error);
  }
  if (/client password must be a string|password must be a string/i.test(raw)) {
    return new DbError(target, `${target}: the server asks for a password and none is set`, '28P01', 'add it to ~/.pgpass (mode 0600), PGPASSWORD or the DSN', error);
  }
  const network = code === undefined ? undefined : networkCauses[code];
  if (network !== undefined) return new DbError(target, `${target}: ${network}`, undefined, 'check the DSN, the server and the network', error);
  if (/timeout/i.test(raw)) return new DbError(target, `${target}: ${raw}`, undefined, 'the server did not answer in time; check its load and the network', error);
  return new DbError(target, `${target}: ${raw}`, undefined, undefined, error);
}
