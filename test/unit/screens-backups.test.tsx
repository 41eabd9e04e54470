// The Backups screen (issue 5 item 11) over hand-made catalogs: no backup plan, reading, a
// repository that cannot be read, and data (backups, recovery window with a gap and a fork, the
// archiver from the replication probe), at 80×24 and 200×50; and the WAL streaming line in each
// of its states (receiving, late or behind, NOT CONNECTED with the slot's state, no slot, a lost
// slot, a standby, streaming not enabled here).
import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { backupEntries, type BackupsView, type RepositoryData, type RepositoryState, type StreamingPlan } from '../../src/app/backup-monitor.js';
import type { Catalog } from '../../src/backup/catalog.js';
import type { DrillRecord } from '../../src/backup/drill.js';
import { recoveryWindow } from '../../src/backup/window.js';
import type { ReplicationSlot, Standby } from '../../src/probes/replication.js';
import type { Results } from '../../src/probes/runner.js';
import { archiveLine, backupsScreen, receiverReplyAgeWarningSeconds, streamingLines } from '../../src/screens/Backups.js';
import type { Part } from '../../src/screens/common.js';
import { backupOf, catalogOf, idAt, manifestOf, walName, walRange } from '../fixtures/backup-catalog.js';
import { fixtureNow, okResult, primaryReplication, renderScreen, resultsIn, screenProps, standbyReplication } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const at = (ms: number): Date => new Date(fixtureNow.getTime() - ms);

const old = manifestOf(idAt(at(3 * DAY)), at(3 * DAY), 1, 1, 1);
const standbyBackup = { ...manifestOf(idAt(at(DAY)), at(DAY), 1, 4, 4), source: { cluster: 'main', node: 'db2', standby: true }, durationMs: 125_000 };
const newest = manifestOf(idAt(at(2 * HOUR)), at(2 * HOUR), 2, 9, 9);

/** Timeline 1: 1–8 with 6 missing; timeline 2 forked at 0/8000028, 8–10. */
function localCatalog(): Catalog {
  return catalogOf({
    backups: [
      backupOf(old),
      { ...backupOf(standbyBackup), storedBytes: 3 * 1024 ** 3, verifications: [{ at: at(20 * HOUR).toISOString(), ok: true, problems: [] }] },
      { ...backupOf(newest), storedBytes: 5 * 1024 ** 3, verifications: [{ at: at(HOUR).toISOString(), ok: false, problems: ['base.tar.zst: checksum mismatch'] }] },
    ],
    wal: [...walRange(1, 1, 8, [6]), ...walRange(2, 8, 10)],
    histories: [{ key: 'wal/00000002/00000002.history.zst', timeline: 2, parent: { timeline: 1, switchLsn: '0/8000028' } }],
  });
}

function dataOf(name: string, catalog: Catalog, readAt: Date, drills: readonly DrillRecord[] = []): RepositoryData {
  const window = recoveryWindow(catalog);
  return { readAt, catalog, window, drills, backups: backupEntries(name, catalog, window, drills) };
}

const local: RepositoryState = { name: 'local', description: 'local /var/lib/pgwarden/repo', status: 'ok', ...dataOf('local', localCatalog(), at(12_000)) };
const offsiteError: RepositoryState = {
  name: 'offsite', description: 's3://backups/main', status: 'error', reason: 'repository "offsite": AWS_ACCESS_KEY_ID is not set',
  fix: 'export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY', failedAt: at(5000), last: null,
};

function configured(repositories: readonly RepositoryState[], extra: Partial<Extract<BackupsView, { kind: 'configured' }>> = {}): BackupsView {
  return { kind: 'configured', cluster: 'main', encrypted: true, keyProblem: null, repositories, reading: false, ...extra };
}

function rendered(backups: BackupsView | undefined, options: PropsOptions = {}): readonly string[] {
  return renderScreen(backupsScreen, { ...screenProps('backups', options), backups }).text;
}

