/**
 * Replication as this node sees it: on a primary its standbys, slots and archiver; on a standby
 * its WAL receiver and replay progress (and its own slots, for cascading standbys).
 */
import type { ReactElement } from 'react';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import { formatBytes, formatCount, formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Archiver, ReplicationSlot, ReplicationSnapshot, Standby, StandbyReplication } from '../probes/replication.js';
import { effectiveSort, filterRows, forKind, memoModel, PartsLine, ScreenFrame, sectionHeights, Sections, selectedIndexOf, since, statusHeight, type Part, type Section, type Tone } from './common.js';
import type { ListModel, ScreenModule, ScreenProps } from './types.js';
import { sortRows } from '../components/table-sort.js';

const MB = 1024 ** 2;
const GB = 1024 ** 3;

/** Replication lag: 100 MB or 60 s is a warning, 1 GB or 300 s critical (DESIGN.md §5). */
export const lagWarning = { bytes: 100 * MB, seconds: 60 } as const;
/** Replication lag: critical from either figure. */
export const lagCritical = { bytes: GB, seconds: 300 } as const;
/** Slots: ≥ 5 GB retained is a warning (DESIGN.md §5). */
export const slotRetainedWarningBytes = 5 * GB;
/** WAL archiving: more than this many segments waiting is a warning (DESIGN.md §5). */
export const archiveWaitingWarning = 10;

/** How far behind a standby (or this standby) is, as a tone. */
export function lagTone(bytes: number | null, seconds: number | null): Tone | undefined {
  if ((bytes ?? 0) >= lagCritical.bytes || (seconds ?? 0) >= lagCritical.seconds) return 'critical';
  if ((bytes ?? 0) >= lagWarning.bytes || (seconds ?? 0) >= lagWarning.seconds) return 'warning';
  return undefined;
}

function standbyTone(standby: Standby): Tone | undefined {
  if (standby.state !== null && standby.state !== 'streaming') return 'critical';
  return lagTone(standby.replayBytes, standby.replayLagSeconds);
}

function slotTone(slot: ReplicationSlot): Tone | undefined {
  if (slot.walStatus === 'lost') return 'critical';
  if (!slot.active || (slot.retainedBytes ?? 0) >= slotRetainedWarningBytes || slot.walStatus === 'unreserved') return 'warning';
  return undefined;
}

/** A standby of the list (primary only). */
export interface StandbyRow {
  readonly kind: 'standby';
  readonly key: string;
  readonly standby: Standby;
}

/** A replication slot of the list. */
export interface SlotRow {
  readonly kind: 'slot';
  readonly key: string;
  readonly slot: ReplicationSlot;
}

/** A row of the Replication list: standbys first, then slots. */
export type ReplicationRow = StandbyRow | SlotRow;

const standbyColumns: readonly ColumnSpec<StandbyRow>[] = [
  { id: 'application', title: 'standby', width: 14, text: (row) => row.standby.application || `pid ${row.standby.pid}`, tone: (row) => standbyTone(row.standby) },
  { id: 'client', title: 'client', width: 15, text: (row) => row.standby.client ?? '' },
  { id: 'state', title: 'state', width: 9, text: (row) => row.standby.state ?? '-', tone: (row) => (row.standby.state === 'streaming' || row.standby.state === null ? undefined : 'critical') },
  { id: 'sync', title: 'sync', width: 9, text: (row) => row.standby.syncState ?? '-' },
  { id: 'lagBytes', title: 'replay lag', width: 11, align: 'right', text: (row) => formatBytes(row.standby.replayBytes), sortValue: (row) => row.standby.replayBytes, tone: (row) => lagTone(row.standby.replayBytes, null) },
  { id: 'lagSeconds', title: 'lag time', width: 8, align: 'right', text: (row) => formatDuration(row.standby.replayLagSeconds), sortValue: (row) => row.standby.replayLagSeconds, tone: (row) => lagTone(null, row.standby.replayLagSeconds) },
  { id: 'reply', title: 'last reply', width: 10, align: 'right', text: (row) => (row.standby.replyAgeSeconds === null ? '-' : `${formatDuration(row.standby.replyAgeSeconds)} ago`), sortValue: (row) => row.standby.replyAgeSeconds },
  { id: 'replayLsn', title: 'replayed to', width: 'flex', minWidth: 12, text: (row) => row.standby.replayLsn ?? '-' },
];

