// The storage, sequence and backup checks on fixture snapshots: thresholds, the 24 h disk forecast
// from samples between evaluations, checkpoint counter resets, and UNKNOWN whenever free disk or
// pg_wal cannot be measured. The data-directory proof runs on real files in a temporary directory.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backupsCheck } from '../../src/checks/backups.js';
import { sequencesCheck } from '../../src/checks/sequences.js';
import { checkpointsCheck, diskCheck, walSizeCheck } from '../../src/checks/storage.js';
import { verifyDataDirectory, type DataDirectoryClaim } from '../../src/probes/local-disk.js';
import type { SequencesSnapshot, SequenceUsage } from '../../src/probes/sequences.js';
import type { Filesystem, StorageSnapshot } from '../../src/probes/storage.js';
import { sequencesSnapshot, serverSnapshot, storageSnapshot } from '../fixtures/snapshots.js';
import { ago, fixtureNow, okResult, okResults, resultsWith, run, stateAfter, summary } from '../fixtures/checks.js';

const GB = 1024 ** 3;
const MB = 1024 ** 2;

/** The fixture with the data disk's free space set (and used space to match). */
function withDataDisk(availableBytes: number, totalBytes = 100 * GB): StorageSnapshot {
  const usedBytes = totalBytes - availableBytes;
  const data: Filesystem = { ...storageSnapshot.disk.filesystems[0]!, totalBytes, usedBytes, availableBytes, usedFraction: usedBytes / totalBytes };
  return { ...storageSnapshot, disk: { ...storageSnapshot.disk, filesystems: [data] } };
}

function storageAt(snapshot: StorageSnapshot, at: Date) {
  return resultsWith({ storage: okResult(snapshot, at) });
}

