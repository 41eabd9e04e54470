/**
 * Overview: the state of the node in one screen, one line per concern, each from its own probe
 * (so one failing probe darkens one line, not the screen), with sparklines for the rates.
 */
import { Box } from 'ink';
import type { ReactElement } from 'react';
import { ProbeStatus, probeStatusLines, snapshotOf } from '../components/ProbeStatus.js';
import { Sparkline } from '../components/Sparkline.js';
import type { Theme } from '../components/theme.js';
import { displayWidth, fit } from '../format/text-table.js';
import { formatBytes, formatCount, formatDuration, formatPercent, formatRate } from '../format/units.js';
import type { ActivitySnapshot } from '../probes/activity.js';
import type { ConnectionsSnapshot } from '../probes/connections.js';
import type { DatabasesSnapshot } from '../probes/databases.js';
import { resultOf, type SnapshotMap } from '../probes/index.js';
import type { LocksSnapshot } from '../probes/locks.js';
import type { ReplicationSnapshot } from '../probes/replication.js';
import type { ServerSnapshot } from '../probes/server.js';
import type { StatementsSnapshot } from '../probes/statements.js';
import type { ProbeId, ProbeResult } from '../probes/types.js';
import { alertCounts, elapsed, placeOf, topAlerts, valueAgainst, type AlertsView } from '../app/alerts-view.js';
import { bar, fitParts, formatMillis, PartsLine, ScreenFrame, type Part, type Tone } from './common.js';
import { saturationTone } from './Pool.js';
import { lagTone } from './Replication.js';
import type { ScreenModule, ScreenProps } from './types.js';

/** Shown until the backup issue brings backups. */
export const backupsPlaceholder = 'not configured (arrives with the backup issue)';
/** Shown when the console runs no alert engine. */
export const alertsPlaceholder = 'none (alerting not configured yet)';
/** The firing alerts listed under the counts, at most. */
export const overviewTopAlerts = 3;

/** Oldest transaction: warning at 15 min, critical at 1 h (DESIGN.md §5). */
export const oldestTransactionWarningSeconds = 15 * 60;
/** Oldest transaction: critical from here. */
export const oldestTransactionCriticalSeconds = 60 * 60;
/** Uptime under this reads as a recent restart (DESIGN.md §5). */
export const recentRestartSeconds = 10 * 60;

const labelWidth = 13;

/** One overview line: a label, its value parts, and optionally a sparkline at the right. */
interface OverviewLine {
  readonly label: string;
  readonly parts: readonly Part[];
  readonly spark?: readonly number[];
}

/** The value of a line whose probe has no snapshot: why, in a few words (the fix is shown below the lines). */
function missing(result: ProbeResult<unknown>, what: string, theme: Theme): Part[] {
  switch (result.status) {
    case 'pending':
      return probeStatusLines(result, theme, what).map((line) => ({ text: line.text, tone: 'muted' }));
    case 'unsupported':
      return [{ text: `unavailable: ${result.unsupported.reason}`, tone: 'warning' }];
    case 'error':
      return [{ text: `failed: ${result.error.message}`, tone: 'critical' }];
    case 'ok':
      return [];
  }
}

/**
 * Parts from a probe's snapshot, or why there is none. A stale snapshot is marked first, where
 * cutting a long line cannot remove the mark.
 */
function fromProbe<K extends ProbeId>(props: ScreenProps, id: K, render: (snapshot: SnapshotMap[K]) => Part[]): Part[] {
  const result = resultOf(props.results, id);
  const data = snapshotOf(result);
  if (data === undefined) return missing(result, id, props.theme);
  const parts = render(data.snapshot);
  return data.stale ? [{ text: '(stale) ', tone: 'stale' }, ...parts.map((part) => ({ ...part, tone: 'stale' as const }))] : parts;
}

/** A sparkline series, only when the probe behind it has something to show. */
function sparkOf(props: ScreenProps, id: ProbeId, series: readonly number[]): { spark?: readonly number[] } {
  return snapshotOf(resultOf(props.results, id)) === undefined ? {} : { spark: series };
}

function roleParts(server: ServerSnapshot): Part[] {
  const recent = server.uptimeSeconds < recentRestartSeconds;
  return [
    { text: server.role, tone: 'accent' },
    { text: ', up ' },
    { text: formatDuration(server.uptimeSeconds), tone: recent ? 'warning' : undefined },
    { text: `, PostgreSQL ${server.version}` },
    { text: server.timeline === null ? '' : `, timeline ${server.timeline}` },
    { text: server.pendingRestart.length > 0 ? `, restart pending for ${server.pendingRestart.join(', ')}` : '', tone: 'warning' },
  ];
}

