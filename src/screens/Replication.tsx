/**
 * Replication: for a cluster of several nodes, the topology tree first (every node probed: the
 * primary at the root, standbys under their upstream, cascades deeper) with its problems on top;
 * then this node's own view: on a primary its standbys, slots and archiver; on a standby its WAL
 * receiver and replay progress, its own slots and the standbys cascading from it.
 */
import type { ReactElement } from 'react';
import type { TopologyLine, TopologyNode, TopologyView } from '../cluster/topology.js';
import { ProbeStatus, snapshotOf } from '../components/ProbeStatus.js';
import type { ColumnSpec } from '../components/table-types.js';
import type { Theme } from '../components/theme.js';
import { displayWidth, fit } from '../format/text-table.js';
import { formatBytes, formatCount, formatDuration } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Archiver, ReplicationSlot, ReplicationSnapshot, Standby, StandbyReplication } from '../probes/replication.js';
import { effectiveSort, filterRows, forKind, memoModel, PartsLine, ScreenFrame, sectionHeights, Sections, selectedIndexOf, since, statusHeight, type Part, type Section, type Tone } from './common.js';
import type { ListModel, ScreenModule, ScreenProps, Selection } from './types.js';
import { sortRows } from '../components/table-sort.js';
import { isClusterJob } from '../app/cluster-jobs.js';
import { jobPaneLines } from './Backups.js';

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

/** A standby of the list (a primary's, or a cascading standby's). */
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
  const senders = snapshot.role === 'primary' ? snapshot.standbys : (snapshot.standbys ?? []);
  const standbys = senders.map((standby): StandbyRow => ({ kind: 'standby', key: `standby:${standby.pid}`, standby }));
  const slots = snapshot.slots.map((slot): SlotRow => ({ kind: 'slot', key: `slot:${slot.name}`, slot }));
  const shownStandbys = filterRows(standbys, filter, (row) => [row.standby.application, row.standby.state, row.standby.client]);
  const shownSlots = filterRows(slots, filter, (row) => [row.slot.database, row.slot.name, row.slot.active ? 'active' : 'inactive']);
  return { standbys: sortRows<StandbyRow>(shownStandbys, modelColumns, effectiveSort(props.viewState, replicationDefaultSort)), slots: shownSlots };
}

const noRows: readonly ReplicationRow[] = [];

/** Standbys (sorted; a primary's or a cascading standby's), then slots, as one list for the cursor. */
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

/**
 * The tree's columns after the node column: title, width, alignment. What matters for a failover
 * (role, timeline, lag, sync, state) fits 80 columns; the slot and the notes take what is left.
 */
const treeColumns = [
  { title: 'role', width: 11, align: 'left' },
  { title: 'tl', width: 3, align: 'right' },
  { title: 'replay lag', width: 10, align: 'right' },
  { title: 'lag time', width: 8, align: 'right' },
  { title: 'sync', width: 9, align: 'left' },
  { title: 'state', width: 9, align: 'left' },
] as const;
const nodeColumnWidth = 18;

/** How a node's role reads in the tree: its role, or why it is not known. */
function roleText(node: TopologyNode): string {
  if (node.status === 'unreachable' && node.role === 'unknown') return 'unreachable';
  if (node.status === 'pending') return 'pending';
  return node.role;
}

/** The last column: the slot, and what else a DBA must know of this node. */
function slotAndNotes(node: TopologyNode): string {
  const notes: string[] = [];
  if (node.slot !== null) notes.push(node.slot);
  if (node.upstream === null && node.upstreamAddress !== null) notes.push(`from ${node.upstreamAddress}`);
  if (!node.configured) notes.push('not in the config');
  if (node.status === 'unreachable') notes.push(`pgwarden cannot connect: ${node.error ?? 'no answer'}`);
  return notes.join(' · ');
}

/** The tone of a node's name: the worst problem naming it. */
function nodeTone(node: TopologyNode, view: TopologyView): Tone | undefined {
  const problems = view.topology.problems.filter((problem) => problem.nodes.includes(node.name));
  if (problems.some((problem) => problem.severity === 'critical')) return 'critical';
  if (problems.length > 0) return 'warning';
  if (!node.configured) return 'muted';
  return node.role === 'primary' && node.status === 'ok' ? 'ok' : undefined;
}

/** One node of the tree as toned parts, the branches drawn with the theme's symbols. */
function treeLineParts(line: TopologyLine, view: TopologyView, theme: Theme): Part[] {
  const { node } = line;
  const { treeBranch, treeLast, treePipe } = theme.symbols;
  const blank = ' '.repeat(displayWidth(treePipe));
  const prefix = line.depth === 0 ? '' : `${line.pipes.map((pipe) => (pipe ? `${treePipe} ` : `${blank} `)).join('')}${line.last ? treeLast : treeBranch} `;
  const lag = node.lag;
  const notStreaming = node.role === 'standby' && node.state !== null && node.state !== 'streaming';
  const cells: { text: string; tone?: Tone | undefined }[] = [
    { text: roleText(node), tone: node.status === 'unreachable' ? 'critical' : node.status === 'pending' ? 'muted' : undefined },
    { text: node.timeline === null ? '-' : String(node.timeline) },
    { text: lag === null ? '' : formatBytes(lag.bytes), tone: lag === null ? undefined : lagTone(lag.bytes, null) },
    { text: lag === null ? '' : formatDuration(lag.seconds), tone: lag === null ? undefined : lagTone(null, lag.seconds) },
    { text: node.syncState ?? '' },
    { text: node.state ?? '', tone: notStreaming ? 'critical' : undefined },
  ];
  const parts: Part[] = [{ text: fit(` ${prefix}${node.name}`, nodeColumnWidth), tone: nodeTone(node, view) }];
  treeColumns.forEach((column, index) => parts.push({ text: ` ${fit(cells[index]?.text ?? '', column.width, column.align)}`, tone: cells[index]?.tone }));
  const last = slotAndNotes(node);
  if (last !== '') parts.push({ text: ` ${last}`, tone: node.status === 'unreachable' ? 'critical' : undefined });
  return parts;
}