function slotColumns(now: Date): readonly ColumnSpec<ReplicationRow>[] {
  const columns: readonly ColumnSpec<SlotRow>[] = [
    { id: 'slot', title: 'slot', width: 18, text: (row) => row.slot.name, tone: (row) => slotTone(row.slot) },
    { id: 'slotType', title: 'type', width: 8, text: (row) => row.slot.type },
    {
      id: 'active', title: 'active', width: 16,
      text: (row) => (row.slot.active ? `yes (pid ${row.slot.activePid ?? '?'})` : `no, ${since(row.slot.inactiveSince, now)}`),
      tone: (row) => (row.slot.active ? undefined : 'warning'),
    },
    { id: 'retained', title: 'retained', width: 9, align: 'right', text: (row) => formatBytes(row.slot.retainedBytes), tone: (row) => slotTone(row.slot) },
    { id: 'walStatus', title: 'wal_status', width: 10, text: (row) => row.slot.walStatus ?? '-', tone: (row) => (row.slot.walStatus === 'lost' ? 'critical' : row.slot.walStatus === 'unreserved' ? 'warning' : undefined) },
    { id: 'slotDetail', title: 'plugin / database', width: 'flex', minWidth: 12, text: (row) => (row.slot.type === 'logical' ? `${row.slot.plugin ?? '?'} / ${row.slot.database ?? '?'}` : '') },
  ];
  return columns.map((column) => forKind<'slot', ReplicationRow, SlotRow>('slot', column));
}

const modelColumns: readonly ColumnSpec<ReplicationRow>[] = standbyColumns.map((column) => forKind<'standby', ReplicationRow, StandbyRow>('standby', column));

/** The most lagging standby first. */
export const replicationDefaultSort = { column: 'lagBytes', descending: true } as const;

interface ReplicationParts {
  readonly standbys: readonly StandbyRow[];
  readonly slots: readonly SlotRow[];
}

function partsOf(snapshot: ReplicationSnapshot, props: ScreenProps): ReplicationParts {
  const filter = props.viewState.filter;
  const standbys = snapshot.role === 'primary' ? snapshot.standbys.map((standby): StandbyRow => ({ kind: 'standby', key: `standby:${standby.pid}`, standby })) : [];
  const slots = snapshot.slots.map((slot): SlotRow => ({ kind: 'slot', key: `slot:${slot.name}`, slot }));
  const shownStandbys = filterRows(standbys, filter, (row) => [row.standby.application, row.standby.state, row.standby.client]);
  const shownSlots = filterRows(slots, filter, (row) => [row.slot.database, row.slot.name, row.slot.active ? 'active' : 'inactive']);
  return { standbys: sortRows<StandbyRow>(shownStandbys, modelColumns, effectiveSort(props.viewState, replicationDefaultSort)), slots: shownSlots };
}

const noRows: readonly ReplicationRow[] = [];

/** Standbys (sorted, on a primary), then slots, as one list for the cursor. */
export const replicationModel = memoModel((props: ScreenProps): ListModel<ReplicationRow> => {
  const data = snapshotOf(resultOf(props.results, 'replication'));
  const rowKey = (row: ReplicationRow): string => row.key;
  if (data === undefined) return { rows: noRows, columns: modelColumns, rowKey, defaultSort: replicationDefaultSort };
  const parts = partsOf(data.snapshot, props);
  return { rows: [...parts.standbys, ...parts.slots], columns: modelColumns, rowKey, defaultSort: replicationDefaultSort };
});

/** The archiver in one line: failing or not, and what waits. */
export function archiverLine(archiver: Archiver): Part[] {
  if (archiver.mode === 'off') return [{ text: 'archiver: archive_mode is off (no WAL archive: point-in-time recovery is impossible)', tone: 'warning' }];
  const waiting = archiver.waitingSegments;
  const waitingPart: Part = waiting === null
    ? { text: ` · segments waiting unknown (${archiver.waitingUnknownReason ?? 'not read'})`, tone: 'muted' }
    : { text: ` · ${formatCount(waiting)} ${waiting === 1 ? 'segment' : 'segments'} waiting`, tone: waiting > archiveWaitingWarning ? 'warning' : undefined };
  const last = archiver.lastArchivedSeconds === null ? 'never archived' : `last archived ${formatDuration(archiver.lastArchivedSeconds)} ago (${archiver.lastArchivedWal ?? '?'})`;
  if (archiver.failing) {
    return [
      { text: 'archiver: FAILING', tone: 'critical' },
      { text: ` · last failure ${formatDuration(archiver.lastFailedSeconds)} ago (${archiver.lastFailedWal ?? '?'}), ${formatCount(archiver.failedCount)} failures`, tone: 'critical' },
      { text: ` · ${last}` },
      waitingPart,
    ];
  }
  return [{ text: 'archiver: ok', tone: 'ok' }, { text: ` · ${last}` }, waitingPart];
}

