/**
 * Deliberate conversions from driver values. pg returns int8 and numeric as strings (they can
 * exceed 2^53); counters and sizes fit a double for any realistic server, so they become numbers
 * here, once, with NULL kept as null.
 */
import type { Row } from '../db/types.js';

/** Text of a driver value for messages and string columns (objects as JSON, not "[object Object]"). */
function text(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

function field(row: Row, key: string): unknown {
  if (!(key in row)) throw new Error(`probe row has no column "${key}"`);
  return row[key];
}

/** A number (int2/4/8, numeric, float) or null. */
export function numberOrNull(row: Row, key: string): number | null {
  const value = field(row, key);
  if (value === null || value === undefined) return null;
  const n = typeof value === 'number' ? value : Number(value);
  if (Number.isNaN(n)) throw new Error(`column "${key}" is not a number: ${text(value)}`);
  return n;
}

/** A number that the SQL guarantees is not NULL (count(*), coalesce…). */
export function number(row: Row, key: string): number {
  return numberOrNull(row, key) ?? 0;
}

export function stringOrNull(row: Row, key: string): string | null {
  const value = field(row, key);
  if (value === null || value === undefined) return null;
  return text(value);
}

export function string(row: Row, key: string): string {
  return stringOrNull(row, key) ?? '';
}

export function booleanOrNull(row: Row, key: string): boolean | null {
  const value = field(row, key);
  if (value === null || value === undefined) return null;
  return value === true || value === 't' || value === 'true' || value === 'on';
}

export function boolean(row: Row, key: string): boolean {
  return booleanOrNull(row, key) ?? false;
}

/** A timestamp (Date from the driver or an ISO string) or null. */
export function dateOrNull(row: Row, key: string): Date | null {
  const value = field(row, key);
  if (value === null || value === undefined) return null;
  const date = value instanceof Date ? value : new Date(text(value));
  if (Number.isNaN(date.getTime())) throw new Error(`column "${key}" is not a timestamp: ${text(value)}`);
  return date;
}

/** An int[] column (the driver parses arrays) as numbers. */
export function numberArray(row: Row, key: string): number[] {
  const value = field(row, key);
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`column "${key}" is not an array`);
  return value.map((item) => Number(item));
}

/** Rows of one named query, or an empty list when that query was not run. */
export function rowsOf(rows: Readonly<Record<string, readonly Row[]>>, name: string): readonly Row[] {
  return rows[name] ?? [];
}