function connectionParts(snapshot: ConnectionsSnapshot, theme: Theme, barWidth: number): Part[] {
  const tone = saturationTone(snapshot);
  return [
    { text: `${formatCount(snapshot.usedSlots)}/${formatCount(snapshot.usableSlots)} used`, tone },
    { text: ` ${bar(Math.min(1, snapshot.usedFraction ?? 0), barWidth, theme)} `, tone },
    { text: `${formatPercent(snapshot.usedFraction)}, ${formatCount(snapshot.slotsLeft)} left` },
  ];
}

/** Transactions per second over all databases; null before the second snapshot. */
export function transactionsPerSecond(snapshot: DatabasesSnapshot): number | null {
  if (!snapshot.databases.some((db) => db.commitsPerSecond !== null)) return null;
  return snapshot.databases.reduce((sum, db) => sum + (db.commitsPerSecond ?? 0) + (db.rollbacksPerSecond ?? 0), 0);
}

function tpsParts(snapshot: DatabasesSnapshot): Part[] {
  const tps = transactionsPerSecond(snapshot);
  if (tps === null) return [{ text: 'rates appear with the second snapshot', tone: 'muted' }];
  const rollbacks = snapshot.databases.reduce((sum, db) => sum + (db.rollbacksPerSecond ?? 0), 0);
  return [{ text: formatRate(tps) }, { text: rollbacks > 0 ? ` (${formatRate(rollbacks)} rollbacks)` : '', tone: 'muted' }];
}

/** Blocks found in shared buffers over all databases, since their statistics were reset. */
export function cacheHitFraction(snapshot: DatabasesSnapshot): number | null {
  const hit = snapshot.databases.reduce((sum, db) => sum + db.blocksHit, 0);
  const read = snapshot.databases.reduce((sum, db) => sum + db.blocksRead, 0);
  return hit + read > 0 ? hit / (hit + read) : null;
}

function cacheParts(snapshot: DatabasesSnapshot): Part[] {
  const fraction = cacheHitFraction(snapshot);
  return [{ text: formatPercent(fraction), tone: fraction !== null && fraction < 0.9 ? 'warning' : undefined }, { text: ' of blocks read from shared buffers', tone: 'muted' }];
}

function replicationParts(snapshot: ReplicationSnapshot): Part[] {
  if (snapshot.role === 'standby') {
    const receiver = snapshot.receiver;
    const replay = snapshot.replay;
    return [
      { text: receiver === null ? 'standby, receiver not running' : `standby, receiver ${receiver.status ?? 'unknown'}`, tone: receiver?.status === 'streaming' ? undefined : 'critical' },
      { text: `, replay ${formatBytes(replay.gapBytes)} / ${formatDuration(replay.delaySeconds)} behind`, tone: lagTone(replay.gapBytes, replay.delaySeconds) },
    ];
  }
  const standbys = snapshot.standbys;
  const parts: Part[] = [];
  if (standbys.length === 0) {
    parts.push({ text: 'no standby', tone: 'muted' });
  } else {
    const worst = [...standbys].sort((a, b) => (b.replayBytes ?? 0) - (a.replayBytes ?? 0) || (b.replayLagSeconds ?? 0) - (a.replayLagSeconds ?? 0))[0];
    parts.push({ text: `${standbys.length} ${standbys.length === 1 ? 'standby' : 'standbys'}` });
    if (worst !== undefined) {
      parts.push({
        text: `, worst lag ${formatBytes(worst.replayBytes)} / ${formatDuration(worst.replayLagSeconds)} (${worst.application || `pid ${worst.pid}`})`,
        tone: lagTone(worst.replayBytes, worst.replayLagSeconds),
      });
    }
  }
  if (snapshot.archiver.failing) parts.push({ text: ', archiving failing', tone: 'critical' });
  return parts;
}

/** The session with the oldest open transaction, or undefined when none is open. */
export function oldestTransaction(snapshot: ActivitySnapshot): { readonly pid: number; readonly seconds: number; readonly application: string } | undefined {
  let oldest: { pid: number; seconds: number; application: string } | undefined;
  for (const session of snapshot.sessions) {
    if (session.xactSeconds === null) continue;
    if (oldest === undefined || session.xactSeconds > oldest.seconds) {
      oldest = { pid: session.pid, seconds: session.xactSeconds, application: session.application || session.backendType };
    }
  }
  return oldest;
}

function oldestParts(snapshot: ActivitySnapshot): Part[] {
  const oldest = oldestTransaction(snapshot);
  if (oldest === undefined) return [{ text: 'no open transaction', tone: 'muted' }];
  const tone: Tone | undefined = oldest.seconds >= oldestTransactionCriticalSeconds ? 'critical' : oldest.seconds >= oldestTransactionWarningSeconds ? 'warning' : undefined;
  return [{ text: formatDuration(oldest.seconds), tone }, { text: ` (pid ${oldest.pid}, ${oldest.application})` }];
}