describe('Backups screen: the four states', () => {
  it('without a backup plan, says how to configure one', () => {
    const lines = rendered({ kind: 'unconfigured', cluster: 'main' });
    expect(lines.slice(0, 4)).toEqual([
      'No backup plan for cluster main: the config has no backups section covering it.',
      '',
      'To configure one, add a "backups" section (docs/configuration.md#backups), e.g.:',
      '  "backups": { "repositories": [{ "name": "local", "type": "local", "path": "/v…',
    ]);
    expect(lines).toHaveLength(24);
  });

  it('while reading, names each repository being read', () => {
    const lines = rendered(configured([
      { name: 'local', description: 'local /var/lib/pgwarden/repo', status: 'loading' },
      { name: 'offsite', description: 's3://backups/main', status: 'loading' },
    ], { reading: true }));
    expect(lines.filter((line) => line !== '')).toEqual([
      'cluster main: 2 repositories · encrypted · reading…',
      'archive: FAILING · 12,000 archived, last 6m40s ago · 7 failed, last 20s ago (00…',
      'local (local /var/lib/pgwarden/repo): reading the catalog…',
      'offsite (s3://backups/main): reading the catalog…',
    ]);
  });

  it('a repository that cannot be read shows the reason and the fix, beside one that can', () => {
    const lines = rendered(configured([local, offsiteError]), { width: 200, height: 50 });
    expect(lines).toContain('offsite (s3://backups/main): cannot read it (5.0s ago): repository "offsite": AWS_ACCESS_KEY_ID is not set');
    expect(lines).toContain('  fix: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    expect(lines).toHaveLength(50);
  });

  it('a failed read after a good one keeps the last data, marked as such', () => {
    if (local.status !== 'ok') throw new Error('the fixture is a good read');
    const last: RepositoryData = { readAt: local.readAt, catalog: local.catalog, window: local.window, backups: local.backups, drills: local.drills };
    const lines = rendered(configured([{ ...offsiteError, name: 'local', description: 'local /var/lib/pgwarden/repo', fix: 'check that /var/lib/pgwarden/repo exists', last }]), { width: 200, height: 50 });
    expect(lines).toContain('  shown: the last good read, 12s ago');
    expect(lines.some((line) => line.includes(newest.id))).toBe(true);
  });
});

describe('Backups screen with data', () => {
  it('at 80×24: archiver, window with its gap and fork, and the backups newest first', () => {
    const lines = rendered(configured([local]));
    expect(lines.filter((line) => line !== '')).toEqual([
      'cluster main: 1 repository · encrypted',
      'archive: FAILING · 12,000 archived, last 6m40s ago · 7 failed, last 20s ago (00…',
      'local (local /var/lib/pgwarden/repo): 3 backups · read 12s ago',
      `  window: 3d00h ago (0/1000100) → ${walName(2, 10)} (tl 2) · 1 gap · 2 t…`,
      `  gap: 1 missing on tl 1: ${walName(1, 6)} (after 000000010000000000000…`,
      '  fork: tl 2 from tl 1 at 0/8000028',
      expect.stringMatching(/^ finished▼\s+repo\s+size\s+took\s+from\s+verified\s+drilled/),
      expect.stringMatching(/^>2h00m ago\s+local\s+5\.00 GB\s+1m05s primary db1\s+FAILED 1h00m ago\s+never/),
      expect.stringMatching(/^ 1d00h ago\s+local\s+3\.00 GB\s+2m05s standby db2\s+ok 20h00m ago\s+never/),
      expect.stringMatching(/^ 3d00h ago\s+local\s+1000 B\s+1m05s primary db1\s+never\s+never/),
    ]);
    expect(lines).toHaveLength(24);
  });

  it('shows the last drill of each backup and of the repository: restore time and data-loss window, or FAILED', () => {
    const catalog = localCatalog();
    const [oldest, middle] = catalog.backups.map((backup) => backup.manifest.id);
    const drill = (id: string, backupId: string, hoursAgo: number, ok: boolean): DrillRecord => ({
      format: 1, id, cluster: 'main', backupId, startedAt: at(hoursAgo * HOUR + 120_000).toISOString(), finishedAt: at(hoursAgo * HOUR).toISOString(),
      target: 'latest', restoreSeconds: 95, recoveredTo: null, dataLossWindowSeconds: 42, checks: [], ok, reason: ok ? null : 'amcheck: index t_pkey is corrupt',
    });
    const withDrills: RepositoryState = { name: 'local', description: 'local /var/lib/pgwarden/repo', status: 'ok', ...dataOf('local', catalog, at(12_000), [drill('d1', oldest ?? '', 30, false), drill('d2', middle ?? '', 3, true)]) };
    const lines = rendered(configured([withDrills]), { width: 200, height: 50 });
    expect(lines).toContainEqual('  last drill: ok 3h00m ago, restored in 1m35s, data-loss window 42s');
    expect(lines.find((line) => line.includes(middle ?? '?'))).toMatch(/ok 1m35s\s+/);
    expect(lines.find((line) => line.includes(oldest ?? '?'))).toMatch(/FAILED\s+/);

    const failedLast: RepositoryState = { ...withDrills, ...dataOf('local', catalog, at(12_000), [drill('d3', middle ?? '', 1, false)]) };
    expect(rendered(configured([failedLast]), { width: 200, height: 50 })).toContainEqual('  last drill: FAILED 1h00m ago: amcheck: index t_pkey is corrupt');
  });

  it('at 200×50: the whole lines, the backup ids, and an unrestorable backup says why', () => {
    const lines = rendered(configured([local]), { width: 200, height: 50 });
    expect(lines[3]).toBe(`  window: 3d00h ago (0/1000100) → ${walName(2, 10)} (tl 2) · 1 gap · 2 timelines`);
    expect(lines.find((line) => line.includes(newest.id))).toMatch(/FAILED 1h00m ago\s+never\s+20240501T100000Z-full$/);
    expect(lines).toHaveLength(50);
    // The backup taken before the gap cannot reach its own stop segment when that one is missing.
    const broken = manifestOf(idAt(at(5 * HOUR)), at(5 * HOUR), 1, 6, 6);
    const catalog = catalogOf({ backups: [backupOf(broken)], wal: walRange(1, 1, 8, [6]) });
    const withBroken: RepositoryState = { name: 'local', description: 'local /r', status: 'ok', ...dataOf('local', catalog, at(1000)) };
    const text = rendered(configured([withBroken]), { width: 200, height: 50 });
    expect(text).toContain('  window: no restorable backup → 000000010000000000000008 (tl 1) · 1 gap · 1 timeline');
    expect(text.find((line) => line.includes(broken.id))).toContain(`NOT RESTORABLE: WAL ${walName(1, 6)} is not archived`);
  });

  it('the filter narrows the list and the header says how many rows are left', () => {
    const lines = rendered(configured([local]), { width: 200, height: 50, viewState: { filter: parseFilter('standby') } });
    expect(lines[0]).toBe('cluster main: 1 repository · encrypted · filter standby: 1 rows');
    expect(lines.filter((line) => /ago\s+local/.test(line))).toHaveLength(1);
  });

  it('the model lists every repository\'s backups with unique keys, newest first', () => {
    const offsite: RepositoryState = { name: 'offsite', description: 's3://b', status: 'ok', ...dataOf('offsite', localCatalog(), at(1000)) };
    const model = backupsScreen.model!({ ...screenProps('backups'), backups: configured([local, offsite]) });
    expect(model.rows.map(model.rowKey)).toEqual([`local/${newest.id}`, `offsite/${newest.id}`, `local/${standbyBackup.id}`, `offsite/${standbyBackup.id}`, `local/${old.id}`, `offsite/${old.id}`]);
  });
});

describe('archive status', () => {
  it('says the archiver is the primary\'s business on a standby, and when it is off', () => {
    expect(archiveLine(resultsIn('ok', { replication: okResult(standbyReplication) }))[0]?.text).toMatch(/^archive: this node is a standby/);
    const off = resultsIn('ok', { replication: okResult({ ...primaryReplication, archiver: { ...primaryReplication.archiver, mode: 'off' } }) });
    expect(archiveLine(off)[0]?.text).toMatch(/^archive: archive_mode is off/);
    const healthy = resultsIn('ok', { replication: okResult({ ...primaryReplication, archiver: { ...primaryReplication.archiver, failing: false, failedCount: 0, lastFailedSeconds: null, lastFailedWal: null, waitingSegments: 1 } }) });
    expect(archiveLine(healthy).map((part) => part.text).join('')).toBe('archive: ok · 12,000 archived, last 6m40s ago · 0 failed · 1 WAL waiting');
    expect(archiveLine(resultsIn('pending'))[0]?.text).toBe('archive: waiting for the replication probe…');
  });
});

describe('streaming status', () => {
  const MB = 1024 ** 2;
  const plan = { enabled: true, slot: 'pgwarden_main' } as const;
  const receiver: Standby = {
    ...primaryReplication.standbys[0]!, pid: 900, application: 'pgwarden-receivewal', client: '10.0.0.9', replayLsn: null, replayBytes: null,
    flushBytes: 2 * MB, flushLagSeconds: 0.8, replyAgeSeconds: 1.2, lag: { bytes: null, seconds: null },
  };
  const slot: ReplicationSlot = { ...primaryReplication.slots[1]!, name: 'pgwarden_main', active: true, activePid: 900, retainedBytes: 3 * MB };
  const inactiveSlot: ReplicationSlot = { ...slot, active: false, activePid: null, retainedBytes: 48 * MB, inactiveSince: at(300_000) };
  const withStreaming = (standbys: readonly Standby[], slots: readonly ReplicationSlot[]): Results =>
    resultsIn('ok', { replication: okResult({ ...primaryReplication, standbys: [...primaryReplication.standbys, ...standbys], slots: [...primaryReplication.slots, ...slots] }) });
  const text = (parts: readonly Part[]): string => parts.map((part) => part.text).join('');
  const lines = (results: Results, streaming: StreamingPlan = plan): string[] => streamingLines(results, streaming, fixtureNow).map(text);

  it('receiving: state, flush lag, reply age and the slot, in the ok tone', () => {
    const [line, ...rest] = streamingLines(withStreaming([receiver], [slot]), plan, fixtureNow);
    expect(rest).toEqual([]);
    expect(text(line!)).toBe('streaming: receiving (streaming) · flush lag 2.00 MB, 800ms · reply 1.2s ago · slot pgwarden_main');
    expect(line![0]?.tone).toBe('ok');
  });

  it('receiving with a large flush lag, a late reply or catching up is a warning', () => {
    const late = streamingLines(withStreaming([{ ...receiver, replyAgeSeconds: receiverReplyAgeWarningSeconds + 15 }], [slot]), plan, fixtureNow)[0]!;
    expect(late[0]?.tone).toBe('warning');
    expect(late.find((part) => part.text.startsWith(' · reply'))).toEqual({ text: ' · reply 45s ago', tone: 'warning' });
    const behind = streamingLines(withStreaming([{ ...receiver, flushBytes: 200 * MB, flushLagSeconds: 70 }], [slot]), plan, fixtureNow)[0]!;
    expect(behind[0]?.tone).toBe('warning');
    expect(behind[1]).toEqual({ text: ' · flush lag 200 MB, 1m10s', tone: 'warning' });
    const catchingUp = streamingLines(withStreaming([{ ...receiver, state: 'catchup' }], [slot]), plan, fixtureNow)[0]!;
    expect(text(catchingUp)).toMatch(/^streaming: receiving \(catchup\) · /);
    expect(catchingUp[0]?.tone).toBe('warning');
    // The walsender before START_REPLICATION holds no slot yet.
    expect(lines(withStreaming([{ ...receiver, state: 'startup' }], [inactiveSlot]))[0]).toMatch(/ · holds no slot \(expected pgwarden_main\)$/);
  });

  it('enabled but no receiver: NOT CONNECTED, the inactive slot with the WAL it keeps, and what to check', () => {
    const shown = streamingLines(withStreaming([], [inactiveSlot]), plan, fixtureNow);
    expect(shown.map(text)).toEqual([
      'streaming: NOT CONNECTED · slot pgwarden_main inactive for 5m00s, retaining 48.0 MB of WAL on the server (wal_status reserved)',
      '  check: is `pgwarden --watch` running? Its log says why pg_receivewal stopped; meanwhile the slot keeps WAL on the server (cap it with max_slot_wal_keep_size, docs/wal-streaming.md)',
    ]);
    expect(shown[0]?.[0]?.tone).toBe('critical');
    expect(shown[1]?.[0]?.tone).toBe('warning');
    // Another client of pgwarden's name on the slot is not the receiver.
    expect(lines(withStreaming([{ ...receiver, application: 'walreceiver' }], [slot]))).toEqual([
      'streaming: NOT CONNECTED · slot pgwarden_main is held by pid 900, not by pgwarden-receivewal',
      "  check: which client holds slot pgwarden_main (pg_stat_replication, pid 900): pgwarden's receiver cannot stream on it meanwhile (docs/wal-streaming.md)",
    ]);
  });

  it('enabled but the slot does not exist, or lost its WAL', () => {
    expect(lines(withStreaming([], []))).toEqual([
      'streaming: NOT CONNECTED · slot pgwarden_main does not exist',
      '  check: is `pgwarden --watch` running with streaming for this cluster? It creates the slot when it starts pg_receivewal; its log says why it did not (docs/wal-streaming.md)',
    ]);
    const lost = streamingLines(withStreaming([], [{ ...inactiveSlot, walStatus: 'lost', retainedBytes: null }]), plan, fixtureNow);
    expect(lost.map(text)).toEqual([
      'streaming: NOT CONNECTED · slot pgwarden_main inactive for 5m00s, retaining - of WAL on the server (wal_status lost)',
      "  fix: the slot lost WAL the receiver never got (only archive_command archived it): select pg_drop_replication_slot('pgwarden_main'); the receiver creates it again at its next start (docs/wal-streaming.md)",
    ]);
    expect(lost.flat().map((part) => part.tone)).toEqual(['critical', 'critical', 'critical']);
  });

  it('on a standby, streaming runs against the primary; before the probe, it waits', () => {
    const shown = streamingLines(resultsIn('ok', { replication: okResult(standbyReplication) }), plan, fixtureNow);
    expect(shown).toEqual([[{ text: 'streaming: this node is a standby; streaming runs against the primary (switch to it to see the receiver)', tone: 'muted' }]]);
    expect(lines(resultsIn('pending'))).toEqual(['streaming: waiting for the replication probe…']);
    expect(lines(resultsIn('pending'), { enabled: false, slot: 'pgwarden_main' })).toEqual([]);
  });

  it('not enabled here: no line unless the server shows a receiver or the slot', () => {
    const off = { enabled: false, slot: 'pgwarden_main' };
    expect(lines(withStreaming([], []), off)).toEqual([]);
    expect(lines(resultsIn('ok', { replication: okResult(standbyReplication) }), off)).toEqual([]);
    expect(lines(withStreaming([receiver], [slot]), off)).toEqual([
      "streaming: receiving (streaming) · flush lag 2.00 MB, 800ms · reply 1.2s ago · slot pgwarden_main · streaming is not enabled in this console's config",
    ]);
    expect(lines(withStreaming([], [inactiveSlot]), off)).toEqual([
      "streaming: not connected (not enabled in this console's config) · slot pgwarden_main inactive for 5m00s, retaining 48.0 MB of WAL on the server (wal_status reserved)",
      "  check: if a watcher elsewhere streams this cluster, is it running? If nothing streams it any more, drop the slot: select pg_drop_replication_slot('pgwarden_main') (docs/wal-streaming.md)",
    ]);
    // Somebody else's client on a slot of that name, with streaming off here: not shown.
    expect(lines(withStreaming([{ ...receiver, application: 'walreceiver' }], [slot]), off)).toEqual([]);
  });

  it('the screen shows the line under the archive line', () => {
    const view = configured([local], { streaming: plan });
    const results = withStreaming([], [inactiveSlot]);
    const narrow = rendered(view, { results });
    expect(narrow.slice(0, 4)).toEqual([
      'cluster main: 1 repository · encrypted',
      'archive: FAILING · 12,000 archived, last 6m40s ago · 7 failed, last 20s ago (00…',
      'streaming: NOT CONNECTED · slot pgwarden_main inactive for 5m00s, retaining 48.…',
      '  check: is `pgwarden --watch` running? Its log says why pg_receivewal stopped;…',
    ]);
    expect(narrow).toHaveLength(24);
    const wide = rendered(view, { results: withStreaming([receiver], [slot]), width: 200, height: 50 });
    expect(wide[2]).toBe('streaming: receiving (streaming) · flush lag 2.00 MB, 800ms · reply 1.2s ago · slot pgwarden_main');
    expect(wide[3]).toBe('local (local /var/lib/pgwarden/repo): 3 backups · read 12s ago');
  });
});
