/**
 * The console's UI state: one reducer, one `modal` union (never a set of booleans). Pure: no
 * React, no I/O. Screens read it; the key dispatcher and the action runner dispatch to it.
 */
import type { AlertTarget } from './alert-prompts.js';

export const views = ['overview', 'activity', 'pool', 'locks', 'tables', 'replication', 'queries', 'alerts', 'backups', 'help'] as const;
export type ViewId = (typeof views)[number];

/** The views Tab cycles through (help is an overlay, reached with ?). */
export const cycledViews: readonly ViewId[] = views.filter((view) => view !== 'help');

/** Names and aliases the palette accepts. */
export const viewAliases: Readonly<Record<string, ViewId>> = {
  overview: 'overview', home: 'overview',
  activity: 'activity', sessions: 'activity', act: 'activity',
  pool: 'pool', pools: 'pool', pgbouncer: 'pool', connections: 'pool',
  locks: 'locks', lock: 'locks', blocking: 'locks',
  tables: 'tables', bloat: 'tables', vacuum: 'tables',
  replication: 'replication', repl: 'replication', standbys: 'replication', slots: 'replication',
  queries: 'queries', slow: 'queries', statements: 'queries',
  alerts: 'alerts', backups: 'backups', help: 'help',
};

export interface SortState {
  /** A column id of the view's table. */
  readonly column: string;
  readonly descending: boolean;
}

/** A parsed filter: a case-insensitive regular expression, possibly negated ("!idle"). */
export interface Filter {
  readonly text: string;
  readonly negate: boolean;
  /** null when the text is not a valid regular expression (shown, and then nothing is filtered). */
  readonly pattern: RegExp | null;
}

/** What a detail pane shows. */
export type DetailTarget =
  | { readonly kind: 'session'; readonly pid: number }
  | { readonly kind: 'table'; readonly schema: string; readonly name: string }
  | { readonly kind: 'statement'; readonly key: string }
  /** A row of the Alerts view (an alert, a silence or a history event), by its row key. */
  | { readonly kind: 'alert'; readonly rowKey: string };

export interface Toast {
  readonly id: number;
  readonly level: 'info' | 'success' | 'warning' | 'error';
  readonly text: string;
  /** Epoch ms after which it disappears. */
  readonly until: number;
}

export type Modal =
  | { readonly kind: 'none' }
  | { readonly kind: 'palette'; readonly input: string; readonly error: string | null }
  | { readonly kind: 'filter'; readonly input: string }
  | { readonly kind: 'help' }
  | { readonly kind: 'detail'; readonly target: DetailTarget; readonly scroll: number }
  /** An action's plan, waiting for confirmation; `typed` is what the user typed so far when a name must be typed. */
  | { readonly kind: 'confirm'; readonly planId: string; readonly typed: string }
  /** An action running or just finished; closes with escape once done. */
  | { readonly kind: 'progress'; readonly planId: string }
  | { readonly kind: 'switcher'; readonly index: number }
  /** Stopping a cluster's running backup job (Esc on the Backups view), or quitting while one runs (q): asks first. */
  | { readonly kind: 'job.stop'; readonly cluster: string; readonly quit: boolean }
  /** Acknowledging an alert: the optional comment being typed. */
  | { readonly kind: 'acknowledge'; readonly target: AlertTarget; readonly input: string }
  /**
   * Silencing an alert's check and subject: first how long (a preset or a typed duration), then an
   * optional comment. `durationMs` is set once the duration is accepted.
   */
  | {
    readonly kind: 'silence';
    readonly target: AlertTarget;
    readonly step: 'duration' | 'comment';
    readonly input: string;
    readonly duration: string;
    readonly durationMs: number | null;
    readonly error: string | null;
  };

export interface ViewState {
  /** The key (rowKey) of the selected row, kept across refreshes and re-sorting. */
  readonly selectedKey: string | null;
  /** Index fallback when the selected key disappears. */
  readonly selectedIndex: number;
  readonly sort: SortState | null;
  readonly filter: Filter | null;
  /** Columns scrolled off to the left (the frozen key column stays). */
  readonly scrollX: number;
}

export interface UiState {
  readonly view: ViewId;
  readonly modal: Modal;
  readonly views: Readonly<Record<ViewId, ViewState>>;
  readonly paused: boolean;
  /** Sessions tagged for a bulk action (pids). */
  readonly tagged: readonly number[];
  readonly toasts: readonly Toast[];
  /** Indexes into the configured clusters and their nodes. */
  readonly target: { readonly cluster: number; readonly node: number };
  /** Incremented by ctrl+l to force a full redraw. */
  readonly redraws: number;
}

const emptyView: ViewState = { selectedKey: null, selectedIndex: 0, sort: null, filter: null, scrollX: 0 };

export function initialState(view: ViewId = 'overview', target: { readonly cluster: number; readonly node: number } = { cluster: 0, node: 0 }): UiState {
  return {
    view,
    modal: { kind: 'none' },
    views: Object.fromEntries(views.map((id) => [id, emptyView])) as Record<ViewId, ViewState>,
    paused: false,
    tagged: [],
    toasts: [],
    target,
    redraws: 0,
  };
}

/** Parses a filter prompt: "!re" negates; an invalid pattern keeps its text with pattern null. */
export function parseFilter(text: string): Filter | null {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed === '!') return null;
  const negate = trimmed.startsWith('!');
  const source = negate ? trimmed.slice(1) : trimmed;
  let pattern: RegExp | null;
  try {
    pattern = new RegExp(source, 'i');
  } catch {
    pattern = null;
  }
  return { text: trimmed, negate, pattern };
}

/** True when a row with these searchable fields passes the filter. */
export function matchesFilter(filter: Filter | null, fields: readonly (string | null)[]): boolean {
  if (filter === null || filter.pattern === null) return true;
  const pattern = filter.pattern;
  const hit = fields.some((field) => field !== null && pattern.test(field));
  return filter.negate ? !hit : hit;
}