function lockParts(snapshot: LocksSnapshot): Part[] {
  if (snapshot.waiters.length === 0) return [{ text: 'no session waits on a lock', tone: 'ok' }];
  const longest = snapshot.waiters.reduce((max, waiter) => Math.max(max, waiter.waitSeconds ?? 0), 0);
  return [
    { text: `${snapshot.waiters.length} waiting`, tone: 'warning' },
    { text: `, ${snapshot.rootBlockers.length} root ${snapshot.rootBlockers.length === 1 ? 'blocker' : 'blockers'}, longest wait ${formatDuration(longest)}` },
  ];
}

function topStatementParts(snapshot: StatementsSnapshot): Part[] {
  const withRates = snapshot.statements.filter((statement) => statement.interval !== null);
  if (withRates.length > 0) {
    const top = withRates.reduce((best, statement) => ((statement.interval?.execMsPerSecond ?? 0) > (best.interval?.execMsPerSecond ?? 0) ? statement : best));
    return [{ text: `${formatMillis(top.interval?.execMsPerSecond ?? null)}/s`, tone: 'accent' }, { text: ` ${top.query}` }];
  }
  const top = snapshot.statements[0];
  if (top === undefined) return [{ text: 'no statement recorded yet', tone: 'muted' }];
  return [{ text: `${formatDuration(top.totalExecMs / 1000)} total`, tone: 'accent' }, { text: ` ${top.query}` }];
}

/** Firing and unknown alerts by severity, then pending, and how many are silenced or acknowledged. */
export function alertCountParts(view: AlertsView, now: Date): Part[] {
  const counts = alertCounts(view, now);
  return [
    { text: `${counts.critical} critical`, tone: counts.critical > 0 ? 'critical' : undefined },
    { text: ', ' },
    { text: `${counts.warning} warning`, tone: counts.warning > 0 ? 'warning' : undefined },
    { text: ', ' },
    { text: `${counts.unknown} unknown`, tone: counts.unknown > 0 ? 'stale' : undefined },
    { text: counts.pending > 0 ? `, ${counts.pending} pending` : '', tone: 'muted' },
    { text: counts.muted > 0 ? ` (${counts.muted} silenced or acknowledged)` : '', tone: 'muted' },
    { text: view.evaluatedAt === null ? ' · waiting for the first evaluation' : '', tone: 'muted' },
  ];
}

/** The worst firing alerts, one line each, under the counts. */
function topAlertLines(view: AlertsView, now: Date, count: number): OverviewLine[] {
  return topAlerts(view, now, count).map((entry): OverviewLine => {
    const { alert } = entry;
    const tone: Tone | undefined = entry.section === 'muted' ? 'muted' : alert.severity === 'critical' ? 'critical' : alert.severity === 'warning' ? 'warning' : alert.severity === 'unknown' ? 'stale' : undefined;
    return {
      label: '',
      parts: [
        { text: alert.severity, tone },
        { text: ` ${alert.checkId} ${alert.subject} on ${placeOf(alert)}` },
        { text: ` ${[valueAgainst(alert.finding.value, alert.finding.threshold, alert.finding.unit), elapsed(alert.firingSince ?? alert.firstSeen, now)].filter((part) => part !== '-').join(', ')}`, tone: 'muted' },
        { text: entry.section === 'muted' ? (alert.acknowledged === null ? ' (silenced)' : ' (acknowledged)') : '', tone: 'muted' },
      ],
    };
  });
}

/** The overview's lines, in reading order. */
export function overviewLines(props: ScreenProps): readonly OverviewLine[] {
  const barWidth = Math.max(4, Math.min(20, props.width - 70));
  return [
    { label: 'role', parts: fromProbe(props, 'server', roleParts) },
    { label: 'connections', parts: fromProbe(props, 'connections', (s) => connectionParts(s, props.theme, barWidth)), ...sparkOf(props, 'connections', props.history.connections) },
    { label: 'tps', parts: fromProbe(props, 'databases', tpsParts), ...sparkOf(props, 'databases', props.history.tps) },
    { label: 'cache hit', parts: fromProbe(props, 'databases', cacheParts) },
    { label: 'replication', parts: fromProbe(props, 'replication', replicationParts), ...sparkOf(props, 'replication', props.history.lagBytes) },
    { label: 'oldest xact', parts: fromProbe(props, 'activity', oldestParts) },
    { label: 'lock waits', parts: fromProbe(props, 'locks', lockParts) },
    { label: 'top query', parts: fromProbe(props, 'statements', topStatementParts) },
    { label: 'backups', parts: [{ text: backupsPlaceholder, tone: 'muted' }] },
    ...alertLines(props),
  ];
}

