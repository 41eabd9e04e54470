/** Plain-text tables for batch output (`pgwarden show`), measured in terminal columns. */

/** Terminal width of one character: 2 for East Asian wide and emoji, 0 for combining marks. */
function charWidth(codePoint: number): number {
  if (codePoint === 0 || (codePoint >= 0x300 && codePoint <= 0x36f) || codePoint === 0x200d) return 0;
  if (
    (codePoint >= 0x1100 && codePoint <= 0x115f) ||
    (codePoint >= 0x2e80 && codePoint <= 0xa4cf) ||
    (codePoint >= 0xac00 && codePoint <= 0xd7a3) ||
    (codePoint >= 0xf900 && codePoint <= 0xfaff) ||
    (codePoint >= 0xfe30 && codePoint <= 0xfe4f) ||
    (codePoint >= 0xff00 && codePoint <= 0xff60) ||
    (codePoint >= 0xffe0 && codePoint <= 0xffe6) ||
    (codePoint >= 0x1f300 && codePoint <= 0x1faff) ||
    (codePoint >= 0x20000 && codePoint <= 0x3fffd)
  ) {
    return 2;
  }
  return 1;
}

/** The number of terminal columns a string occupies. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const char of text) width += charWidth(char.codePointAt(0) ?? 0);
  return width;
}

/** Cuts text to at most `width` columns, ending with an ellipsis when cut; control characters become spaces. */
export function truncate(text: string, width: number, ellipsis = '…'): string {
  // eslint-disable-next-line no-control-regex -- control characters would move the cursor
  const clean = text.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  if (displayWidth(clean) <= width) return clean;
  const room = width - displayWidth(ellipsis);
  let out = '';
  let used = 0;
  for (const char of clean) {
    const w = charWidth(char.codePointAt(0) ?? 0);
    if (used + w > room) break;
    out += char;
    used += w;
  }
  return room > 0 ? out + ellipsis : out;
}

/** Pads to exactly `width` columns (after truncating). */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  const cut = truncate(text, width);
  const pad = ' '.repeat(Math.max(0, width - displayWidth(cut)));
  return align === 'left' ? cut + pad : pad + cut;
}

export interface TextColumn {
  readonly title: string;
  readonly align: 'left' | 'right';
  /** Upper bound for this column's width; the widest cell decides below it. */
  readonly maxWidth: number;
}

/** Renders rows of cells as aligned columns with a header line. */
export function renderTextTable(columns: readonly TextColumn[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((column, index) =>
    Math.min(column.maxWidth, Math.max(displayWidth(column.title), ...rows.map((row) => displayWidth(row[index] ?? '')))),
  );
  const line = (cells: readonly string[]): string =>
    columns.map((column, index) => fit(cells[index] ?? '', widths[index] ?? 0, column.align)).join('  ').trimEnd();
  return [line(columns.map((column) => column.title)), ...rows.map(line)].join('\n');
}
