/**
 * Colours as named tokens, 16-colour safe (the eight ANSI colours and their bright variants, which
 * every terminal and tmux render). NO_COLOR (https://no-color.org) turns every token into no colour;
 * --ascii (or a non-UTF-8 locale) swaps box drawing and symbols for ASCII.
 */

export interface Theme {
  readonly color: {
    readonly text: string | undefined;
    readonly muted: string | undefined;
    readonly accent: string | undefined;
    readonly selectedBackground: string | undefined;
    readonly selectedText: string | undefined;
    readonly ok: string | undefined;
    readonly warning: string | undefined;
    readonly critical: string | undefined;
    readonly stale: string | undefined;
    readonly header: string | undefined;
  };
  readonly symbols: {
    readonly ellipsis: string;
    readonly treeBranch: string;
    readonly treeLast: string;
    readonly treePipe: string;
    readonly sortAscending: string;
    readonly sortDescending: string;
    readonly tagged: string;
    readonly sparkline: readonly string[];
    readonly separator: string;
  };
  readonly borderStyle: 'round' | 'classic';
}

const unicodeSymbols: Theme['symbols'] = {
  ellipsis: '…',
  treeBranch: '├─',
  treeLast: '└─',
  treePipe: '│ ',
  sortAscending: '▲',
  sortDescending: '▼',
  tagged: '●',
  sparkline: ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'],
  separator: '│',
};

const asciiSymbols: Theme['symbols'] = {
  ellipsis: '~',
  treeBranch: '|-',
  treeLast: '`-',
  treePipe: '| ',
  sortAscending: '^',
  sortDescending: 'v',
  tagged: '*',
  sparkline: ['_', '.', '-', '~', '=', '+', '*', '#'],
  separator: '|',
};

const colours: Theme['color'] = {
  text: undefined,
  muted: 'gray',
  accent: 'cyan',
  selectedBackground: 'blue',
  selectedText: 'whiteBright',
  ok: 'green',
  warning: 'yellow',
  critical: 'red',
  stale: 'magenta',
  header: 'cyanBright',
};

const noColours: Theme['color'] = Object.fromEntries(Object.keys(colours).map((key) => [key, undefined])) as unknown as Theme['color'];

/** The theme for these conditions. */
export function makeTheme(options: { readonly color: boolean; readonly ascii: boolean }): Theme {
  return {
    color: options.color ? colours : noColours,
    symbols: options.ascii ? asciiSymbols : unicodeSymbols,
    borderStyle: options.ascii ? 'classic' : 'round',
  };
}

/** Colour unless NO_COLOR is set (to anything) or the terminal is dumb; ASCII unless the locale is UTF-8. */
export function themeFromEnvironment(env: Readonly<Record<string, string | undefined>>, flags: { readonly ascii?: boolean } = {}): Theme {
  const color = env['NO_COLOR'] === undefined && env['TERM'] !== 'dumb';
  const locale = env['LC_ALL'] ?? env['LC_CTYPE'] ?? env['LANG'] ?? '';
  const ascii = flags.ascii === true || (locale !== '' && !/utf-?8/i.test(locale));
  return makeTheme({ color, ascii });
}
