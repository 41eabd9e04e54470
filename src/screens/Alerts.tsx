/**
 * Alerts: the console's own alert engine (src/app/alert-monitor.ts). Firing alerts worst first,
 * then pending, unknown, silenced or acknowledged ones (with the silences themselves), then the
 * recent history. Each row: severity, check, subject, cluster/node, value against threshold and
 * since when. Enter opens the detail pane (message, context, runbook); acknowledging and
 * silencing are keys of this view (src/keymap.ts). The console sends no notice: the screen says
 * whether a watcher keeps its state in the configured state directory.
 */
import { Box } from 'ink';
import type { ReactElement } from 'react';
import type { ViewState } from '../app/state.js';
import {
  alertRowKey, alertSections, elapsed, eventRowKey, mutedState, placeOf, silenceRowKey, timeOfDay, valueAgainst,
  type AlertEntry, type AlertsView,
} from '../app/alerts-view.js';
import type { AlertEvent, AlertRecord, AlertSeverity, Silence } from '../alerts/types.js';
import { severityRank } from '../alerts/state.js';
import { sortRows } from '../components/table-sort.js';
import type { ColumnSpec } from '../components/table-types.js';
import { effectiveSort, filterRows, PartsLine, ScreenFrame, Sections, selectedIndexOf, TextLine, type Part, type Section, type Tone } from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';

/** One line of the Alerts view. */
export type AlertRow =
  | { readonly kind: 'alert'; readonly key: string; readonly entry: AlertEntry }
  | { readonly kind: 'silence'; readonly key: string; readonly silence: Silence }
  /** `current` is the alert the event is about as it is now (undefined once forgotten). */
  | { readonly kind: 'event'; readonly key: string; readonly event: AlertEvent; readonly current: AlertRecord | undefined };

/** The view's rows by section, filtered and sorted, in the order shown. */
export interface AlertParts {
  readonly firing: readonly AlertRow[];
  readonly pending: readonly AlertRow[];
  readonly unknown: readonly AlertRow[];
  /** Silenced or acknowledged alerts, then the silences. */
  readonly muted: readonly AlertRow[];
  readonly history: readonly AlertRow[];
}

/** Worst first; the user's sort orders the rows inside each section. */
export const alertsDefaultSort = { column: 'severity', descending: true } as const;

function severityTone(severity: AlertSeverity): Tone | undefined {
  switch (severity) {
    case 'critical':
      return 'critical';
    case 'warning':
      return 'warning';
    case 'unknown':
      return 'stale';
    case 'info':
      return undefined;
  }
}

function alertOf(row: AlertRow): AlertRecord | undefined {
  return row.kind === 'alert' ? row.entry.alert : undefined;
}

/** cluster, node, check and subject of any row (a silence's matchers, "*" when it has none). */
function identity(row: AlertRow): { readonly place: string; readonly checkId: string; readonly subject: string } {
  if (row.kind === 'alert') return { place: placeOf(row.entry.alert), checkId: row.entry.alert.checkId, subject: row.entry.alert.subject };
  if (row.kind === 'event') return { place: placeOf(row.event), checkId: row.event.checkId, subject: row.event.subject };
  const { silence } = row;
  return { place: `${silence.cluster ?? '*'}/${silence.node ?? '*'}`, checkId: silence.checkId ?? '*', subject: silence.subject ?? '*' };
}

function severityText(row: AlertRow): string {
  if (row.kind === 'silence') return 'silence';
  return row.kind === 'alert' ? row.entry.alert.severity : row.event.severity;
}

function rowTone(row: AlertRow): Tone | undefined {
  if (row.kind === 'silence') return 'muted';
  if (row.kind === 'event') return row.event.kind === 'resolved' ? 'ok' : severityTone(row.event.severity);
  return row.entry.section === 'muted' || row.entry.section === 'pending' ? 'muted' : severityTone(row.entry.alert.severity);
}

