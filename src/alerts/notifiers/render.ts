/**
 * Renders a notice for humans, once as a neutral list of blocks, then as plain text or HTML, so
 * the two bodies of a mail (and the Slack payload) always say the same thing.
 */
import type { Notice, NoticeAlertData } from '../types.js';

export type Block =
  | { readonly kind: 'heading'; readonly text: string }
  | { readonly kind: 'para'; readonly text: string }
  | { readonly kind: 'fields'; readonly rows: readonly (readonly [string, string])[] }
  | { readonly kind: 'pre'; readonly title: string; readonly lines: readonly string[] }
  | { readonly kind: 'link'; readonly label: string; readonly href: string };

export interface RenderOptions {
  /** Prefix that turns the catalogue's relative runbook paths ("docs/alerts.md#x") into links. */
  readonly runbookBaseUrl?: string;
}

const repeatLine = 'Still firing (repeat).';

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(Math.abs(value) < 10 ? 2 : 1);
}

function withUnit(value: number | null, unit: string): string {
  if (value === null) return 'unknown';
  return unit === '' ? formatNumber(value) : `${formatNumber(value)} ${unit}`;
}

function text(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Human-readable bytes for lag figures. */
function bytes(value: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let amount = value;
  let index = 0;
  while (Math.abs(amount) >= 1024 && index < units.length - 1) {
    amount /= 1024;
    index += 1;
  }
  return `${index === 0 ? String(amount) : amount.toFixed(1)} ${units[index] ?? 'B'}`;
}

function sessionBlock(session: Record<string, unknown>, index: number): Block {
  const summary = ['pid', 'user', 'application', 'client'].map((key) => `${key} ${text(session[key])}`).join(' · ');
  const query = typeof session.query === 'string' ? session.query.split('\n') : ['(no query text)'];
  return { kind: 'pre', title: `Session ${index + 1}: ${summary}`, lines: query };
}

/** The context of one alert: sessions, lock tree, lag, details, then anything else the check put there. */
export function contextBlocks(context: object): Block[] {
  const blocks: Block[] = [];
  const rest: [string, string][] = [];
  for (const [key, value] of Object.entries(context) as [string, unknown][]) {
    if (key === 'sessions' && Array.isArray(value)) {
      value.forEach((session: unknown, index) => {
        if (isRecord(session)) blocks.push(sessionBlock(session, index));
      });
    } else if (key === 'lockTree' && Array.isArray(value)) {
      blocks.push({ kind: 'pre', title: 'Lock tree', lines: value.map((line: unknown) => text(line)) });
    } else if (key === 'lag' && isRecord(value)) {
      const rows: [string, string][] = [];
      if (typeof value.bytes === 'number') rows.push(['Lag (bytes)', bytes(value.bytes)]);
      if (typeof value.seconds === 'number') rows.push(['Lag (time)', `${formatNumber(value.seconds)} s`]);
      if (rows.length === 0) rows.push(['Lag', 'unknown']);
      blocks.push({ kind: 'fields', rows });
    } else if (key === 'details' && isRecord(value)) {
      blocks.push({ kind: 'fields', rows: Object.entries(value).map(([name, item]) => [name, text(item)] as const) });
    } else {
      rest.push([key, text(value)]);
    }
  }
  if (rest.length > 0) blocks.push({ kind: 'fields', rows: rest });
  return blocks;
}

function runbookBlock(runbook: string, options: RenderOptions): Block {
  if (/^https?:\/\//.test(runbook)) return { kind: 'link', label: 'Runbook', href: runbook };
  if (options.runbookBaseUrl !== undefined && runbook !== '') {
    const base = options.runbookBaseUrl.endsWith('/') ? options.runbookBaseUrl : `${options.runbookBaseUrl}/`;
    return { kind: 'link', label: 'Runbook', href: base + runbook.replace(/^\/+/, '') };
  }
  return { kind: 'fields', rows: [['Runbook', runbook === '' ? '-' : runbook]] };
}

/** Everything about one alert a responder needs to act. */
export function alertBlocks(alert: NoticeAlertData, options: RenderOptions = {}): Block[] {
  const rows: [string, string][] = [
    ['Cluster / node', `${alert.cluster} / ${alert.node}`],
    ['Value', `${withUnit(alert.value, alert.unit)} (threshold ${withUnit(alert.threshold, alert.unit)})`],
    ['First seen', new Date(alert.firstSeen).toISOString()],
  ];
  if (alert.acknowledgedBy !== null) rows.push(['Acknowledged by', alert.acknowledgedBy]);
  if (alert.escalatedFrom !== null) rows.push(['Escalated', `not acknowledged in time by team ${alert.escalatedFrom}`]);
  return [
    { kind: 'heading', text: `${alert.status.toUpperCase()} ${alert.severity}: ${alert.checkId} on ${alert.subject}` },
    { kind: 'para', text: alert.message },
    { kind: 'fields', rows },
    ...contextBlocks(alert.context),
    runbookBlock(alert.runbook, options),
  ];
}

/** The whole notice as blocks; a notice without alerts (a test notice) keeps the engine's body. */
export function noticeBlocks(notice: Notice, options: RenderOptions = {}): Block[] {
  if (notice.alerts.length === 0) return notice.body.map((line) => ({ kind: 'para', text: line }));
  const blocks: Block[] = [];
  if (notice.suppressedCount > 0) {
    blocks.push({ kind: 'para', text: `${notice.suppressedCount} notice${notice.suppressedCount === 1 ? '' : 's'} suppressed` });
  }
  if (notice.body.includes(repeatLine)) blocks.push({ kind: 'para', text: repeatLine });
  for (const alert of notice.alerts) blocks.push(...alertBlocks(alert, options));
  return blocks;
}

/** Plain text of blocks. */
export function blocksToText(blocks: readonly Block[]): string {
  const out: string[] = [];
  for (const block of blocks) {
    switch (block.kind) {
      case 'heading':
        if (out.length > 0) out.push('');
        out.push(block.text, '-'.repeat(Math.min(block.text.length, 72)));
        break;
      case 'para':
        out.push(block.text);
        break;
      case 'fields': {
        const width = Math.max(...block.rows.map(([label]) => label.length));
        for (const [label, value] of block.rows) out.push(`${`${label}:`.padEnd(width + 2)}${value}`);
        break;
      }
      case 'pre':
        out.push(`${block.title}:`, ...block.lines.map((line) => `    ${line}`));
        break;
      case 'link':
        out.push(`${block.label}: ${block.href}`);
        break;
    }
  }
  return `${out.join('\n')}\n`;
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** HTML of blocks: every piece of text is escaped (queries and messages come from the database). */
export function blocksToHtml(blocks: readonly Block[], title: string): string {
  const out: string[] = [];
  for (const block of blocks) {
    switch (block.kind) {
      case 'heading':
        out.push(`<h3 style="margin:16px 0 4px">${escapeHtml(block.text)}</h3>`);
        break;
      case 'para':
        out.push(`<p style="margin:4px 0">${escapeHtml(block.text)}</p>`);
        break;
      case 'fields':
        out.push(
          '<table style="border-collapse:collapse">',
          ...block.rows.map(
            ([label, value]) =>
              `<tr><th style="text-align:left;padding:2px 12px 2px 0;vertical-align:top">${escapeHtml(label)}</th><td style="padding:2px 0">${escapeHtml(value)}</td></tr>`,
          ),
          '</table>',
        );
        break;
      case 'pre':
        out.push(
          `<p style="margin:8px 0 2px"><strong>${escapeHtml(block.title)}</strong></p>`,
          `<pre style="margin:0;padding:6px;background:#f4f4f4;white-space:pre-wrap">${escapeHtml(block.lines.join('\n'))}</pre>`,
        );
        break;
      case 'link':
        out.push(`<p style="margin:8px 0">${escapeHtml(block.label)}: <a href="${escapeHtml(block.href)}">${escapeHtml(block.href)}</a></p>`);
        break;
    }
  }
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body style="font-family:sans-serif">\n${out.join('\n')}\n</body></html>\n`;
}