/** The alerts line (counts), and the top firing alerts under it while the screen has room for them. */
function alertLines(props: ScreenProps): OverviewLine[] {
  const view = props.alerts;
  if (view === undefined) return [{ label: 'alerts', parts: [{ text: alertsPlaceholder, tone: 'muted' }] }];
  // Nine lines above, a blank line and probe troubles below: the top alerts take what is left.
  const room = Math.max(0, Math.min(overviewTopAlerts, props.height - 11));
  return [{ label: 'alerts', parts: alertCountParts(view, props.now) }, ...topAlertLines(view, props.now, room)];
}

/** The probes the overview reads, with the words their status lines use. */
const overviewProbes: readonly (readonly [ProbeId, string])[] = [
  ['server', 'server'], ['connections', 'connections'], ['databases', 'databases'], ['replication', 'replication'],
  ['activity', 'activity'], ['locks', 'locks'], ['statements', 'statements'],
];

function OverviewRow({ line, width, theme }: { readonly line: OverviewLine; readonly width: number; readonly theme: Theme }): ReactElement {
  // The sparkline takes the right end when the line has one and there is room for it.
  const sparkWidth = line.spark === undefined || line.spark.length === 0 ? 0 : Math.min(60, Math.max(0, width - labelWidth - 48));
  const valueWidth = width - labelWidth - (sparkWidth > 0 ? sparkWidth + 1 : 0);
  const value = fitParts(line.parts, valueWidth, theme.symbols.ellipsis);
  const used = value.reduce((sum, part) => sum + displayWidth(part.text), 0);
  const parts: Part[] = [{ text: fit(line.label, labelWidth), tone: 'header' }, ...value];
  return (
    <Box flexDirection="row" flexShrink={0}>
      <PartsLine parts={sparkWidth > 0 ? [...parts, { text: ' '.repeat(valueWidth - used + 1) }] : parts} width={width - sparkWidth} theme={theme} />
      {sparkWidth > 0 && line.spark !== undefined ? <Sparkline values={line.spark} width={sparkWidth} theme={theme} /> : null}
    </Box>
  );
}

/** A probe state shown below the lines, for one or several probes in the same trouble. */
interface Trouble {
  readonly id: string;
  readonly what: string;
  readonly result: ProbeResult<unknown>;
}

/**
 * Probes that are unsupported or failing, those with the same message grouped: a lost connection
 * fails every probe at once, and seven copies of one error would push the rest off the screen.
 */
export function troubles(props: ScreenProps): readonly Trouble[] {
  const groups = new Map<string, { ids: ProbeId[]; whats: string[]; result: ProbeResult<unknown> }>();
  for (const [id, what] of overviewProbes) {
    const result = resultOf(props.results, id) as ProbeResult<unknown>;
    if (result.status !== 'unsupported' && result.status !== 'error') continue;
    const key = probeStatusLines(result, props.theme, '', props.now).map((line) => line.text).join('\n');
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { ids: [id], whats: [what], result });
    else {
      group.ids.push(id);
      group.whats.push(what);
    }
  }
  return [...groups.values()].map((group) => ({
    id: group.ids.join(','),
    // The lines above say which probes are affected; the message must not be cut off by their names.
    what: group.whats.length <= 2 ? group.whats.join(' and ') : `${group.whats.length} probes`,
    result: group.result,
  }));
}

function OverviewScreen(props: ScreenProps): ReactElement {
  const { width, height, theme, now } = props;
  const lines = overviewLines(props);
  // Below the lines: why probes are unavailable or failing (with the fix), as many as fit.
  const troubled = troubles(props);
  let room = height - lines.length - 1;
  const shown: Trouble[] = [];
  for (const entry of troubled) {
    const need = probeStatusLines(entry.result, theme, entry.what, now).length;
    if (need > room - (shown.length < troubled.length - 1 ? 1 : 0)) break;
    shown.push(entry);
    room -= need;
  }
  const hidden = troubled.slice(shown.length).reduce((sum, entry) => sum + entry.id.split(',').length, 0);
  return (
    <ScreenFrame width={width} height={height}>
      {lines.map((line, index) => (
        <OverviewRow key={`${line.label}-${index}`} line={line} width={width} theme={theme} />
      ))}
      {troubled.length > 0 && height > lines.length + 1 ? <PartsLine parts={[{ text: ' ' }]} width={width} theme={theme} /> : null}
      {shown.map(({ id, what, result }) => (
        <ProbeStatus key={id} result={result} theme={theme} what={what} width={width} now={now} />
      ))}
      {hidden > 0 && room >= 1 ? <PartsLine parts={[{ text: `${hidden} more ${hidden === 1 ? 'probe is' : 'probes are'} unavailable: see their views`, tone: 'muted' }]} width={width} theme={theme} /> : null}
    </ScreenFrame>
  );
}

/** The Overview view (no list). */
export const overviewScreen: ScreenModule = {
  id: 'overview',
  title: 'Overview',
  Screen: OverviewScreen,
};
