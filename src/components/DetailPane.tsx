/**
 * A bordered pane of text sections (a session's full query, its locks and waiters, its statement
 * statistics; a table's details), wrapped at the pane's width and scrolled vertically.
 */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, truncate } from '../format/text-table.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

const tabStop = '    ';

/**
 * Text broken into lines of at most `width` terminal columns (wide characters count 2): at spaces
 * where possible, inside a word when it is longer than a line. Newlines are kept (an empty line
 * stays empty), tabs become four spaces, other control characters a space, and the indentation of
 * each source line is kept on its first line.
 */
export function wrapText(text: string, width: number): string[] {
  if (width <= 0) return [];
  const lines: string[] = [];
  // eslint-disable-next-line no-control-regex -- control characters would move the cursor
  const paragraphs = text.replace(/\r\n?/g, '\n').replace(/\t/g, tabStop).replace(/[\u0000-\u0009\u000b-\u001f\u007f]/g, ' ').split('\n');
  for (const paragraph of paragraphs) {
    let line = '';
    let used = 0;
    let continuation = false;
    const flush = (): void => {
      lines.push(line.trimEnd());
      line = '';
      used = 0;
      continuation = true;
    };
    for (const token of paragraph.match(/\s+|\S+/g) ?? []) {
      const tokenWidth = displayWidth(token);
      if (/^\s/.test(token)) {
        // The space at a break disappears; indentation at the start of a source line stays.
        if (line === '' && continuation) continue;
        if (used + tokenWidth <= width) {
          line += token;
          used += tokenWidth;
        } else {
          flush();
        }
        continue;
      }
      if (used + tokenWidth > width && line.trim() !== '') flush();
      if (used + tokenWidth <= width) {
        line += token;
        used += tokenWidth;
        continue;
      }
      for (const char of token) {
        const charWidth = displayWidth(char);
        // A character wider than the whole line (width 1, a wide character) goes alone on its line.
        if (used + charWidth > width && used > 0) flush();
        line += char;
        used += charWidth;
      }
    }
    lines.push(line.trimEnd());
  }
  return lines;
}

/** "key   value" rows with the values aligned after the longest key. */
export function keyValueLines(pairs: readonly (readonly [string, string])[]): string[] {
  const keyWidth = Math.max(0, ...pairs.map(([key]) => displayWidth(key)));
  return pairs.map(([key, value]) => `${key}${' '.repeat(keyWidth - displayWidth(key))}  ${value}`);
}

export interface DetailSection {
  readonly heading: string;
  readonly lines: readonly string[];
}

export interface DetailPaneProps {
  readonly title: string;
  readonly sections: readonly DetailSection[];
  readonly width: number;
  /** Rows including the border. */
  readonly height: number;
  /** Content lines scrolled off the top (clamped: scrolling past the end shows the last page). */
  readonly scroll: number;
  readonly theme: Theme;
}

interface PaneLine {
  readonly text: string;
  readonly heading: boolean;
}

/** The section lines wrapped at `width`, a blank line between sections. */
export function detailLines(sections: readonly DetailSection[], width: number): readonly PaneLine[] {
  const out: PaneLine[] = [];
  sections.forEach((section, index) => {
    if (index > 0) out.push({ text: '', heading: false });
    out.push({ text: truncate(section.heading, width), heading: true });
    for (const line of section.lines) for (const wrapped of wrapText(line, width)) out.push({ text: wrapped, heading: false });
  });
  return out;
}

/** The first content line shown for a scroll offset: never past the last page, never negative. */
export function clampScroll(scroll: number, total: number, visible: number): number {
  return Math.min(Math.max(scroll, 0), Math.max(total - visible, 0));
}

/** A bordered, scrollable pane: title line, then the sections wrapped at the inner width. */
export function DetailPane({ title, sections, width, height, scroll, theme }: DetailPaneProps): ReactElement {
  // Border (1 each side) and padding (1 each side).
  const inner = Math.max(width - 4, 1);
  const visible = Math.max(height - 3, 0);
  const lines = detailLines(sections, inner);
  const first = clampScroll(scroll, lines.length, visible);
  const shown = lines.slice(first, first + visible);
  const position = lines.length > visible ? `${first + 1}-${first + shown.length}/${lines.length}` : '';
  const titleRoom = inner - (position === '' ? 0 : displayWidth(position) + 1);
  const titleText = truncate(title, Math.max(titleRoom, 0), theme.symbols.ellipsis);
  return (
    <Box flexDirection="column" width={Math.max(width, 0)} height={Math.max(height, 0)} borderStyle={theme.borderStyle} {...(theme.color.accent === undefined ? {} : { borderColor: theme.color.accent })} paddingX={1} flexShrink={0}>
      <Text wrap="truncate">
        <Text {...colours(theme.color.header)} bold>
          {titleText}
        </Text>
        {position === '' ? '' : ' '.repeat(Math.max(inner - displayWidth(titleText) - displayWidth(position), 1))}
        <Text {...colours(theme.color.muted)}>{position}</Text>
      </Text>
      {shown.map((line, index) =>
        line.heading ? (
          <Text key={index} {...colours(theme.color.accent)} bold wrap="truncate">
            {line.text}
          </Text>
        ) : (
          <Text key={index} wrap="truncate">
            {/* An empty Text has no height: a blank line needs a space. */}
            {line.text === '' ? ' ' : line.text}
          </Text>
        ),
      )}
    </Box>
  );
}