const severityColumn: ColumnSpec<AlertRow> = {
  id: 'severity', title: 'severity', width: 8, text: severityText, tone: rowTone,
  sortValue: (row) => (row.kind === 'silence' ? null : severityRank(row.kind === 'alert' ? row.entry.alert.severity : row.event.severity)),
};
const checkColumn: ColumnSpec<AlertRow> = { id: 'check', title: 'check', width: 19, text: (row) => identity(row).checkId };
const subjectColumn: ColumnSpec<AlertRow> = { id: 'subject', title: 'subject', width: 'flex', minWidth: 12, text: (row) => identity(row).subject };
const whereColumn: ColumnSpec<AlertRow> = { id: 'where', title: 'node', width: 11, text: (row) => identity(row).place };
const valueColumn: ColumnSpec<AlertRow> = {
  id: 'value', title: 'value / limit', width: 17,
  text: (row) => {
    const finding = row.kind === 'alert' ? row.entry.alert.finding : row.kind === 'event' ? row.event.finding : undefined;
    return finding === undefined ? '' : valueAgainst(finding.value, finding.threshold, finding.unit);
  },
  sortValue: (row) => alertOf(row)?.finding.value ?? null,
};

/** Since when: firing since (else first seen) for alerts, start for silences. */
function sinceColumn(now: Date): ColumnSpec<AlertRow> {
  const start = (row: AlertRow): number | null => {
    if (row.kind === 'alert') return row.entry.alert.firingSince ?? row.entry.alert.firstSeen;
    if (row.kind === 'silence') return row.silence.startsAt;
    return null;
  };
  return {
    id: 'since', title: 'since', width: 6, align: 'right',
    text: (row) => {
      const at = start(row);
      return at === null ? '' : elapsed(at, now);
    },
    // Older first when descending: the longest-standing alert is the one to look at.
    sortValue: (row) => {
      const at = start(row);
      return at === null ? null : -at;
    },
  };
}

function noteText(row: AlertRow): string {
  if (row.kind !== 'alert') return '';
  const notes = [row.entry.alert.flapping ? 'flapping' : '', row.entry.inhibited === null ? '' : `muted: ${row.entry.inhibited}`];
  return notes.filter((note) => note !== '').join(', ');
}

function stateText(row: AlertRow): string {
  if (row.kind === 'alert') return mutedState(row.entry);
  if (row.kind === 'silence') return `until ${timeOfDay(row.silence.endsAt).slice(0, 5)} by ${row.silence.author}: ${row.silence.comment}`;
  return '';
}

/** The columns of the firing, pending and unknown sections (the model's columns). */
export function activeColumns(now: Date): readonly ColumnSpec<AlertRow>[] {
  return [severityColumn, checkColumn, subjectColumn, whereColumn, valueColumn, sinceColumn(now), { id: 'note', title: 'note', width: 30, text: noteText }];
}

/** The columns of the silenced or acknowledged section. */
function mutedColumns(now: Date): readonly ColumnSpec<AlertRow>[] {
  return [severityColumn, checkColumn, subjectColumn, whereColumn, { id: 'state', title: 'state', width: 'flex', minWidth: 18, text: stateText }, sinceColumn(now)];
}

/** The columns of the history section. */
function historyColumns(): readonly ColumnSpec<AlertRow>[] {
  const event = (row: AlertRow): AlertEvent | undefined => (row.kind === 'event' ? row.event : undefined);
  return [
    { id: 'time', title: 'time', width: 8, text: (row) => { const e = event(row); return e === undefined ? '' : timeOfDay(e.at); } },
    { id: 'event', title: 'event', width: 12, text: (row) => event(row)?.kind ?? '', tone: rowTone },
    // A wider subject at 80 columns: the value would only show its first characters there.
    severityColumn, checkColumn, { ...subjectColumn, minWidth: 15 }, whereColumn, valueColumn,
  ];
}

function fieldsOf(row: AlertRow): readonly (string | null)[] {
  const { place, checkId, subject } = identity(row);
  const message = row.kind === 'alert' ? row.entry.alert.finding.message : row.kind === 'event' ? row.event.finding.message : row.silence.comment;
  return [place, checkId, subject, severityText(row), message];
}

const empty: AlertParts = { firing: [], pending: [], unknown: [], muted: [], history: [] };

