/**
 * A readable text report of any snapshot, for `pgwarden show`: scalar fields as "key: value"
 * lines, lists of records as tables, nested records as their own sections. Values are formatted
 * by the naming conventions of snapshot fields (…Bytes, …Seconds, …Fraction, …PerSecond).
 */
import { formatBytes, formatDuration, formatPercent, formatRate } from './units.js';
import { renderTextTable, type TextColumn } from './text-table.js';

type Scalar = string | number | boolean | Date | null | undefined;

function isScalar(value: unknown): value is Scalar {
  return value === null || value === undefined || value instanceof Date || ['string', 'number', 'boolean'].includes(typeof value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** "xactSeconds" → "xact seconds" for headings. */
function words(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
}

/** Formats one value according to its field name. */
export function formatField(key: string, value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return value.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.map((item) => formatField(key, item)).join(',');
  if (typeof value === 'number') {
    if (/bytes$|size$|Bytes[A-Z]|^bytes/i.test(key)) return formatBytes(value);
    if (/seconds$/i.test(key)) return formatDuration(value);
    if (/(fraction|ratio)$/i.test(key)) return formatPercent(value);
    if (/(perSecond|Rate)$/.test(key)) return formatRate(value);
    if (/ms$/i.test(key)) return `${value.toFixed(value < 10 ? 2 : 0)}ms`;
    return Number.isInteger(value) ? String(value) : value.toFixed(2);
  }
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  return JSON.stringify(value);
}

function tableOf(key: string, items: readonly Record<string, unknown>[], width: number): string {
  const keys = [...new Set(items.flatMap((item) => Object.keys(item)))].filter((k) =>
    items.every((item) => isScalar(item[k]) || (Array.isArray(item[k]) && (item[k] as unknown[]).every(isScalar))),
  );
  // Long text, and lists of paths or names (storage locations, the columns a sequence feeds).
  const textHeavy = (k: string): boolean => /query|text|command|paths|locations|columns/i.test(k);
  const columns: TextColumn[] = keys.map((k) => ({
    title: words(k),
    align: items.some((item) => typeof item[k] === 'number') ? 'right' : 'left',
    maxWidth: textHeavy(k) ? Math.max(20, Math.floor(width / 3)) : 32,
  }));
  const rows = items.map((item) => keys.map((k) => formatField(k, item[k])));
  return `${words(key)} (${items.length})\n${items.length === 0 ? '  (none)' : renderTextTable(columns, rows)}`;
}

/** The whole snapshot as text sections separated by blank lines. */
export function renderReport(snapshot: unknown, width = 160, title = ''): string {
  if (!isRecord(snapshot)) return formatField(title, snapshot);
  const sections: string[] = [];
  const fields: string[] = [];
  for (const [key, value] of Object.entries(snapshot)) {
    if (isScalar(value) || (Array.isArray(value) && value.every(isScalar))) {
      fields.push(`${words(key)}: ${formatField(key, value)}`);
    } else if (Array.isArray(value)) {
      sections.push(tableOf(key, value.filter(isRecord), width));
    } else if (isRecord(value)) {
      sections.push(renderReport(value, width, words(key)));
    }
  }
  const head = fields.length > 0 ? [`${title === '' ? '' : `${title}\n`}${fields.map((f) => (title === '' ? f : `  ${f}`)).join('\n')}`] : title === '' ? [] : [title];
  return [...head, ...sections].join('\n\n');
}
