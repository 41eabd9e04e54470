/**
 * Backups (issue 5 item 11), read-only for now: the console's backup monitor
 * (src/app/backup-monitor.ts) reads each repository's catalog of the console's cluster; this screen
 * shows the archiver (from the replication probe), per repository its recovery window (oldest
 * restorable point → newest archived WAL, gaps, timeline forks), and every backup with its size,
 * duration, source, last verification and last drill. Four states: no backup plan (how to
 * configure one), reading, a repository that cannot be read (the reason and the fix), and data.
 * Under the list, the pane of the cluster's backup job (src/app/backup-actions.ts: back up now,
 * verify, drill): what runs, for how long, its last stderr lines, then how it ended. Under the
 * archive line, WAL streaming (docs/wal-streaming.md) as the server sees it: pg_receivewal's
 * walsender and its slot from the replication probe, not the watcher's own status, because the
 * watcher that streams may run on another host.
 */
import type { ReactElement } from 'react';
import { jobElapsed, type BackupJob } from '../app/backup-actions.js';
import {
  backupsConfigDoc, RECEIVER_APPLICATION, streamingPlanOf, type BackupEntry, type BackupsView, type RepositoryData, type RepositoryState, type StreamingPlan,
} from '../app/backup-monitor.js';
import { snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import { formatBytes, formatCount, formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Archiver, ReplicationSlot, Standby } from '../probes/replication.js';
import type { Results } from '../probes/runner.js';
import { listModel, ModelTable, PartsLine, ScreenFrame, since, TextLine, type Part, type Tone } from './common.js';
import { archiveWaitingWarning, lagTone } from './Replication.js';
import type { ListModel, ScreenModule, ScreenProps } from './types.js';

/** The newest backup first. */
export const backupsDefaultSort = { column: 'finished', descending: true } as const;

/** "just now" under a second, else since(). */
function recently(date: Date, now: Date): string {
  return now.getTime() - date.getTime() < 1000 ? 'just now' : since(date, now);
}

function ageOf(iso: string, now: Date): string {
  return since(new Date(iso), now);
}

function verifiedText(entry: BackupEntry, now: Date): string {
  if (entry.verified === null) return 'never';
  return `${entry.verified.ok ? 'ok' : 'FAILED'} ${ageOf(entry.verified.at, now)}`;
}

function verifiedTone(entry: BackupEntry): Tone | undefined {
  if (entry.verified === null) return 'warning';
  return entry.verified.ok ? 'ok' : 'critical';
}

/** The columns of the backups list. */
export function backupColumns(now: Date): readonly ColumnSpec<BackupEntry>[] {
  return [
    {
      id: 'finished', title: 'finished', width: 10, text: (row) => ageOf(row.finishedAt, now), sortValue: (row) => row.finishedAt,
      tone: (row) => (row.restorable ? undefined : 'critical'),
    },
    { id: 'repository', title: 'repo', width: 8, text: (row) => row.repository },
    { id: 'size', title: 'size', width: 8, align: 'right', text: (row) => formatBytes(row.storedBytes), sortValue: (row) => row.storedBytes },
    { id: 'duration', title: 'took', width: 7, align: 'right', text: (row) => formatDuration(Math.round(row.durationMs / 1000)), sortValue: (row) => row.durationMs },
    { id: 'from', title: 'from', width: 14, text: (row) => `${row.fromStandby ? 'standby' : 'primary'} ${row.node}` },
    { id: 'verified', title: 'verified', width: 16, text: (row) => verifiedText(row, now), sortValue: (row) => row.verified?.at ?? null, tone: verifiedTone },
    {
      id: 'drilled', title: 'drilled', width: 12, sortValue: (row) => row.drilled?.finishedAt ?? null,
      text: (row) => (row.drilled === null ? 'never' : row.drilled.ok ? `ok ${formatDuration(Math.round(row.drilled.restoreSeconds ?? 0))}` : 'FAILED'),
      tone: (row) => (row.drilled === null ? 'muted' : row.drilled.ok ? 'ok' : 'critical'),
    },
    {
      id: 'id', title: 'backup', width: 'flex', minWidth: 8,
      text: (row) => (row.restorable ? row.id : `${row.id}: NOT RESTORABLE: ${row.problem ?? ''}`),
      tone: (row) => (row.restorable ? undefined : 'critical'),
    },
  ];
}

/** The data of a repository, fresh or (after a failed read) the last good one. */
function dataOf(state: RepositoryState): RepositoryData | null {
  if (state.status === 'ok') return state;
  if (state.status === 'error') return state.last;
  return null;
}

/** Every backup of every repository, for the list. */
function entriesOf(view: BackupsView | undefined): readonly BackupEntry[] {
  if (view?.kind !== 'configured') return [];
  return view.repositories.flatMap((state) => dataOf(state)?.backups ?? []);
}

const rowKey = (row: BackupEntry): string => `${row.repository}/${row.id}`;

let last: { backups: BackupsView | undefined; viewState: ScreenProps['viewState']; now: Date; model: ListModel<BackupEntry> } | undefined;

/** The backups of every repository of the cluster, newest first. */
export function backupsModel(props: ScreenProps): ListModel<BackupEntry> {
  if (last !== undefined && last.backups === props.backups && last.viewState === props.viewState && last.now === props.now) return last.model;
  const model = listModel(entriesOf(props.backups), {
    viewState: props.viewState,
    columns: backupColumns(props.now),
    rowKey,
    defaultSort: backupsDefaultSort,
    fields: (row) => [row.repository, row.id, row.node, row.fromStandby ? 'standby' : 'primary'],
  });
  last = { backups: props.backups, viewState: props.viewState, now: props.now, model };
  return model;
}

/** The archive status from the replication probe, in one line. */
export function archiveLine(results: Results): Part[] {
  const data = snapshotOf(resultOf(results, 'replication'));
  if (data === undefined) return [{ text: 'archive: waiting for the replication probe…', tone: 'muted' }];
  const snapshot = data.snapshot;
  if (snapshot.role === 'standby') return [{ text: 'archive: this node is a standby; the primary archives the WAL (switch to it to see the archiver)', tone: 'muted' }];
  return archiverParts(snapshot.archiver);
}

function archiverParts(archiver: Archiver): Part[] {
  if (archiver.mode === 'off') return [{ text: 'archive: archive_mode is off: no WAL reaches the repositories, point-in-time recovery is impossible', tone: 'critical' }];
  const parts: Part[] = [
    archiver.failing ? { text: 'archive: FAILING', tone: 'critical' } : { text: 'archive: ok', tone: 'ok' },
    { text: ` · ${formatCount(archiver.archivedCount)} archived` },
    archiver.lastArchivedSeconds === null ? { text: ', none yet', tone: 'warning' } : { text: `, last ${formatDuration(archiver.lastArchivedSeconds)} ago` },
    { text: ` · ${formatCount(archiver.failedCount)} failed`, tone: archiver.failedCount > 0 ? (archiver.failing ? 'critical' : 'warning') : undefined },
  ];
  if (archiver.lastFailedSeconds !== null) parts.push({ text: `, last ${formatDuration(archiver.lastFailedSeconds)} ago (${archiver.lastFailedWal ?? '?'})`, tone: archiver.failing ? 'critical' : undefined });
  const waiting = archiver.waitingSegments;
  parts.push(waiting === null
    ? { text: ` · WAL waiting unknown (${archiver.waitingUnknownReason ?? 'not read'})`, tone: 'muted' }
    : { text: ` · ${formatCount(waiting)} WAL waiting`, tone: waiting > archiveWaitingWarning ? 'warning' : undefined });
  return parts;
}

/**
 * pg_receivewal answers at every status interval (10 s by default) and whenever the server asks;
 * no answer for three intervals means it or the network is stuck, well before the server's
 * wal_sender_timeout (60 s by default) drops it.
 */
export const receiverReplyAgeWarningSeconds = 30;

/** Where the docs explain streaming and its slot. */
const streamingDoc = 'docs/wal-streaming.md';

const toneRank: Readonly<Record<string, number>> = { ok: 0, warning: 1, critical: 2 };

/** The worse of two tones (undefined counts as ok). */
function worse(a: Tone | undefined, b: Tone | undefined): Tone {
  return (toneRank[b ?? 'ok'] ?? 0) > (toneRank[a ?? 'ok'] ?? 0) ? (b ?? 'ok') : (a ?? 'ok');
}

/**
 * The streaming status in one or two lines, from the replication probe and the plan's streaming
 * settings: the receiver connected (state, flush lag, reply age, slot), or NOT CONNECTED with its
 * slot's state and what to check. No line when the plan does not stream and the server shows
 * neither a pgwarden-receivewal walsender nor the plan's slot.
 */
export function streamingLines(results: Results, plan: StreamingPlan, now: Date): Part[][] {
  const data = snapshotOf(resultOf(results, 'replication'));
  if (data === undefined) return plan.enabled ? [[{ text: 'streaming: waiting for the replication probe…', tone: 'muted' }]] : [];
  const snapshot = data.snapshot;
  // pg_stat_replication of a standby lists only its cascading standbys: the receiver streams from the primary.
  if (snapshot.role === 'standby') return plan.enabled ? [[{ text: 'streaming: this node is a standby; streaming runs against the primary (switch to it to see the receiver)', tone: 'muted' }]] : [];
  const senders = snapshot.standbys.filter((standby) => standby.application === RECEIVER_APPLICATION);
  const slot = snapshot.slots.find((candidate) => candidate.name === plan.slot);
  // Two receivers on one server (another config, another slot): the one on the plan's slot is ours.
  const sender = senders.find((candidate) => slot?.activePid === candidate.pid) ?? senders[0];
  if (sender !== undefined) return [receivingParts(sender, snapshot.slots.find((candidate) => candidate.activePid === sender.pid), plan)];
  if (slot === undefined) return plan.enabled ? notConnectedLines(plan, undefined, now) : [];
  // A slot of that name held by some other client, with streaming off here: not pgwarden's business.
  if (!plan.enabled && slot.active) return [];
  return notConnectedLines(plan, slot, now);
}

function receivingParts(sender: Standby, slot: ReplicationSlot | undefined, plan: StreamingPlan): Part[] {
  const streaming = sender.state === null || sender.state === 'streaming';
  // Without --synchronous pg_receivewal flushes (and reports) a segment when it completes it, so
  // up to a segment of flush lag is normal; the replication lag levels (100 MB, 60 s) sit above it.
  const lag = lagTone(sender.flushBytes, sender.flushLagSeconds);
  const replyLate = sender.replyAgeSeconds !== null && sender.replyAgeSeconds >= receiverReplyAgeWarningSeconds;
  const tone = worse(worse(lag, streaming ? 'ok' : 'warning'), replyLate || slot === undefined ? 'warning' : 'ok');
  const lagVisible = sender.flushBytes !== null || sender.flushLagSeconds !== null;
  return [
    { text: `streaming: receiving (${sender.state ?? 'state not visible'})`, tone },
    lagVisible
      ? { text: ` · flush lag ${formatBytes(sender.flushBytes)}, ${formatDuration(sender.flushLagSeconds)}`, tone: lag }
      : { text: ' · flush lag not visible to this role (grant it pg_monitor)', tone: 'muted' },
    sender.replyAgeSeconds === null ? { text: '' } : { text: ` · reply ${formatDuration(sender.replyAgeSeconds)} ago`, tone: replyLate ? 'warning' : undefined },
    // Between connecting and START_REPLICATION the walsender holds no slot yet.
    slot === undefined ? { text: ` · holds no slot (expected ${plan.slot})`, tone: 'warning' } : { text: ` · slot ${slot.name}` },
    plan.enabled ? { text: '' } : { text: " · streaming is not enabled in this console's config", tone: 'muted' },
  ];
}

function slotStateParts(slot: ReplicationSlot, now: Date): Part {
  if (slot.active) return { text: ` · slot ${slot.name} is held by pid ${slot.activePid ?? '?'}, not by ${RECEIVER_APPLICATION}`, tone: 'warning' };
  // Before PostgreSQL 17 the probe dates it from when it first saw the slot inactive: "for 0ms" says nothing.
  const seconds = slot.inactiveSince === null ? 0 : Math.floor((now.getTime() - slot.inactiveSince.getTime()) / 1000);
  const inactive = seconds >= 1 ? ` for ${formatDuration(seconds)}` : '';
  return {
    text: ` · slot ${slot.name} inactive${inactive}, retaining ${formatBytes(slot.retainedBytes)} of WAL on the server (wal_status ${slot.walStatus ?? '?'})`,
    tone: slot.walStatus === 'lost' ? 'critical' : 'warning',
  };
}

function notConnectedLines(plan: StreamingPlan, slot: ReplicationSlot | undefined, now: Date): Part[][] {
  const head: Part = plan.enabled
    ? { text: 'streaming: NOT CONNECTED', tone: 'critical' }
    : { text: "streaming: not connected (not enabled in this console's config)", tone: 'warning' };
  if (slot === undefined) {
    return [
      [head, { text: ` · slot ${plan.slot} does not exist`, tone: 'critical' }],
      [{ text: `  check: is \`pgwarden --watch\` running with streaming for this cluster? It creates the slot when it starts pg_receivewal; its log says why it did not (${streamingDoc})`, tone: 'warning' }],
    ];
  }
  let advice: string;
  if (slot.walStatus === 'lost') {
    advice = `  fix: the slot lost WAL the receiver never got (only archive_command archived it): select pg_drop_replication_slot('${slot.name}'); the receiver creates it again at its next start (${streamingDoc})`;
  } else if (slot.active) {
    advice = `  check: which client holds slot ${slot.name} (pg_stat_replication, pid ${slot.activePid ?? '?'}): pgwarden's receiver cannot stream on it meanwhile (${streamingDoc})`;
  } else if (plan.enabled) {
    advice = `  check: is \`pgwarden --watch\` running? Its log says why pg_receivewal stopped; meanwhile the slot keeps WAL on the server (cap it with max_slot_wal_keep_size, ${streamingDoc})`;
  } else {
    advice = `  check: if a watcher elsewhere streams this cluster, is it running? If nothing streams it any more, drop the slot: select pg_drop_replication_slot('${slot.name}') (${streamingDoc})`;
  }
  return [[head, slotStateParts(slot, now)], [{ text: advice, tone: slot.walStatus === 'lost' ? 'critical' : 'warning' }]];
}

/** The recovery window of one repository in a line, then a line per gap and timeline fork. */
export function windowLines(data: RepositoryData, now: Date): Part[][] {
  const window = data.window;
  const lines: Part[][] = [];
  const from: Part = window.from === null
    ? { text: data.catalog.backups.length === 0 ? 'no backup' : 'no restorable backup', tone: 'critical' }
    : { text: `${ageOf(window.from.time, now)} (${window.from.lsn})` };
  const to: Part = window.newestWal === null ? { text: 'no archived WAL', tone: 'critical' } : { text: `${window.newestWal.wal} (tl ${window.newestWal.timeline})` };
  const short = window.newestWal !== null && window.reachableTo !== null && window.reachableTo.wal !== window.newestWal.wal;
  lines.push([
    { text: '  window: ' },
    from,
    { text: ' → ' },
    to,
    short ? { text: ` · reachable only to ${window.reachableTo?.wal ?? ''}`, tone: 'critical' } : { text: '' },
    { text: ` · ${window.gaps.length} ${window.gaps.length === 1 ? 'gap' : 'gaps'}`, tone: window.gaps.length > 0 ? 'critical' : 'ok' },
    { text: ` · ${window.timelines.length} ${window.timelines.length === 1 ? 'timeline' : 'timelines'}` },
  ]);
  const drill = data.drills[data.drills.length - 1];
  if (drill !== undefined) {
    lines.push(drill.ok
      ? [{ text: `  last drill: ok ${ageOf(drill.finishedAt, now)}, restored in ${formatDuration(Math.round(drill.restoreSeconds ?? 0))}${drill.dataLossWindowSeconds === null ? '' : `, data-loss window ${formatDuration(Math.round(drill.dataLossWindowSeconds))}`}`, tone: 'ok' }]
      : [{ text: `  last drill: FAILED ${ageOf(drill.finishedAt, now)}: ${drill.reason ?? 'see pgwarden drill'}`, tone: 'critical' }]);
  }
  for (const gap of window.gaps) {
    const missing = gap.missing === 1 ? gap.firstMissing : `${gap.firstMissing}…${gap.lastMissing}`;
    lines.push([{ text: `  gap: ${formatCount(gap.missing)} missing on tl ${gap.timeline}: ${missing} (after ${gap.after})`, tone: 'critical' }]);
  }
  for (const timeline of window.timelines) {
    if (timeline.parent === null) continue;
    lines.push([{ text: `  fork: tl ${timeline.timeline} from tl ${timeline.parent} at ${timeline.switchLsn ?? timeline.forkWal ?? '?'}${timeline.inferred ? ' (inferred from names: history file unreadable)' : ''}`, tone: 'muted' }]);
  }
  return lines;
}

/** The lines of one repository: its name and state, then its window (or the reason and fix). */
export function repositoryLines(state: RepositoryState, now: Date): Part[][] {
  const name: Part = { text: `${state.name} (${state.description})`, tone: 'accent' };
  if (state.status === 'loading') return [[name, { text: ': reading the catalog…', tone: 'muted' }]];
  if (state.status === 'error') {
    const lines: Part[][] = [
      [name, { text: `: cannot read it (${recently(state.failedAt, now)}): ${state.reason}`, tone: 'critical' }],
      [{ text: `  fix: ${state.fix}`, tone: 'warning' }],
    ];
    if (state.last !== null) lines.push([{ text: `  shown: the last good read, ${since(state.last.readAt, now)}`, tone: 'stale' }], ...windowLines(state.last, now));
    return lines;
  }
  const counts = `${state.backups.length} ${state.backups.length === 1 ? 'backup' : 'backups'}`;
  const incomplete = state.catalog.incomplete.length;
  const problems = state.catalog.problems.length;
  return [
    [
      name,
      { text: `: ${counts}` },
      incomplete > 0 ? { text: ` · ${incomplete} incomplete`, tone: 'warning' } : { text: '' },
      problems > 0 ? { text: ` · ${problems} ${problems === 1 ? 'problem' : 'problems'}: ${state.catalog.problems[0] ?? ''}`, tone: 'warning' } : { text: '' },
      { text: ` · read ${recently(state.readAt, now)}`, tone: 'muted' },
    ],
    ...windowLines(state, now),
  ];
}

/**
 * The job pane: a line saying what runs (or how it ended), then its last stderr lines, at most
 * `rows` lines in all.
 */
export function jobPaneLines(job: BackupJob, now: Date, rows: number): Part[][] {
  const elapsed = jobElapsed(job, now);
  let head: Part[];
  if (job.status === 'finished') {
    const how = job.error !== null ? 'could not start' : job.signal !== null ? `ended by ${job.signal}` : `exit ${job.exitCode ?? '?'}`;
    head = [
      { text: `${job.kind} ${job.ok === true ? 'finished' : 'FAILED'} after ${elapsed} (${how})`, tone: job.ok === true ? 'ok' : 'critical' },
      { text: `: ${job.summary ?? ''}` },
    ];
  } else {
    head = [
      { text: `${job.kind} ${job.status === 'stopping' ? 'stopping' : 'running'} ${elapsed}`, tone: job.status === 'stopping' ? 'warning' : 'accent' },
      { text: ` · ${job.target}${job.pid === null ? '' : ` · pid ${job.pid}`}` },
      { text: ' · esc stops it (asks first)', tone: 'muted' },
    ];
  }
  const tail = job.partial.trim() === '' ? job.lines : [...job.lines, job.partial];
  const room = Math.max(0, rows - 1);
  const shown = room === 0 ? [] : tail.slice(-room);
  return [head, ...shown.map((line): Part[] => [{ text: `  ${line}`, tone: 'muted' }])];
}

/** What the screen says when the cluster has no backup plan. */
export function unconfiguredLines(cluster: string | undefined): readonly string[] {
  return [
    `No backup plan${cluster === undefined ? '' : ` for cluster ${cluster}`}: the config has no backups section covering it.`,
    '',
    `To configure one, add a "backups" section (${backupsConfigDoc}), e.g.:`,
    '  "backups": { "repositories": [{ "name": "local", "type": "local", "path": "/var/lib/pgwarden/repo" }] }',
    'then restart the console; this view lists the backups, the recovery window and the archiver,',
    'and its keys back up, verify and drill (see ? for them).',
  ];
}

function BackupsScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const view = props.backups;
  if (view === undefined || view.kind === 'unconfigured') {
    return (
      <ScreenFrame width={width} height={height}>
        {unconfiguredLines(view?.cluster).map((line, index) => (
          <TextLine key={index} text={line === '' ? ' ' : line} width={width} theme={theme} tone={index === 0 ? 'warning' : index >= 3 ? 'muted' : undefined} />
        ))}
      </ScreenFrame>
    );
  }
  const model = backupsModel(props);
  const header: Part[][] = [
    [
      { text: `cluster ${view.cluster}: ${view.repositories.length} ${view.repositories.length === 1 ? 'repository' : 'repositories'}` },
      view.encrypted ? { text: ' · encrypted' } : { text: ' · NOT encrypted', tone: 'warning' },
      view.keyProblem === null ? { text: '' } : { text: ` · keys: ${view.keyProblem}`, tone: 'warning' },
      view.reading ? { text: ' · reading…', tone: 'muted' } : { text: '' },
      viewState.filter === null ? { text: '' } : { text: ` · filter ${viewState.filter.text}: ${model.rows.length} rows`, tone: 'accent' },
    ],
    archiveLine(props.results),
    ...streamingLines(props.results, streamingPlanOf(view), now),
  ];
  const repositories = view.repositories.flatMap((state) => repositoryLines(state, now));
  const anyData = view.repositories.some((state) => dataOf(state) !== null);
  // The list keeps at least its header and three rows; repository lines give way first.
  const tableMin = anyData ? 4 : 0;
  // The job pane: its head line and up to four stderr lines while running, two once finished.
  const pane = props.backupJob === undefined ? [] : jobPaneLines(props.backupJob, now, Math.max(1, Math.min(props.backupJob.status === 'finished' ? 3 : 5, height - tableMin - 2)));
  const shown = [...header, ...repositories].slice(0, Math.max(2, height - tableMin - pane.length));
  const tableHeight = height - shown.length - pane.length;
  return (
    <ScreenFrame width={width} height={height}>
      {shown.map((parts, index) => (
        <PartsLine key={index} parts={parts} width={width} theme={theme} />
      ))}
      {anyData && tableHeight > 1 ? (
        <ModelTable
          model={model}
          viewState={viewState}
          height={tableHeight}
          width={width}
          theme={theme}
          emptyText={viewState.filter === null ? 'no complete backup in any repository yet' : 'no backup matches the filter'}
        />
      ) : null}
      {pane.map((parts, index) => (
        <PartsLine key={`job-${index}`} parts={parts} width={width} theme={theme} />
      ))}
    </ScreenFrame>
  );
}

/** The Backups view. */
export const backupsScreen: ScreenModule<BackupEntry> = {
  id: 'backups',
  title: 'Backups',
  model: backupsModel,
  Screen: BackupsScreen,
};
