/** The one-line prompts: the command palette (":locks") and the row filter ("/idle"). */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, truncate } from '../format/text-table.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

/**
 * The prompt text with its cursor, cut from the left when the input is longer than the line, so
 * that what is being typed stays visible.
 */
export function promptLine(sigil: string, input: string, width: number, ellipsis: string): string {
  const full = `${sigil}${input}_`;
  if (displayWidth(full) <= width) return full;
  const chars = Array.from(`${input}_`);
  let tail = '';
  const room = width - displayWidth(sigil) - displayWidth(ellipsis);
  for (let index = chars.length - 1; index >= 0; index -= 1) {
    const candidate = (chars[index] ?? '') + tail;
    if (displayWidth(candidate) > room) break;
    tail = candidate;
  }
  return truncate(sigil + ellipsis + tail, width, ellipsis);
}

/**
 * Names matching the input, best first: prefix, then substring; when none, those with the input's
 * letters in order ("lcks" → "locks"). Every name when the input is empty.
 */
export function matchNames(input: string, names: readonly string[]): readonly string[] {
  // A ":" typed again is not part of the name (":locks" in the palette means "locks").
  const wanted = input.trim().replace(/^:/, '').toLowerCase();
  const unique = [...new Set(names)];
  if (wanted === '') return unique;
  const subsequence = (name: string): boolean => {
    let at = 0;
    for (const char of name) if (char === wanted[at]) at += 1;
    return at === wanted.length;
  };
  const lower = (name: string): string => name.toLowerCase();
  const prefix = unique.filter((name) => lower(name).startsWith(wanted));
  const inside = unique.filter((name) => !lower(name).startsWith(wanted) && lower(name).includes(wanted));
  if (prefix.length > 0 || inside.length > 0) return [...prefix, ...inside];
  // Letters in order are a guess at a typo: only worth showing when nothing matches better.
  return unique.filter((name) => subsequence(lower(name)));
}

/** Names joined by two spaces, as many whole names as fit in `width`. */
function nameList(names: readonly string[], width: number, ellipsis: string): string {
  let out = '';
  for (const [index, name] of names.entries()) {
    const next = out === '' ? name : `${out}  ${name}`;
    const more = index < names.length - 1 ? 2 + displayWidth(ellipsis) : 0;
    if (displayWidth(next) + more > width) return out === '' ? truncate(name, width, ellipsis) : `${out}  ${ellipsis}`;
    out = next;
  }
  return out;
}

export interface PalettePromptProps {
  readonly input: string;
  /** Why the last entry was refused, e.g. "no view named 'lcks'". */
  readonly error: string | null;
  /** The names the palette accepts (views and aliases): those matching the input are suggested, best first. */
  readonly suggestions: readonly string[];
  readonly width: number;
  readonly theme: Theme;
}

/** ":" + input + cursor, the error when the last entry was refused, and the matching names. */
export function PalettePrompt({ input, error, suggestions, width, theme }: PalettePromptProps): ReactElement {
  const matches = matchNames(input, suggestions);
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      <Text {...colours(theme.color.accent)} bold wrap="truncate">
        {promptLine(':', input, width, theme.symbols.ellipsis)}
      </Text>
      {error === null ? null : (
        <Text {...colours(theme.color.critical)} wrap="truncate">
          {truncate(error, width, theme.symbols.ellipsis)}
        </Text>
      )}
      {matches.length === 0 ? null : (
        <Text {...colours(theme.color.muted)} wrap="truncate">
          {nameList(matches, width, theme.symbols.ellipsis)}
        </Text>
      )}
    </Box>
  );
}

/** Why a filter text is not a valid regular expression ("!" negates), or null when it is. */
export function filterError(input: string): string | null {
  const trimmed = input.trim();
  const source = trimmed.startsWith('!') ? trimmed.slice(1) : trimmed;
  try {
    new RegExp(source, 'i');
    return null;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // V8 repeats the pattern in its message ("Invalid regular expression: /(/i: Unterminated group").
    return `invalid regular expression: ${message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /, '')}`;
  }
}

export interface FilterPromptProps {
  readonly input: string;
  readonly width: number;
  readonly theme: Theme;
  /** Overrides the built-in check of the regular expression. */
  readonly error?: string | null | undefined;
}

/** "/" + input + cursor, and the reason when the input is not a valid regular expression. */
export function FilterPrompt({ input, width, theme, error }: FilterPromptProps): ReactElement {
  const problem = error === undefined ? filterError(input) : error;
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} flexShrink={0}>
      <Text {...colours(theme.color.accent)} bold wrap="truncate">
        {promptLine('/', input, width, theme.symbols.ellipsis)}
      </Text>
      {problem === null ? null : (
        <Text {...colours(theme.color.critical)} wrap="truncate">
          {truncate(problem, width, theme.symbols.ellipsis)}
        </Text>
      )}
    </Box>
  );
}