describe('disk', () => {
  it('one finding per filesystem against 80 % / 90 % used, naming the locations on it', () => {
    const findings = run(diskCheck, okResults({ storage: storageSnapshot }));
    expect(summary(findings)).toEqual([
      ['ok', 'data directory + pg_wal', 'data directory, pg_wal (/var/lib/postgresql/15/main, /var/lib/postgresql/15/main/pg_wal): 62.0% used, 38.0 GB free of 100 GB; growth not measured yet (it compares free space between evaluations) (warning ≥ 80%, or full within 1d00h)'],
      ['warning', 'tablespace archive', 'tablespace archive (/srv/pg-archive): 85.0% used, 75.0 GB free of 500 GB; growth not measured yet (it compares free space between evaluations) (warning ≥ 80%)'],
    ]);
    expect(findings.map((f) => [f.value, f.unit, f.warningThreshold])).toEqual([[0.62, 'fraction', 0.8], [0.85, 'fraction', 0.8]]);
    const full = run(diskCheck, okResults({ storage: withDataDisk(5 * GB) }))[0];
    expect([full?.severity, full?.threshold]).toEqual(['critical', 0.9]);
    expect(full?.message).toContain('95.0% used, 5.00 GB free of 100 GB');
    expect(full?.message).toContain('(critical ≥ 90%)');
    expect(run(diskCheck, okResults({ storage: withDataDisk(15 * GB) }), { overrides: { warningFraction: 0.9, criticalFraction: 0.95 } })[0]?.severity).toBe('ok');
  });

  it('warns when the disk fills within 24 h at the growth measured between evaluations, and says how it was computed', () => {
    // 60 GB free an hour ago, 40 GB now: 20 GB an hour, full in 2 hours.
    let state = stateAfter(diskCheck, storageAt(withDataDisk(60 * GB), ago(3600)), undefined, ago(3600));
    state = stateAfter(diskCheck, storageAt(withDataDisk(50 * GB), ago(1800)), state, ago(1800));
    const now = storageAt(withDataDisk(40 * GB), fixtureNow);
    const [filling] = run(diskCheck, now, { previous: state });
    expect(filling?.severity).toBe('warning');
    expect(filling?.message).toBe('data directory, pg_wal (/var/lib/postgresql/15/main, /var/lib/postgresql/15/main/pg_wal): 60.0% used, 40.0 GB free of 100 GB; free space fell by 20.0 GB over the last 1h00m (between evaluations): full in about 2h00m at that rate (warning: full within 1d00h)');
    expect(filling?.context.details?.['secondsToFull']).toBeCloseTo(7200, 6);

    // The same loss over the hour with 1 TB free: full in 50 h, not a warning.
    let slow = stateAfter(diskCheck, storageAt(withDataDisk(1020 * GB, 2000 * GB), ago(3600)), undefined, ago(3600));
    slow = stateAfter(diskCheck, storageAt(withDataDisk(1010 * GB, 2000 * GB), ago(1800)), slow, ago(1800));
    const [later] = run(diskCheck, storageAt(withDataDisk(1000 * GB, 2000 * GB), fixtureNow), { previous: slow });
    expect(later?.severity).toBe('ok');
    expect(later?.message).toContain('full in about 2d02h at that rate');
    expect(run(diskCheck, storageAt(withDataDisk(1000 * GB, 2000 * GB), fixtureNow), { previous: slow, overrides: { fullWithinSeconds: 3 * 86_400 } })[0]?.severity).toBe('warning');

    // Space freed, or unchanged: no forecast.
    const freed = run(diskCheck, storageAt(withDataDisk(70 * GB), fixtureNow), { previous: state })[0];
    expect([freed?.severity, freed?.message]).toEqual(['ok', expect.stringContaining('free space grew by 10.0 GB over the last 1h00m (between evaluations)')]);
  });

  it('keeps a few samples within the last hour, per filesystem', () => {
    let state: unknown;
    for (let i = 20; i >= 0; i--) state = stateAfter(diskCheck, storageAt(withDataDisk((40 + i) * GB), ago(i * 300)), state, ago(i * 300));
    const samples = (state as { samples: Record<string, { at: number }[]> }).samples['2049'] ?? [];
    expect(samples.length).toBe(12);
    expect(samples[0]!.at).toBe(ago(11 * 300).getTime());
    expect(samples.at(-1)!.at).toBe(fixtureNow.getTime());
    // Five minutes later, the oldest sample within the hour is the one kept first (51 GB free then).
    expect(run(diskCheck, storageAt(withDataDisk(39 * GB), ago(-300)), { previous: state })[0]?.message).toContain('free space fell by 12.0 GB over the last 1h00m');
    // A state from another version is ignored, not trusted.
    expect(run(diskCheck, okResults({ storage: storageSnapshot }), { previous: { samples: { 2049: 'nonsense' } } })[0]?.message).toContain('growth not measured yet');
  });

  it('UNKNOWN with the reason when the data directory is not proven to be on this host, never a guess', () => {
    const remote: StorageSnapshot = { ...storageSnapshot, disk: { local: false, unknownReason: 'the data directory /var/lib/postgresql/15/main is not on this host (the server runs on another host)', filesystems: [] } };
    expect(summary(run(diskCheck, okResults({ storage: remote })))).toEqual([
      ['unknown', 'cluster', 'cannot evaluate: the data directory /var/lib/postgresql/15/main is not on this host (the server runs on another host)'],
    ]);
    const hidden: StorageSnapshot = { ...storageSnapshot, dataDirectory: null, disk: { local: false, unknownReason: 'role watcher may not read data_directory, so the disk it is on is unknown: GRANT pg_monitor TO watcher; (or pg_read_all_settings)', filesystems: [] } };
    expect(run(diskCheck, okResults({ storage: hidden }))[0]?.message).toContain('GRANT pg_monitor TO watcher;');
    // No samples are kept from a snapshot that measured nothing.
    expect(stateAfter(diskCheck, okResults({ storage: remote }))).toEqual({ samples: {} });
    // Partly measured: the measured filesystems are evaluated, and the rest is UNKNOWN.
    const partly: StorageSnapshot = { ...storageSnapshot, disk: { ...storageSnapshot.disk, unknownReason: 'cannot measure tablespace cold (/mnt/cold): EACCES: permission denied' } };
    expect(run(diskCheck, okResults({ storage: partly })).map((f) => [f.severity, f.subject])).toEqual([
      ['ok', 'data directory + pg_wal'], ['warning', 'tablespace archive'], ['unknown', 'disk'],
    ]);
  });
});

