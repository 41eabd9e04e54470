/**
 * The stable JSON form of snapshots (docs/json.md): snake_case keys, ISO-8601 timestamps,
 * numbers as numbers, unknown as null.
 */

/** camelCase → snake_case ("xactSeconds" → "xact_seconds", "blockedBy" → "blocked_by"). */
export function snakeCase(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/([A-Z])([A-Z][a-z])/g, '$1_$2').toLowerCase();
}

/** Deep copy with snake_case keys and Dates as ISO strings. */
export function toJsonValue(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toJsonValue(v)]));
  if (Array.isArray(value)) return value.map(toJsonValue);
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[snakeCase(key)] = toJsonValue(item);
    return out;
  }
  if (typeof value === 'number' && !Number.isFinite(value)) return null;
  return value;
}