/** A standby's receiver in one line. */
export function receiverLine(snapshot: StandbyReplication): Part[] {
  const receiver = snapshot.receiver;
  if (receiver === null) return [{ text: 'receiver: not running: restoring from the archive, or the primary is unreachable', tone: 'critical' }];
  const from = receiver.senderHost === null ? 'the primary' : `${receiver.senderHost}${receiver.senderPort === null ? '' : `:${receiver.senderPort}`}`;
  return [
    { text: `receiver: ${receiver.status ?? 'unknown'}`, tone: receiver.status === 'streaming' ? 'ok' : 'critical' },
    { text: ` from ${from}` },
    { text: receiver.slotName === null ? ' · no slot' : ` · slot ${receiver.slotName}` },
    { text: receiver.receivedTimeline === null ? '' : ` · timeline ${receiver.receivedTimeline}` },
    { text: receiver.lastMessageAgeSeconds === null ? '' : ` · last message ${formatDuration(receiver.lastMessageAgeSeconds)} ago` },
  ];
}

/** A standby's replay in one line. */
export function replayLine(snapshot: StandbyReplication): Part[] {
  const replay = snapshot.replay;
  const tone = lagTone(replay.gapBytes, replay.delaySeconds);
  const parts: Part[] = [
    { text: `replay: ${formatBytes(replay.gapBytes)} behind, ${formatDuration(replay.delaySeconds)} delay`, tone: tone ?? 'ok' },
    { text: ` · received ${replay.receiveLsn ?? '-'}, replayed ${replay.replayLsn ?? '-'}` },
  ];
  if (replay.paused) parts.push({ text: ` · replay ${replay.pauseState ?? 'paused'}`, tone: 'warning' });
  return parts;
}

function ReplicationScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'replication');
  const data = snapshotOf(result);
  const model = replicationModel(props);
  const status = statusHeight(result, theme, 'replication', now);
  if (data === undefined) {
    return (
      <ScreenFrame width={width} height={height}>
        <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
      </ScreenFrame>
    );
  }
  const snapshot = data.snapshot;
  const parts = partsOf(snapshot, props);
  const slotsSection: Section<ReplicationRow> = {
    title: `replication slots (${parts.slots.length})`, columns: slotColumns(now), rows: parts.slots, offset: parts.standbys.length,
    emptyText: viewState.filter === null ? 'no replication slot' : 'no slot matches the filter',
  };
  const common = { selectedIndex: selectedIndexOf(model.rows, model.rowKey, viewState), width, scrollX: viewState.scrollX, rowKey: model.rowKey, theme } as const;
  if (snapshot.role === 'standby') {
    const room = height - status - 2;
    return (
      <ScreenFrame width={width} height={height}>
        <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
        <PartsLine parts={receiverLine(snapshot)} width={width} theme={theme} />
        <PartsLine parts={replayLine(snapshot)} width={width} theme={theme} />
        <Sections sections={[slotsSection]} heights={sectionHeights([{ rows: parts.slots.length }], room)} sort={null} {...common} />
      </ScreenFrame>
    );
  }
  const standbysSection: Section<ReplicationRow> = {
    title: `standbys (${parts.standbys.length})`, columns: model.columns, rows: parts.standbys, offset: 0,
    emptyText: viewState.filter === null ? 'no standby is connected' : 'no standby matches the filter',
  };
  const room = height - status - 1;
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
      <PartsLine parts={archiverLine(snapshot.archiver)} width={width} theme={theme} />
      <Sections
        sections={[standbysSection, slotsSection]}
        heights={sectionHeights([{ rows: parts.standbys.length }, { rows: parts.slots.length }], room)}
        sort={effectiveSort(viewState, model.defaultSort)}
        {...common}
      />
    </ScreenFrame>
  );
}

/** The Replication view. */
export const replicationScreen: ScreenModule<ReplicationRow> = {
  id: 'replication',
  title: 'Replication',
  model: replicationModel,
  Screen: ReplicationScreen,
};
