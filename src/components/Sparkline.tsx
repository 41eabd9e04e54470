/** A one-line chart of recent values (TPS, connections, lag), newest at the right. */
import { Line } from './Styled.js';
import type { ReactElement } from 'react';
import type { Theme } from './theme.js';

/**
 * The last `width` values as sparkline levels, scaled between the min and max of that window
 * (all equal → the lowest level); left-padded with spaces to exactly `width` characters.
 * Non-finite values (a missing sample) show as a space.
 */
export function sparkline(values: readonly number[], width: number, levels: readonly string[]): string {
  if (width <= 0) return '';
  const shown = values.slice(-width);
  const finite = shown.filter((value) => Number.isFinite(value));
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  const top = levels.length - 1;
  const chars = shown.map((value) => {
    if (!Number.isFinite(value)) return ' ';
    // A flat series is drawn at the bottom: a flat line at full height would read as "maximum load".
    const level = max > min ? Math.round(((value - min) / (max - min)) * top) : 0;
    return levels[level] ?? ' ';
  });
  return ' '.repeat(width - shown.length) + chars.join('');
}

export interface SparklineProps {
  readonly values: readonly number[];
  readonly width: number;
  readonly theme: Theme;
}

/** The last `width` values as a sparkline in the accent colour. */
export function Sparkline({ values, width, theme }: SparklineProps): ReactElement {
  return (
    <Line color={theme.color.accent}>{sparkline(values, width, theme.symbols.sparkline)}</Line>
  );
}
