/** Activity: every session, the longest-running first, with idle-in-transaction and long queries toned. */
import type { ReactElement } from 'react';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import { formatCount } from '../format/units.js';
import type { Session } from '../probes/activity.js';
import { resultOf } from '../probes/index.js';
import { age, listModel, memoModel, PartsLine, ScreenFrame, selectedIndexOf, shortState, statusHeight, type Part, type Tone, ModelTable } from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';

/** Idle in transaction (time in that state): warning, then critical (DESIGN.md §5). */
export const idleInTransactionWarningSeconds = 5 * 60;
/** Idle in transaction: critical from here. */
export const idleInTransactionCriticalSeconds = 15 * 60;
/** Active query runtime: warning, then critical (DESIGN.md §5). */
export const activeQueryWarningSeconds = 5 * 60;
/** Active query runtime: critical from here. */
export const activeQueryCriticalSeconds = 30 * 60;

/** How alarming a session is: idle in transaction or running for too long. */
export function sessionTone(session: Session): Tone | undefined {
  if (session.state !== null && session.state.startsWith('idle in transaction')) {
    const seconds = session.stateSeconds ?? 0;
    if (seconds >= idleInTransactionCriticalSeconds) return 'critical';
    if (seconds >= idleInTransactionWarningSeconds) return 'warning';
    return undefined;
  }
  if (session.state === 'active' && session.backendType === 'client backend') {
    const seconds = session.querySeconds ?? 0;
    if (seconds >= activeQueryCriticalSeconds) return 'critical';
    if (seconds >= activeQueryWarningSeconds) return 'warning';
  }
  return undefined;
}

/** The application, or for a background process without one, what kind of process it is. */
function applicationText(session: Session): string {
  if (session.application !== '') return session.application;
  return session.backendType === 'client backend' ? '' : session.backendType;
}

/**
 * Query age only where a query is running or holds a transaction open: an idle session's last
 * query started long ago by definition, and a WAL sender's START_REPLICATION is as old as the
 * standby's connection; sorting on those would bury the long-running queries.
 */
function queryAge(session: Session): number | null {
  return session.state === 'idle' || session.backendType === 'walsender' ? null : session.querySeconds;
}

function toneOf(session: Session): Tone | undefined {
  return sessionTone(session) ?? (session.backendType === 'client backend' ? undefined : 'muted');
}

/** The activity list's columns. */
export const activityColumns: readonly ColumnSpec<Session>[] = [
  { id: 'pid', title: 'pid', width: 7, align: 'right', text: (s) => String(s.pid), sortValue: (s) => s.pid, tone: toneOf },
  { id: 'user', title: 'user', width: 9, text: (s) => s.user ?? '', sortValue: (s) => s.user },
  { id: 'database', title: 'database', width: 9, text: (s) => s.database ?? '', sortValue: (s) => s.database },
  { id: 'application', title: 'application', width: 11, text: applicationText, tone: (s) => (s.backendType === 'client backend' ? undefined : 'muted') },
  { id: 'client', title: 'client', width: 13, text: (s) => s.client ?? '', sortValue: (s) => s.client },
  { id: 'state', title: 'state', width: 13, text: (s) => shortState(s.state), sortValue: (s) => s.state, tone: sessionTone },
  { id: 'wait', title: 'wait', width: 14, text: (s) => (s.waitEventType === null ? '' : `${s.waitEventType}:${s.waitEvent ?? '?'}`), sortValue: (s) => s.waitEventType },
  { id: 'xactAge', title: 'xact', width: 6, align: 'right', text: (s) => age(s.xactSeconds), sortValue: (s) => s.xactSeconds, tone: sessionTone },
  { id: 'queryAge', title: 'query', width: 6, align: 'right', text: (s) => age(queryAge(s)), sortValue: queryAge, tone: sessionTone },
  {
    id: 'query', title: 'query text', width: 'flex', minWidth: 20,
    text: (s) => (s.query === '' && s.backendType !== 'client backend' ? `[${s.backendType}]` : s.query),
    tone: (s) => (s.backendType === 'client backend' ? undefined : 'muted'),
  },
];

