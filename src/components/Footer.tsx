/** The key hints at the bottom, generated from the keymap so they can never disagree with it. */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, truncate } from '../format/text-table.js';
import { keyLabel, type Command, type Scope } from '../keymap.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

/** Re-exported: the footer shows keys as the keymap names them. */
export { keyLabel };

/** A key hint as the footer shows it. */
export interface Hint {
  readonly id: string;
  readonly key: string;
  readonly hint: string;
}

/** The "key hint" pairs for these scopes, most specific scope first, skipping keys a more specific scope shadows. */
export function footerHints(commands: readonly Command[], scopes: readonly Scope[]): readonly Hint[] {
  const hints: Hint[] = [];
  const bound = new Set<string>();
  for (const scope of scopes) {
    const inScope = commands.filter((command) => command.scope === scope);
    for (const command of inScope) {
      const key = command.keys.find((candidate) => !bound.has(candidate));
      if (command.hint !== undefined && key !== undefined) hints.push({ id: command.id, key: keyLabel(key), hint: command.hint });
    }
    // Marked after the scope: keys of one scope never shadow each other.
    for (const command of inScope) for (const key of command.keys) bound.add(key);
  }
  return hints;
}

export interface FooterProps {
  /** The commands of this run (effectiveCommands(): read-only and remapped keys applied). */
  readonly commands: readonly Command[];
  /** The active scopes, most specific first (scopesFor()). */
  readonly scopes: readonly Scope[];
  readonly width: number;
  readonly theme: Theme;
  /** A one-off message (why a key did nothing…), shown before the hints. */
  readonly message?: string | null | undefined;
}

const pairWidth = (pair: Hint): number => displayWidth(`${pair.key} ${pair.hint}`);

/**
 * What fits of the hints in `room` columns: whole pairs only, an ellipsis where some were left
 * out, and the help hint kept last whatever else goes, since help lists everything that went.
 */
export function fitHints(hints: readonly Hint[], room: number, ellipsis: string): { shown: readonly Hint[]; cut: boolean; pinned: Hint | null } {
  const total = hints.reduce((sum, pair, index) => sum + (index === 0 ? 0 : 2) + pairWidth(pair), 0);
  if (total <= room) return { shown: hints, cut: false, pinned: null };
  const help = hints.find((pair) => pair.id === 'help');
  const pinned = help !== undefined && pairWidth(help) + 2 + displayWidth(ellipsis) <= room ? help : null;
  let budget = room - displayWidth(ellipsis) - (pinned === null ? 0 : 2 + pairWidth(pinned));
  const shown: Hint[] = [];
  for (const pair of hints) {
    if (pair === pinned) continue;
    const width = pairWidth(pair) + 2;
    if (width > budget) break;
    shown.push(pair);
    budget -= width;
  }
  return { shown, cut: true, pinned };
}

/** Key hints for the active scopes ("q quit  ? help"), with an optional message first; one line. */
export function Footer({ commands, scopes, width, theme, message }: FooterProps): ReactElement {
  const lead = message === undefined || message === null || message === '' ? '' : truncate(message, width, theme.symbols.ellipsis);
  const room = width - displayWidth(lead) - (lead === '' ? 0 : 2);
  const { shown, cut, pinned } = fitHints(footerHints(commands, scopes), room, theme.symbols.ellipsis);
  const pair = (hint: Hint, first: boolean): ReactElement => (
    <Text key={hint.id}>
      {first ? '' : '  '}
      <Text {...colours(theme.color.accent)} bold>
        {hint.key}
      </Text>
      <Text {...colours(theme.color.muted)}>{` ${hint.hint}`}</Text>
    </Text>
  );
  return (
    <Box width={Math.max(width, 0)} flexShrink={0}>
      <Text wrap="truncate">
        {lead === '' ? null : <Text {...colours(theme.color.warning)}>{lead}</Text>}
        {shown.map((hint, index) => pair(hint, index === 0 && lead === ''))}
        {cut && room > 0 ? <Text {...colours(theme.color.muted)}>{`${shown.length === 0 && lead === '' ? '' : '  '}${theme.symbols.ellipsis}`}</Text> : null}
        {pinned === null ? null : pair(pinned, false)}
      </Text>
    </Box>
  );
}