describe('pg-wal-size', () => {
  it('pg_wal against 2 × and 4 × max_wal_size', () => {
    expect(summary(run(walSizeCheck, okResults({ storage: storageSnapshot })))).toEqual([['ok', 'pg_wal', 'pg_wal holds 1.17 GB in 75 segments, 1.2 × max_wal_size (1.00 GB) (warning ≥ 2 × = 2.00 GB)']]);
    const big = (sizeBytes: number): StorageSnapshot => ({ ...storageSnapshot, wal: { ...storageSnapshot.wal, sizeBytes, segments: sizeBytes / (16 * MB) } });
    expect(summary(run(walSizeCheck, okResults({ storage: big(2 * GB) })))).toEqual([['warning', 'pg_wal', 'pg_wal holds 2.00 GB in 128 segments, 2.0 × max_wal_size (1.00 GB) (warning ≥ 2 × = 2.00 GB)']]);
    const critical = run(walSizeCheck, okResults({ storage: big(5 * GB) }))[0];
    expect([critical?.severity, critical?.value, critical?.threshold, critical?.warningThreshold]).toEqual(['critical', 5 * GB, 4 * GB, 2 * GB]);
    expect(critical?.message).toContain('(critical ≥ 4 × = 4.00 GB)');
  });

  it('UNKNOWN naming the GRANT when this role may not list pg_wal', () => {
    const hidden: StorageSnapshot = { ...storageSnapshot, wal: { ...storageSnapshot.wal, sizeBytes: null, segments: null, unknownReason: 'role watcher may not call pg_ls_waldir(), so the size of pg_wal is unknown: GRANT pg_monitor TO watcher;' } };
    expect(summary(run(walSizeCheck, okResults({ storage: hidden })))).toEqual([['unknown', 'cluster', 'cannot evaluate: role watcher may not call pg_ls_waldir(), so the size of pg_wal is unknown: GRANT pg_monitor TO watcher;']]);
  });
});

describe('checkpoints', () => {
  const counters = storageSnapshot.checkpoints;
  const at = (checkpoints: Partial<StorageSnapshot['checkpoints']>, when = fixtureNow) => storageAt({ ...storageSnapshot, checkpoints: { ...counters, ...checkpoints } }, when);
  const before = stateAfter(checkpointsCheck, at({}, ago(300)), undefined, ago(300));

  it('counts from the next evaluation on the first one', () => {
    expect(summary(run(checkpointsCheck, at({})))).toEqual([['ok', 'requested checkpoints', 'first reading (900 timed and 100 requested checkpoints so far): checkpoints are counted from the next evaluation']]);
  });

  it('warns when half or more of the checkpoints in the interval were requested', () => {
    expect(summary(run(checkpointsCheck, at({ timed: 902, requested: 101 }), { previous: before }))).toEqual([
      ['ok', 'requested checkpoints', '1 of 3 checkpoints in the last 5m00s were requested (33.3%), 2 started by checkpoint_timeout (warning ≥ 50%)'],
      ['ok', 'backend fsyncs', 'no backend had to fsync itself in the last 5m00s'],
    ]);
    const [requested] = run(checkpointsCheck, at({ timed: 901, requested: 104 }), { previous: before });
    expect([requested?.severity, requested?.value]).toEqual(['warning', 0.8]);
    expect(requested?.message).toBe('4 of 5 checkpoints in the last 5m00s were requested (80.0%), 1 started by checkpoint_timeout: WAL reaches max_wal_size (1.00 GB) before checkpoint_timeout, or something runs CHECKPOINT (warning ≥ 50%)');
    expect(run(checkpointsCheck, at({}), { previous: before })[0]?.message).toBe('no checkpoint in the last 5m00s');
  });

  it('critical when backends had to fsync themselves (buffers written by backends alone are normal)', () => {
    const findings = run(checkpointsCheck, at({ timed: 901, backendFsyncs: 3 }), { previous: before });
    expect(summary(findings)[1]).toEqual(['critical', 'backend fsyncs', 'backends had to fsync 3 times themselves in the last 5m00s: the checkpointer could not keep up with their requests (critical ≥ 1)']);
    // Not reported by this server: no fsync finding at all.
    const unknownFsyncs = stateAfter(checkpointsCheck, at({ backendFsyncs: null }, ago(300)), undefined, ago(300));
    expect(run(checkpointsCheck, at({ backendFsyncs: null, timed: 901 }), { previous: unknownFsyncs }).map((f) => f.subject)).toEqual(['requested checkpoints']);
  });

  it('treats a changed stats_reset or falling counters as a reset, not as negative counts', () => {
    const reset = run(checkpointsCheck, at({ timed: 1, requested: 5, backendFsyncs: 0, statsReset: ago(60) }), { previous: before });
    expect(summary(reset)).toEqual([['ok', 'requested checkpoints', `the statistics were reset at ${ago(60).toISOString()} since the previous evaluation: checkpoints are counted again from this one`]]);
    const fell = run(checkpointsCheck, at({ timed: 3, requested: 9 }), { previous: before });
    expect(summary(fell)).toEqual([['ok', 'requested checkpoints', 'the counters fell (a statistics reset or a server restart) since the previous evaluation: checkpoints are counted again from this one']]);
    // The next evaluation counts from the reset values.
    const after = stateAfter(checkpointsCheck, at({ timed: 3, requested: 9 }), before);
    expect(run(checkpointsCheck, at({ timed: 3, requested: 12 }, ago(-300)), { previous: after })[0]?.severity).toBe('warning');
  });
});

