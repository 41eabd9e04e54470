/** Small pure formatters shared by `show`, the screens and alert messages. */

const byteUnits = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'] as const;

/** 1536 → "1.5 kB"; null → "-" (unknown is never shown as 0). */
export function formatBytes(bytes: number | null): string {
  if (bytes === null) return '-';
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < byteUnits.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${sign}${value.toFixed(digits)} ${byteUnits[unit] ?? 'B'}`;
}

/** Seconds → "850ms", "42s", "3m07s", "2h05m", "3d04h"; null → "-". */
export function formatDuration(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 0) return `-${formatDuration(-seconds)}`;
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.floor(seconds)}s`;
  const s = Math.floor(seconds);
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`;
}

/** 0.1234 → "12.3%"; null → "-". */
export function formatPercent(fraction: number | null, digits = 1): string {
  if (fraction === null) return '-';
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** A rate per second with a sensible precision; null → "-". */
export function formatRate(perSecond: number | null): string {
  if (perSecond === null) return '-';
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 1) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}

/** Large counts with thousands separators: 1234567 → "1,234,567"; null → "-". */
export function formatCount(n: number | null): string {
  if (n === null) return '-';
  return Math.round(n).toLocaleString('en-US');
}

/** Parses an LSN "16/B374D848" into a byte position (exact up to 2^53, i.e. 8 PB of WAL). */
export function parseLsn(lsn: string): number {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn);
  if (match === null) throw new Error(`not an LSN: ${lsn}`);
  return parseInt(match[1] ?? '0', 16) * 2 ** 32 + parseInt(match[2] ?? '0', 16);
}