/** The rows of each section: filtered by the view's filter, alerts sorted by its sort inside their section. */
export function alertParts(view: AlertsView | undefined, viewState: ViewState, now: Date): AlertParts {
  if (view === undefined) return empty;
  const sections = alertSections(view, now);
  const columns = activeColumns(now);
  const sort = effectiveSort(viewState, alertsDefaultSort);
  const rows = (entries: readonly AlertEntry[]): readonly AlertRow[] =>
    sortRows(filterRows(entries.map((entry): AlertRow => ({ kind: 'alert', key: alertRowKey(entry.alert.key), entry })), viewState.filter, fieldsOf), columns, sort);
  const silences = sections.silences.map((silence): AlertRow => ({ kind: 'silence', key: silenceRowKey(silence.id), silence }));
  const history = sections.history.map((event): AlertRow => ({ kind: 'event', key: eventRowKey(event), event, current: view.engine.alerts[event.key] }));
  return {
    firing: rows(sections.firing),
    pending: rows(sections.pending),
    unknown: rows(sections.unknown),
    muted: [...rows(sections.muted), ...filterRows(silences, viewState.filter, fieldsOf)],
    history: filterRows(history, viewState.filter, fieldsOf),
  };
}

function flatten(parts: AlertParts): readonly AlertRow[] {
  return [...parts.firing, ...parts.pending, ...parts.unknown, ...parts.muted, ...parts.history];
}

const rowKey = (row: AlertRow): string => row.key;

let last: { alerts: AlertsView | undefined; viewState: ViewState; model: ListModel<AlertRow> } | undefined;

/** Every row of the view in the order shown, for the cursor. */
export function alertsModel(props: ScreenProps): ListModel<AlertRow> {
  if (last !== undefined && last.alerts === props.alerts && last.viewState === props.viewState) return last.model;
  const model: ListModel<AlertRow> = { rows: flatten(alertParts(props.alerts, props.viewState, props.now)), columns: activeColumns(props.now), rowKey, defaultSort: alertsDefaultSort };
  last = { alerts: props.alerts, viewState: props.viewState, model };
  return model;
}

/** What a row designates, for the keys of this view and the detail pane. */
export function alertSelection(row: AlertRow): Selection {
  if (row.kind === 'silence') return { kind: 'alert', rowKey: row.key, target: null, status: null, acknowledged: false, silenceId: row.silence.id };
  const alert = row.kind === 'alert' ? row.entry.alert : row.current;
  const source = row.kind === 'alert' ? row.entry.alert : row.event;
  return {
    kind: 'alert',
    rowKey: row.key,
    target: { key: source.key, cluster: source.cluster, node: source.node, checkId: source.checkId, subject: source.subject },
    status: alert?.status ?? null,
    acknowledged: alert?.acknowledged != null,
    silenceId: row.kind === 'alert' ? (row.entry.silence?.id ?? null) : null,
  };
}

/**
 * Lines for stacked sections in `room` lines: each gets its title, header and first row while
 * there is room, in the order shown (the worst first), then its other rows in the same order.
 */
export function alertSectionHeights(rows: readonly number[], room: number): readonly number[] {
  const need = rows.map((count) => 2 + Math.max(1, count));
  let left = Math.max(0, room);
  const heights = need.map((n) => {
    const base = Math.min(n, 3, left);
    left -= base;
    return base;
  });
  return heights.map((height, index) => {
    const more = Math.min((need[index] ?? 0) - height, left);
    left -= more;
    return height + more;
  });
}

function summaryParts(view: AlertsView, parts: AlertParts, props: ScreenProps): Part[] {
  const firing = parts.firing.flatMap((row) => alertOf(row) ?? []);
  const critical = firing.filter((alert) => alert.severity === 'critical').length;
  const warning = firing.filter((alert) => alert.severity === 'warning').length;
  const out: Part[] = [
    { text: `${firing.length} firing`, tone: critical > 0 ? 'critical' : warning > 0 ? 'warning' : firing.length > 0 ? undefined : 'ok' },
    { text: firing.length === 0 ? '' : ` (${critical} critical, ${warning} warning)` },
    { text: ` · ${parts.pending.length} pending`, tone: parts.pending.length > 0 ? 'muted' : undefined },
    { text: ` · ${parts.unknown.length} unknown`, tone: parts.unknown.length > 0 ? 'stale' : undefined },
    { text: ` · ${parts.muted.filter((row) => row.kind === 'alert').length} silenced or acked` },
    { text: view.evaluatedAt === null ? ' · no evaluation yet' : ` · evaluated ${timeOfDay(view.evaluatedAt)}`, tone: 'muted' },
  ];
  const filter = props.viewState.filter;
  if (filter !== null) {
    out.push({ text: filter.pattern === null ? ` · filter ${filter.text}: not a valid regular expression` : ` · filter ${filter.text}: ${flatten(parts).length} rows`, tone: 'accent' });
  }
  return out;
}

