/** The top of the console: who and what is being watched, whether the data is fresh, and the views. */
import { Box, Text } from 'ink';
import type { ReactElement } from 'react';
import { displayWidth, truncate } from '../format/text-table.js';
import { formatDuration } from '../format/units.js';
import { clockTime } from './ProbeStatus.js';
import { colours } from './Styled.js';
import type { Theme } from './theme.js';

export interface HeaderProps {
  /** The target being watched, e.g. "prod / db1 (postgres@db1:5432/postgres)". */
  readonly target: string;
  /** "primary" or "standby" from the server probe; null while unknown. */
  readonly role: string | null;
  readonly paused: boolean;
  /** When the last refresh finished; null before the first one. */
  readonly lastRefresh: Date | null;
  readonly now: Date;
  readonly width: number;
  readonly theme: Theme;
  readonly viewTitle: string;
  /** Older data than this reads "stale" (default 15 s: several missed refreshes). */
  readonly staleAfterMs?: number | undefined;
}

type Tone = 'muted' | 'warning' | 'stale';

/** "paused", "waiting for data", "refreshed 3s ago" or "stale: refreshed 1m05s ago", with its tone. */
export function refreshStatus(paused: boolean, lastRefresh: Date | null, now: Date, staleAfterMs = 15_000): { text: string; tone: Tone } {
  if (paused) return { text: 'paused', tone: 'warning' };
  if (lastRefresh === null) return { text: 'waiting for data', tone: 'muted' };
  const ageMs = Math.max(0, now.getTime() - lastRefresh.getTime());
  const seconds = Math.floor(ageMs / 1000);
  // formatDuration writes "3.0s" below ten seconds: whole seconds read better in a header.
  const age = seconds < 60 ? `${seconds}s` : formatDuration(seconds);
  if (ageMs > staleAfterMs) return { text: `stale: refreshed ${age} ago`, tone: 'stale' };
  return { text: `refreshed ${age} ago`, tone: 'muted' };
}

/** The header's parts once fitted: the target gives way first, then the view title. */
export function headerParts(props: HeaderProps): { left: string; status: { text: string; tone: Tone }; clock: string; gap: number } {
  const { target, role, paused, lastRefresh, now, width, theme, viewTitle, staleAfterMs } = props;
  const separator = ` ${theme.symbols.separator} `;
  const status = refreshStatus(paused, lastRefresh, now, staleAfterMs);
  const clock = clockTime(now);
  const right = `${status.text}  ${clock}`;
  const room = width - displayWidth(right) - 2;
  const build = (title: string | null, shownTarget: string): string =>
    ['pgwarden', ...(title === null ? [] : [title]), shownTarget, ...(role === null ? [] : [role])].join(separator);
  let left = build(viewTitle, target);
  if (displayWidth(left) > room) {
    const withoutTarget = displayWidth(build(viewTitle, ''));
    const targetRoom = room - withoutTarget;
    // Below a few columns the target is unreadable: drop the view title (the tabs show it) instead.
    left = targetRoom >= 8 ? build(viewTitle, truncate(target, targetRoom, theme.symbols.ellipsis)) : build(null, truncate(target, Math.max(room - displayWidth(build(null, '')), 1), theme.symbols.ellipsis));
  }
  if (room <= 0 || displayWidth(left) > room) {
    // Too narrow for everything: the clock and status go, the identity stays.
    return { left: truncate(build(null, target), width, theme.symbols.ellipsis), status: { text: '', tone: 'muted' }, clock: '', gap: 0 };
  }
  return { left, status, clock, gap: width - displayWidth(left) - displayWidth(right) };
}

/** One line: product, view, target, role, refresh status and clock, exactly `width` columns at most. */
export function Header(props: HeaderProps): ReactElement {
  const { theme, width } = props;
  const parts = headerParts(props);
  return (
    <Box width={Math.max(width, 0)} flexShrink={0}>
      <Text wrap="truncate">
        <Text {...colours(theme.color.header)} bold>
          {parts.left}
        </Text>
        {' '.repeat(Math.max(parts.gap, 0))}
        <Text {...colours(theme.color[parts.status.tone])}>{parts.status.text}</Text>
        {parts.clock === '' ? '' : `  ${parts.clock}`}
      </Text>
    </Box>
  );
}

export interface TabView {
  readonly id: string;
  readonly title: string;
  /** The key that opens it, e.g. "4". */
  readonly key: string;
}

export interface TabsProps {
  readonly views: readonly TabView[];
  readonly current: string;
  readonly width: number;
  readonly theme: Theme;
}

/**
 * The tabs as text: "1 Overview [2 Activity] 3 Pool …", the current one in brackets so it shows
 * without colour. When they do not fit, the other titles are shortened (the current one never),
 * then reduced to their keys, then the line is cut.
 */
export function tabsLine(views: readonly TabView[], current: string, width: number, ellipsis: string): { before: string; current: string; after: string } {
  const label = (view: TabView, titleWidth: number | null): string => {
    if (view.id === current) return `[${view.key} ${view.title}]`;
    if (titleWidth === null) return `${view.key} ${view.title}`;
    if (titleWidth === 0) return view.key;
    return `${view.key} ${truncate(view.title, titleWidth, ellipsis)}`;
  };
  const attempt = (titleWidth: number | null): { before: string; current: string; after: string } => {
    const index = views.findIndex((view) => view.id === current);
    const before = views.slice(0, Math.max(index, 0)).map((view) => label(view, titleWidth)).join(' ');
    const currentView = index >= 0 ? views[index] : undefined;
    const after = views.slice(index + 1).map((view) => label(view, titleWidth)).join(' ');
    const middle = currentView === undefined ? '' : label(currentView, titleWidth);
    return { before, current: middle, after };
  };
  const widthOf = (parts: { before: string; current: string; after: string }): number =>
    displayWidth([parts.before, parts.current, parts.after].filter((part) => part !== '').join(' '));
  const longest = Math.max(0, ...views.map((view) => displayWidth(view.title)));
  for (const titleWidth of [null, ...Array.from({ length: longest }, (_, i) => longest - 1 - i)]) {
    // A title cut to one column is only an ellipsis: keys alone read better.
    if (titleWidth !== null && titleWidth > 0 && titleWidth < 3) continue;
    const parts = attempt(titleWidth);
    if (widthOf(parts) <= width) return parts;
  }
  const parts = attempt(0);
  const line = [parts.before, parts.current, parts.after].filter((part) => part !== '').join(' ');
  return { before: truncate(line, width, ellipsis), current: '', after: '' };
}

/** The view tabs on one line, the current one highlighted (and bracketed for NO_COLOR). */
export function Tabs({ views, current, width, theme }: TabsProps): ReactElement {
  const parts = tabsLine(views, current, width, theme.symbols.ellipsis);
  return (
    <Box width={Math.max(width, 0)} flexShrink={0}>
      <Text wrap="truncate" {...colours(theme.color.muted)}>
        {parts.before}
        {parts.before !== '' && parts.current !== '' ? ' ' : ''}
        <Text {...colours(theme.color.selectedText, theme.color.selectedBackground)} bold>
          {parts.current}
        </Text>
        {parts.after !== '' && (parts.current !== '' || parts.before !== '') ? ' ' : ''}
        {parts.after}
      </Text>
    </Box>
  );
}