describe('sequences', () => {
  const seq = (fields: Partial<SequenceUsage>): SequencesSnapshot => ({ ...sequencesSnapshot, sequences: [{ ...sequencesSnapshot.sequences[0]!, ...fields }, ...sequencesSnapshot.sequences.slice(1)] });

  it('warning at 75 %, critical at 90 % of the narrowest limit; cycling sequences are skipped', () => {
    expect(summary(run(sequencesCheck, okResults({ sequences: sequencesSnapshot })))).toEqual([
      ['warning', 'sequence public.orders_id_seq', 'sequence public.orders_id_seq (bigint) is at 1,717,986,918 of 2,147,483,647, the maximum of column public.orders.id (integer): 80.0% used (warning ≥ 75%)'],
    ]);
    const critical = run(sequencesCheck, okResults({ sequences: seq({ lastValue: 2_040_109_465, usedFraction: 0.95 }) }))[0];
    expect([critical?.severity, critical?.threshold, critical?.value]).toEqual(['critical', 0.9, 0.95]);
    const own = run(sequencesCheck, okResults({ sequences: seq({ dataType: 'integer', limitedBy: 'sequence maxvalue', columns: [], usedFraction: 0.91, lastValue: 1_954_210_119 }) }))[0];
    expect(own?.message).toBe('sequence public.orders_id_seq (integer) is at 1,954,210,119 of 2,147,483,647, its maxvalue: 91.0% used (critical ≥ 90%)');
    expect(summary(run(sequencesCheck, okResults({ sequences: seq({ usedFraction: 0.5, lastValue: 1_073_741_824 }) })))).toEqual([
      ['ok', 'cluster', 'no sequence in app at 75% of its limit (3 sequences, the most used public.orders_id_seq at 50.0%)'],
    ]);
  });

  it('UNKNOWN for the sequences this role may not read, naming the GRANT, and still evaluates the others', () => {
    const hidden = { ...sequencesSnapshot, unreadable: 1, sequences: [...sequencesSnapshot.sequences, { ...sequencesSnapshot.sequences[1]!, schema: 'billing', name: 'invoices_id_seq', readable: false, lastValue: null, usedFraction: null }] };
    expect(summary(run(sequencesCheck, okResults({ sequences: hidden })))).toEqual([
      ['warning', 'sequence public.orders_id_seq', expect.stringContaining('80.0% used')],
      ['unknown', 'unreadable sequences', "cannot evaluate 1 of 3 sequences in app (billing.invoices_id_seq): pgwarden's role needs SELECT on them: GRANT SELECT ON ALL SEQUENCES IN SCHEMA billing TO <monitoring role>;"],
    ]);
  });
});