/** The tree's header line. */
function treeHeader(): Part[] {
  return [{ text: [fit(' node', nodeColumnWidth), ...treeColumns.map((column) => fit(column.title, column.width, column.align)), 'slot'].join(' '), tone: 'header' }];
}

/**
 * The topology above this node's view: the problems (red critical, yellow warnings), a title, the
 * header and the tree, in at most `room` lines (a third of it for problems, the tree the rest;
 * what does not fit is counted on its last line).
 */
export function topologyLines(view: TopologyView, theme: Theme, room: number): Part[][] {
  const { topology } = view;
  const out: Part[][] = [];
  const problemRoom = Math.max(1, Math.floor(room / 3));
  const problems = topology.problems;
  const shownProblems = problems.length <= problemRoom ? problems : problems.slice(0, problemRoom - 1);
  for (const problem of shownProblems) out.push([{ text: problem.message, tone: problem.severity }]);
  if (shownProblems.length < problems.length) {
    const rest = problems.slice(shownProblems.length);
    const kinds = new Map<string, number>();
    for (const problem of rest) kinds.set(problem.kind, (kinds.get(problem.kind) ?? 0) + 1);
    out.push([{ text: `and ${rest.length} more ${rest.length === 1 ? 'problem' : 'problems'}: ${[...kinds].map(([kind, count]) => (count === 1 ? kind : `${count} ${kind}`)).join(', ')}`, tone: rest.some((problem) => problem.severity === 'critical') ? 'critical' : 'warning' }]);
  }
  const configured = topology.nodes.filter((node) => node.configured).length;
  const primary = topology.primaries.length === 0 ? 'no primary' : `primary ${topology.primaries.join(', ')}`;
  out.push([{ text: `topology of ${view.cluster}: ${configured} nodes · ${primary}`, tone: 'accent' }]);
  out.push(treeHeader());
  const treeRoom = Math.max(1, room - out.length);
  const lines = topology.lines;
  const shownLines = lines.length <= treeRoom ? lines : lines.slice(0, treeRoom - 1);
  for (const line of shownLines) out.push(treeLineParts(line, view, theme));
  if (shownLines.length < lines.length) out.push([{ text: ` and ${lines.length - shownLines.length} more nodes`, tone: 'muted' }]);
  return out;
}

/** The topology lines as the screen draws them. */
function TopologyBlock({ lines, width, theme }: { readonly lines: readonly Part[][]; readonly width: number; readonly theme: Theme }): ReactElement {
  return (
    <>
      {lines.map((parts, index) => (
        <PartsLine key={index} parts={parts} width={width} theme={theme} />
      ))}
    </>
  );
}

function ReplicationScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now, viewState } = props;
  const result = resultOf(props.results, 'replication');
  const data = snapshotOf(result);
  const model = replicationModel(props);
  const status = statusHeight(result, theme, 'replication', now);
  // The tree takes up to half the height when this node's own view has something to show.
  // A switchover, failover or rejoin of this cluster: its pane under the tree (backup jobs show in the Backups view).
  const job = props.backupJob !== undefined && isClusterJob(props.backupJob.kind) ? props.backupJob : undefined;
  const pane = job === undefined ? [] : jobPaneLines(job, now, job.status === 'finished' ? 3 : 6);
  const treeLines = props.topology === undefined ? [] : topologyLines(props.topology, theme, Math.max(3, data === undefined ? height - status : Math.floor((height - status) / 2)));
  const tree = [...treeLines, ...pane];
  const topology = <TopologyBlock lines={tree} width={width} theme={theme} />;
  if (data === undefined) {
    return (
      <ScreenFrame width={width} height={height}>
        <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
        {topology}
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
  const standbysSection: Section<ReplicationRow> = {
    title: `standbys (${parts.standbys.length})`, columns: model.columns, rows: parts.standbys, offset: 0,
    emptyText: viewState.filter === null ? 'no standby is connected' : 'no standby matches the filter',
  };
  if (snapshot.role === 'standby') {
    const room = height - status - tree.length - 2;
    // A cascading standby lists the standbys streaming from it, as a primary does.
    const cascading = (snapshot.standbys ?? []).length > 0;
    const sections = cascading ? [standbysSection, slotsSection] : [slotsSection];
    const heights = sectionHeights(cascading ? [{ rows: parts.standbys.length }, { rows: parts.slots.length }] : [{ rows: parts.slots.length }], room);
    return (
      <ScreenFrame width={width} height={height}>
        <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
        {topology}
        <PartsLine parts={receiverLine(snapshot)} width={width} theme={theme} />
        <PartsLine parts={replayLine(snapshot)} width={width} theme={theme} />
        <Sections sections={sections} heights={heights} sort={cascading ? effectiveSort(viewState, model.defaultSort) : null} {...common} />
      </ScreenFrame>
    );
  }
  const room = height - status - tree.length - 1;
  return (
    <ScreenFrame width={width} height={height}>
      <ProbeStatus result={result} theme={theme} what="replication" width={width} now={now} />
      {topology}
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
  selectionOf: (row): Selection => (row.kind === 'standby' && row.standby.application !== '' ? { kind: 'standby', name: row.standby.application } : { kind: 'none' }),
  Screen: ReplicationScreen,
};