/** Longest-running query first. */
export const activityDefaultSort = { column: 'queryAge', descending: true } as const;

/** The row key of a session. */
export function sessionKey(session: Session): string {
  return String(session.pid);
}

/** The fields the filter matches: database, user, application (as shown), state and client. */
function sessionFields(session: Session): readonly (string | null)[] {
  return [session.database, session.user, applicationText(session), session.state, session.client];
}

const emptyModel: readonly Session[] = [];

/** The sessions as the Activity screen lists them. */
export const activityModel = memoModel((props: ScreenProps): ListModel<Session> => {
  const data = snapshotOf(resultOf(props.results, 'activity'));
  return listModel(data?.snapshot.sessions ?? emptyModel, {
    viewState: props.viewState, columns: activityColumns, rowKey: sessionKey, defaultSort: activityDefaultSort, fields: sessionFields,
  });
});

/** The pid of the selected session, or null. */
export function selectedSessionPid(props: ScreenProps): number | null {
  const model = activityModel(props);
  return model.rows[selectedIndexOf(model.rows, model.rowKey, props.viewState)]?.pid ?? null;
}

function summary(all: readonly Session[], shown: number, props: ScreenProps): Part[] {
  const clients = all.filter((s) => s.backendType === 'client backend');
  const active = clients.filter((s) => s.state === 'active').length;
  const idleInTransaction = clients.filter((s) => s.state !== null && s.state.startsWith('idle in transaction')).length;
  const waiting = all.filter((s) => s.waitEventType === 'Lock').length;
  const alarming = all.filter((s) => sessionTone(s) !== undefined);
  const worst = alarming.some((s) => sessionTone(s) === 'critical') ? 'critical' : 'warning';
  const parts: Part[] = [
    { text: `${formatCount(all.length)} sessions (${formatCount(clients.length)} clients)` },
    { text: ` · ${active} active` },
    { text: ` · ${idleInTransaction} idle in transaction`, tone: idleInTransaction > 0 ? 'warning' : undefined },
    { text: ` · ${waiting} waiting on locks`, tone: waiting > 0 ? 'warning' : undefined },
  ];
  if (alarming.length > 0) parts.push({ text: ` · ${alarming.length} past a threshold`, tone: worst });
  const filter = props.viewState.filter;
  if (filter !== null) {
    parts.push({ text: filter.pattern === null ? ` · filter ${filter.text}: not a valid regular expression` : ` · filter ${filter.text}: ${formatCount(shown)} shown`, tone: filter.pattern === null ? 'warning' : 'accent' });
  }
  if (props.ui.tagged.length > 0) parts.push({ text: ` · ${props.ui.tagged.length} tagged`, tone: 'accent' });
  return parts;
}

function ActivityScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'activity');
  const data = snapshotOf(result);
  const model = activityModel(props);
  const status = statusHeight(result, theme, 'activity', now);
  const tagged = new Set(props.ui.tagged.map(String));
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="activity" width={width} now={now} />
      {data === undefined ? null : (
        <>
          <PartsLine parts={summary(data.snapshot.sessions, model.rows.length, props)} width={width} theme={theme} />
          <ModelTable
            model={model}
            viewState={viewState}
            height={height - status - 1}
            width={width}
            tagged={tagged}
            emptyText={viewState.filter === null ? 'no session' : 'no session matches the filter'}
            theme={theme}
          />
        </>
      )}
    </ScreenFrame>
  );
}

/** The Activity view. */
export const activityScreen: ScreenModule<Session> = {
  id: 'activity',
  title: 'Activity',
  model: activityModel,
  selectionOf: (session): Selection => ({ kind: 'session', pid: session.pid }),
  Screen: ActivityScreen,
};