describe('backups', () => {
  it('reports nothing per node (the watcher evaluates backups per cluster), and UNKNOWN when the server does not answer', () => {
    expect(run(backupsCheck, okResults({ server: serverSnapshot }))).toEqual([]);
    expect(run(backupsCheck, new Map()).map((finding) => finding.severity)).toEqual(['unknown']);
    expect(backupsCheck.levels(backupsCheck.defaults)).toEqual({
      warning: 'the last good full backup is older than its schedule plus the margin',
      critical: 'no restorable backup, a failed verification, drill or scheduled job, or a gap in the recovery window',
    });
  });
});

describe('the data directory proof (postmaster.pid and pg_control on real files)', () => {
  const base = mkdtempSync(join(tmpdir(), 'pgwarden-storage-unit-'));
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  const started = 1_714_564_800.25;
  const identifier = 7_301_234_567_890_123_456n;

  /** A data directory with the files a running postmaster leaves. */
  function dataDir(name: string, pid: { start?: number; port?: number; dir?: string } = {}): string {
    const dir = join(base, name);
    mkdirSync(join(dir, 'global'), { recursive: true });
    writeFileSync(join(dir, 'postmaster.pid'), `4242\n${pid.dir ?? dir}\n${pid.start ?? Math.floor(started)}\n${pid.port ?? 5432}\n/var/run/postgresql\n*\n  1433715         4\nready   \n`);
    const control = Buffer.alloc(16);
    control.writeBigUInt64LE(identifier, 0);
    writeFileSync(join(dir, 'global', 'pg_control'), control);
    return dir;
  }
  const claim = (dir: string, fields: Partial<DataDirectoryClaim> = {}): DataDirectoryClaim => ({ dataDirectory: dir, port: 5432, startedAtEpoch: started, systemIdentifier: identifier.toString(), ...fields });

  it('accepts a directory whose postmaster.pid and pg_control match the server', async () => {
    const dir = dataDir('match');
    expect(await verifyDataDirectory(claim(dir))).toEqual({ local: true });
    // The pid file is written a moment before pg_postmaster_start_time() is set.
    expect(await verifyDataDirectory(claim(dir, { startedAtEpoch: started + 3 }))).toEqual({ local: true });
  });

  it('rejects a readable directory that belongs to another server', async () => {
    const dir = dataDir('other');
    expect(await verifyDataDirectory(claim(dir, { port: 5433 }))).toEqual({ local: false, reason: `${dir}/postmaster.pid on this host belongs to another server (port 5432 instead of 5433): this server's data directory is on another host` });
    const restarted = await verifyDataDirectory(claim(dir, { startedAtEpoch: started + 3600 }));
    expect(restarted.local).toBe(false);
    expect(restarted.local ? '' : restarted.reason).toContain('started at 2024-05-01T12:00:00.000Z instead of 2024-05-01T13:00:00.250Z');
    const cloned = await verifyDataDirectory(claim(dir, { systemIdentifier: '42' }));
    expect(cloned.local ? '' : cloned.reason).toContain(`system identifier ${identifier} instead of 42`);
    const moved = dataDir('moved', { dir: '/var/lib/postgresql/15/main' });
    expect((await verifyDataDirectory(claim(moved))).local).toBe(false);
  });

  it('says the server runs elsewhere when the directory or its pid file is missing here', async () => {
    expect(await verifyDataDirectory(claim(join(base, 'absent')))).toEqual({ local: false, reason: `the data directory ${join(base, 'absent')} is not on this host (the server runs on another host)` });
    const empty = join(base, 'empty');
    mkdirSync(empty);
    expect(await verifyDataDirectory(claim(empty))).toEqual({ local: false, reason: `${empty} exists on this host but holds no postmaster.pid, so it is not the running server's data directory (the server runs on another host)` });
  });
});
