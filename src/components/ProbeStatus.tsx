/**
 * The non-ok states of a probe result, in one or two lines: what the user sees instead of (or
 * above) a screen's content while the data is missing, unsupported, failing or stale.
 */
import { Box } from 'ink';
import type { ReactElement } from 'react';
import { truncate } from '../format/text-table.js';
import { formatDuration } from '../format/units.js';
import { latest } from '../probes/types.js';
import type { ProbeResult } from '../probes/types.js';
import type { Theme } from './theme.js';
import { Line as TextLine } from './Styled.js';

/** HH:MM:SS in local time, the way the header clock shows it. */
export function clockTime(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** The freshest snapshot of a result and whether it is stale; latest() under the name screens use. */
export function snapshotOf<S>(result: ProbeResult<S>): { snapshot: S; at: Date; stale: boolean } | undefined {
  return latest(result);
}

/**
 * "showing data from 12:00:05 (stale, 42s old)" when the result shows a snapshot from before an
 * error, or null when what is shown is fresh (or there is nothing to show).
 */
export function staleNote<S>(result: ProbeResult<S>, now?: Date): string | null {
  if (result.status !== 'error' || result.last === undefined) return null;
  const from = clockTime(result.last.at);
  if (now === undefined) return `showing data from ${from} (stale)`;
  const age = Math.max(0, (now.getTime() - result.last.at.getTime()) / 1000);
  return `showing data from ${from} (stale, ${formatDuration(Math.floor(age))} old)`;
}

/** The ellipsis that ends a sentence: "…", or "..." when the theme is ASCII. */
function sentenceEllipsis(theme: Theme): string {
  return theme.symbols.ellipsis === '…' ? '…' : '...';
}

interface Line {
  readonly text: string;
  readonly color: string | undefined;
}

/** The lines ProbeStatus shows for a result (none when it is ok). */
export function probeStatusLines<S>(result: ProbeResult<S>, theme: Theme, what: string, now?: Date): readonly Line[] {
  switch (result.status) {
    case 'ok':
      return [];
    case 'pending':
      return [{ text: `waiting for the first ${what} snapshot${sentenceEllipsis(theme)}`, color: theme.color.muted }];
    case 'unsupported':
      return [
        { text: `${what} unavailable: ${result.unsupported.reason}`, color: theme.color.warning },
        { text: `fix: ${result.unsupported.fix}`, color: theme.color.muted },
      ];
    case 'error': {
      const hint = result.error.hint !== undefined && result.error.hint !== '' ? ` (${result.error.hint})` : '';
      const lines: Line[] = [{ text: `${what} failed: ${result.error.message}${hint}`, color: theme.color.critical }];
      const note = staleNote(result, now);
      if (note !== null) lines.push({ text: note, color: theme.color.stale });
      return lines;
    }
  }
}

export interface ProbeStatusProps<S> {
  readonly result: ProbeResult<S>;
  readonly theme: Theme;
  /** What the probe watches, in the words of the screen: "activity", "replication"… */
  readonly what: string;
  /** Cuts each line to this many columns; without it, Ink cuts at the parent's width. */
  readonly width?: number | undefined;
  /** With it, the stale note says how old the data is. */
  readonly now?: Date | undefined;
}

/** One or two lines for a result that is not ok (pending, unsupported, error with stale data); nothing when ok. */
export function ProbeStatus<S>({ result, theme, what, width, now }: ProbeStatusProps<S>): ReactElement | null {
  const lines = probeStatusLines(result, theme, what, now);
  if (lines.length === 0) return null;
  return (
    <Box flexDirection="column" flexShrink={0}>
      {lines.map((line, index) => (
        <TextLine key={index} color={line.color}>
          {width === undefined ? line.text : truncate(line.text, width, theme.symbols.ellipsis)}
        </TextLine>
      ))}
    </Box>
  );
}