/** The line about notices: the console sends none; a watcher does when its state is there. */
export function watcherLine(view: AlertsView): Part {
  return view.watcher
    ? { text: `watcher state in ${view.stateDir}: acknowledgements and silences are also queued for the watcher`, tone: 'muted' }
    : { text: `no watcher state in ${view.stateDir}: these alerts are this console's own and no notice is sent (pgwarden --watch sends them)`, tone: 'warning' };
}

function AlertsScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const view = props.alerts;
  if (view === undefined) {
    return (
      <ScreenFrame width={width} height={height}>
        <TextLine text="the alert engine is not running in this console" width={width} theme={theme} tone="muted" />
      </ScreenFrame>
    );
  }
  const parts = alertParts(view, viewState, now);
  const model = alertsModel(props);
  const total = Object.keys(view.engine.alerts).length + view.engine.silences.length + view.history.length;
  const header = (
    <>
      <PartsLine parts={summaryParts(view, parts, props)} width={width} theme={theme} />
      <PartsLine parts={[watcherLine(view)]} width={width} theme={theme} />
    </>
  );
  if (total === 0) {
    const text = view.evaluatedAt === null
      ? `waiting for the first evaluation: ${view.checks} checks on ${view.nodes} ${view.nodes === 1 ? 'node' : 'nodes'}…`
      : `no alert: every check passed at the last evaluation (${view.checks} checks on ${view.nodes} ${view.nodes === 1 ? 'node' : 'nodes'})`;
    return (
      <ScreenFrame width={width} height={height}>
        {header}
        <TextLine text={text} width={width} theme={theme} tone={view.evaluatedAt === null ? 'muted' : 'ok'} />
      </ScreenFrame>
    );
  }
  const filtered = viewState.filter !== null;
  const sections: Section<AlertRow>[] = [];
  let offset = 0;
  const add = (title: string, columns: readonly ColumnSpec<AlertRow>[], rows: readonly AlertRow[], emptyText: string, always = false): void => {
    if (rows.length > 0 || always) sections.push({ title: `${title} (${rows.length})`, columns, rows, offset, emptyText });
    offset += rows.length;
  };
  add('firing', activeColumns(now), parts.firing, filtered ? 'no firing alert matches the filter' : 'nothing is firing', true);
  add('pending: failing, not yet for long enough to fire', activeColumns(now), parts.pending, '');
  add('unknown: checks that could not be evaluated', activeColumns(now), parts.unknown, '');
  add('silenced or acknowledged', mutedColumns(now), parts.muted, '');
  add('recent history', historyColumns(), parts.history, '');
  const heights = alertSectionHeights(sections.map((section) => section.rows.length), height - 2);
  return (
    <ScreenFrame width={width} height={height}>
      {header}
      <Box flexDirection="column" flexShrink={0}>
        <Sections
          sections={sections}
          heights={heights}
          selectedIndex={selectedIndexOf(model.rows, model.rowKey, viewState)}
          width={width}
          scrollX={viewState.scrollX}
          sort={effectiveSort(viewState, model.defaultSort)}
          rowKey={rowKey}
          theme={theme}
        />
      </Box>
    </ScreenFrame>
  );
}

/** The Alerts view. */
export const alertsScreen: ScreenModule<AlertRow> = {
  id: 'alerts',
  title: 'Alerts',
  model: alertsModel,
  selectionOf: alertSelection,
  Screen: AlertsScreen,
};
