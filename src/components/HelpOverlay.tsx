/** Every key binding, grouped by where it applies, generated from the keymap. */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, fit, truncate } from '../format/text-table.js';
import type { Command, Scope } from '../keymap.js';
import { clampScroll, wrapText } from './DetailPane.js';
import { keyLabel } from './Footer.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

/** The scopes in the order the help lists them, with their headings. */
export const scopeTitles: readonly (readonly [Scope, string])[] = [
  ['global', 'Everywhere'],
  ['list', 'Lists (every view with rows)'],
  ['activity', 'Sessions (Activity and Locks)'],
  ['locks', 'Locks'],
  ['tables', 'Tables'],
  ['alerts', 'Alerts'],
  ['backups', 'Backups'],
  ['replication', 'Replication'],
  ['dialog', 'Dialogs and prompts'],
];

type Tone = 'accent' | 'muted' | 'critical' | 'header';

/** A help line as runs of text in theme tones. */
export type HelpLine = readonly { readonly text: string; readonly tone: Tone | undefined; readonly bold?: boolean }[];

const dangerMark = '(dangerous)';
// Wider key lists are wrapped under their column rather than widening it for every entry.
const maxKeyColumn = 14;

/** The keys of a command as the help shows them: "up, k", "q, ^C". */
export function keysText(command: Command): string {
  return command.keys.map(keyLabel).join(', ');
}

/** The help as lines of `width` columns at most: headings, then key, description, danger and why-disabled. */
export function helpLines(commands: readonly Command[], width: number): readonly HelpLine[] {
  const keyColumn = Math.min(maxKeyColumn, Math.max(0, ...commands.map((command) => displayWidth(keysText(command)))));
  const textWidth = Math.max(width - keyColumn - 2, 8);
  const indent = ' '.repeat(keyColumn + 2);
  const lines: HelpLine[] = [];
  for (const [scope, title] of scopeTitles) {
    const inScope = commands.filter((command) => command.scope === scope);
    if (inScope.length === 0) continue;
    if (lines.length > 0) lines.push([]);
    lines.push([{ text: truncate(title, width), tone: 'header', bold: true }]);
    for (const command of inScope) {
      const keys = keysText(command);
      const keyLines = displayWidth(keys) > keyColumn ? wrapText(keys, keyColumn) : [keys];
      const description = wrapText(command.dangerous ? `${command.description} ${dangerMark}` : command.description, textWidth);
      const why = command.whyDisabled === undefined ? [] : wrapText(command.whyDisabled, textWidth);
      const rows = Math.max(keyLines.length, description.length + why.length);
      for (let row = 0; row < rows; row += 1) {
        const key = keyLines[row];
        const line: { text: string; tone: Tone | undefined; bold?: boolean }[] = [{ text: key === undefined ? indent : `${fit(key, keyColumn)}  `, tone: 'accent', bold: true }];
        const text = description[row];
        if (text !== undefined) {
          // The danger mark keeps its own colour when it ends the description.
          const marked = command.dangerous && row === description.length - 1 && text.endsWith(dangerMark);
          line.push({ text: marked ? text.slice(0, text.length - dangerMark.length) : text, tone: undefined });
          if (marked) line.push({ text: dangerMark, tone: 'critical' });
        } else {
          const note = why[row - description.length];
          if (note !== undefined) line.push({ text: note, tone: 'muted' });
        }
        lines.push(line);
      }
    }
  }
  return lines;
}

export interface HelpOverlayProps {
  /** The commands of this run (effectiveCommands(): read-only and remapped keys applied). */
  readonly commands: readonly Command[];
  readonly width: number;
  /** Rows including the title line. */
  readonly height: number;
  /** Lines scrolled off the top (clamped to the last page). */
  readonly scroll: number;
  readonly theme: Theme;
}

/** The whole keymap grouped by scope, scrollable, fitting width × height. */
export function HelpOverlay({ commands, width, height, scroll, theme }: HelpOverlayProps): ReactElement {
  const lines = helpLines(commands, width);
  const visible = Math.max(height - 1, 0);
  const first = clampScroll(scroll, lines.length, visible);
  const shown = lines.slice(first, first + visible);
  const position = lines.length > visible ? `${first + 1}-${first + shown.length}/${lines.length}` : '';
  const title = truncate('Key bindings (esc to close)', Math.max(width - displayWidth(position) - 1, 0), theme.symbols.ellipsis);
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      {height > 0 ? (
        <Text wrap="truncate">
          <Text {...colours(theme.color.header)} bold>
            {title}
          </Text>
          {position === '' ? '' : ' '.repeat(Math.max(width - displayWidth(title) - displayWidth(position), 1))}
          <Text {...colours(theme.color.muted)}>{position}</Text>
        </Text>
      ) : null}
      {shown.map((line, index) => (
        <Text key={first + index} wrap="truncate">
          {line.length === 0
            ? ' '
            : line.map((run, part) => (
                <Text key={part} {...colours(run.tone === undefined ? undefined : theme.color[run.tone])} bold={run.bold ?? false}>
                  {run.text}
                </Text>
              ))}
        </Text>
      ))}
    </Box>
  );
}
