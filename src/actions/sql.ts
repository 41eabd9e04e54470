/**
 * Building the exact SQL a plan shows and runs. Names are always quoted (never concatenated raw),
 * pids are checked to be integers before they are written into a statement.
 */

/** Quotes an identifier for SQL: "name", with embedded double quotes doubled. */
export function quoteIdent(name: string): string {
  // A NUL cannot be part of a PostgreSQL name; refusing it beats letting the driver truncate the text.
  if (name.includes('\0')) throw new Error('an SQL identifier cannot contain a NUL character');
  if (name === '') throw new Error('an SQL identifier cannot be empty');
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes a string literal as quote_literal() does: E'…' when it holds a backslash, whatever standard_conforming_strings says. */
export function quoteLiteral(text: string): string {
  if (text.includes('\0')) throw new Error('an SQL string cannot contain a NUL character');
  const body = text.replaceAll("'", "''");
  return text.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}

/** "schema"."name", quoted. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** schema.name as a person reads it (not for SQL). */
export function displayName(schema: string, name: string): string {
  return `${schema}.${name}`;
}

/** True for a value usable as a backend pid: a positive 32-bit integer. */
export function isPid(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= 2_147_483_647;
}

/** A pid written into SQL, only after checking it is an integer. */
export function pidLiteral(pid: number): string {
  if (!isPid(pid)) throw new Error(`not a process id: ${String(pid)}`);
  return String(pid);
}
