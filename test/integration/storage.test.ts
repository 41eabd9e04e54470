// The storage and sequences probes and their checks on a private cluster (its WAL, checkpoints,
// roles and a restart are changed on purpose): free disk measured with statfs only when the data
// directory is proven to be the server's, UNKNOWN otherwise; sequences feeding a narrower column;
// requested checkpoints; pg_wal held by a replication slot.
import { statfs } from 'node:fs/promises';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sequencesCheck } from '../../src/checks/sequences.js';
import { checkpointsCheck, diskCheck, walSizeCheck } from '../../src/checks/storage.js';
import type { Check, Finding, Thresholds } from '../../src/checks/types.js';
import type { Row } from '../../src/db/types.js';
import { sequencesProbe, type SequencesSnapshot } from '../../src/probes/sequences.js';
import { storageProbe, type StorageSnapshot } from '../../src/probes/storage.js';
import type { ProbeResult } from '../../src/probes/types.js';
import { resultsWith, run, stateAfter } from '../fixtures/checks.js';
import { pgwarden } from '../support/cli.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { closeNodes, nodeFor, probeOnce, probeResult } from '../support/probe.js';

const MB = 1024 ** 2;
const int4Max = 2_147_483_647;

let cluster: TestCluster;
let dsn: string;
let tablespaceDir = '';

beforeAll(async () => {
  cluster = await createPrimary({ name: 'storage', settings: { checkpoint_timeout: '1h' } });
  dsn = cluster.dsn();
  // A tablespace on the same filesystem as the data directory: one filesystem, three locations.
  tablespaceDir = await mkdtemp(join(tmpdir(), 'pgwarden-storage-ts-'));
  const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim()));
  await chown(tablespaceDir, uid ?? 0, gid ?? 0);
  await cluster.sql(`create tablespace storage_ts location '${tablespaceDir}'`);
  await cluster.sql('create role nopriv login');
});

afterAll(async () => {
  await closeNodes();
  await destroyAll();
  await rm(tablespaceDir, { recursive: true, force: true });
});

function okStorage(result: ProbeResult<StorageSnapshot>): StorageSnapshot {
  if (result.status !== 'ok') throw new Error(`storage probe returned ${result.status}: ${JSON.stringify(result)}`);
  return result.snapshot;
}

function evaluate<T extends Thresholds>(check: Check<T>, result: ProbeResult<StorageSnapshot>, overrides?: Record<string, number>): Finding[] {
  return run(check, resultsWith({ storage: result }), { now: new Date(), ...(overrides === undefined ? {} : { overrides }) });
}

describe('disk', () => {
  it('measures the filesystem of the local cluster with statfs, as df does, once the data directory is proven', async () => {
    const before = await statfs(cluster.dataDir);
    const result = await probeResult(storageProbe, dsn);
    const after = await statfs(cluster.dataDir);
    const snapshot = okStorage(result);
    expect(snapshot.dataDirectory).toBe(cluster.dataDir);
    expect(snapshot.port).toBe(cluster.port);
    expect(snapshot.tablespaces.map((t) => [t.name, t.location])).toEqual([['pg_default', null], ['pg_global', null], ['storage_ts', tablespaceDir]]);
    expect(snapshot.disk.local).toBe(true);
    expect(snapshot.disk.unknownReason).toBeNull();
    expect(snapshot.disk.filesystems).toHaveLength(1);
    const fs = snapshot.disk.filesystems[0]!;
    expect(fs.locations).toEqual(['data directory', 'pg_wal', 'tablespace storage_ts']);
    expect(fs.paths).toEqual([cluster.dataDir, `${cluster.dataDir}/pg_wal`, tablespaceDir]);
    expect(fs.totalBytes).toBe(before.blocks * before.bsize);
    // Other processes write to the same disk meanwhile: the figure lies between two readings of ours.
    const slack = 64 * MB;
    const available = [before.bavail * before.bsize, after.bavail * after.bsize];
    expect(fs.availableBytes).toBeGreaterThanOrEqual(Math.min(...available) - slack);
    expect(fs.availableBytes).toBeLessThanOrEqual(Math.max(...available) + slack);
    const used = [(before.blocks - before.bfree) * before.bsize, (after.blocks - after.bfree) * after.bsize];
    expect(fs.usedBytes).toBeGreaterThanOrEqual(Math.min(...used) - slack);
    expect(fs.usedBytes).toBeLessThanOrEqual(Math.max(...used) + slack);
    expect(fs.usedFraction).toBeCloseTo(fs.usedBytes / (fs.usedBytes + fs.availableBytes), 9);

    const [finding] = evaluate(diskCheck, result);
    expect(finding?.subject).toBe('data directory + pg_wal + tablespace storage_ts');
    expect(finding?.value).toBe(fs.usedFraction);
    expect(finding?.message).toContain(`data directory, pg_wal, tablespace storage_ts (${cluster.dataDir}, `);
    expect(finding?.message).toContain('growth not measured yet');
    // The real usage against thresholds set just below and above it.
    expect(evaluate(diskCheck, result, { warningFraction: fs.usedFraction - 0.01, criticalFraction: fs.usedFraction + 0.01 })[0]?.severity).toBe('warning');
    expect(evaluate(diskCheck, result, { warningFraction: fs.usedFraction - 0.02, criticalFraction: fs.usedFraction - 0.01 })[0]?.severity).toBe('critical');
  });

  it('is UNKNOWN naming the GRANT for a role that may not read data_directory nor list pg_wal, and measures once granted', async () => {
    const nopriv = cluster.dsn('postgres', 'nopriv');
    const hidden = await probeResult(storageProbe, nopriv);
    const snapshot = okStorage(hidden);
    expect(snapshot.dataDirectory).toBeNull();
    expect(snapshot.disk).toEqual({ local: false, unknownReason: 'role nopriv may not read data_directory, so the disk it is on is unknown: GRANT pg_monitor TO nopriv; (or pg_read_all_settings)', filesystems: [] });
    expect(snapshot.wal).toMatchObject({ sizeBytes: null, segments: null, unknownReason: 'role nopriv may not call pg_ls_waldir(), so the size of pg_wal is unknown: GRANT pg_monitor TO nopriv;' });
    expect(evaluate(diskCheck, hidden).map((f) => [f.severity, f.message])).toEqual([['unknown', `cannot evaluate: ${snapshot.disk.unknownReason}`]]);
    expect(evaluate(walSizeCheck, hidden).map((f) => [f.severity, f.message])).toEqual([['unknown', `cannot evaluate: ${snapshot.wal.unknownReason}`]]);
    // The checkpoint counters need no privilege.
    expect(snapshot.checkpoints.timed + snapshot.checkpoints.requested).toBeGreaterThanOrEqual(0);

    await cluster.sql('grant pg_monitor to nopriv');
    try {
      const granted = okStorage(await probeResult(storageProbe, nopriv));
      expect(granted.disk.local).toBe(true);
      expect(granted.wal.sizeBytes).toBeGreaterThan(0);
    } finally {
      await cluster.sql('revoke pg_monitor from nopriv');
    }
  });
});

describe('sequences', () => {
  beforeAll(async () => {
    // A bigint sequence feeding an integer column through its default (not owned), an identity
    // column, and a cycling smallint sequence close to its end.
    await cluster.sql('create sequence orders_big_seq as bigint');
    await cluster.sql(`create table orders (id integer not null default nextval('orders_big_seq') primary key, note text)`);
    await cluster.sql('create table accounts (id integer generated always as identity primary key)');
    await cluster.sql('insert into accounts default values');
    await cluster.sql('create sequence ticket_seq as smallint cycle');
    await cluster.sql('select setval(\'ticket_seq\', 32700)');
  });

  function named(snapshot: SequencesSnapshot, name: string) {
    const found = snapshot.sequences.find((s) => s.name === name);
    if (found === undefined) throw new Error(`sequence ${name} is not in the snapshot`);
    return found;
  }

  it('measures a bigint sequence against the integer column it feeds: warning at 80 %, critical at 95 %', async () => {
    const at80 = Math.floor(0.8 * int4Max);
    await cluster.sql(`select setval('orders_big_seq', ${at80})`);
    const snapshot = await probeOnce(sequencesProbe, dsn);
    expect(snapshot.database).toBe('postgres');
    expect(snapshot.totalSequences).toBe(3);
    expect(snapshot.unreadable).toBe(0);
    expect(named(snapshot, 'orders_big_seq')).toMatchObject({
      schema: 'public', dataType: 'bigint', lastValue: at80, maxValue: 2 ** 63 /* bigint's maximum, as a double */, readable: true, cycle: false,
      columns: ['public.orders.id (integer)'], limit: int4Max, limitedBy: 'column public.orders.id (integer)',
    });
    expect(named(snapshot, 'orders_big_seq').usedFraction).toBeCloseTo(0.8, 6);
    expect(named(snapshot, 'accounts_id_seq')).toMatchObject({ dataType: 'integer', lastValue: 1, limit: int4Max, limitedBy: 'sequence maxvalue', columns: ['public.accounts.id (integer)'] });
    expect(named(snapshot, 'ticket_seq')).toMatchObject({ cycle: true, lastValue: 32_700, limit: 32_767 });
    // Non-cycling sequences first, the most used first.
    expect(snapshot.sequences.map((s) => s.name)).toEqual(['orders_big_seq', 'accounts_id_seq', 'ticket_seq']);

    const warning = run(sequencesCheck, resultsWith({ sequences: { status: 'ok', durationMs: 1, snapshot, at: new Date() } }), { now: new Date() });
    expect(warning.map((f) => [f.severity, f.subject])).toEqual([['warning', 'sequence public.orders_big_seq']]);
    expect(warning[0]?.message).toBe(`sequence public.orders_big_seq (bigint) is at 1,717,986,917 of 2,147,483,647, the maximum of column public.orders.id (integer): 80.0% used (warning ≥ 75%)`);

    await cluster.sql(`select setval('orders_big_seq', ${Math.floor(0.95 * int4Max)})`);
    const later = await probeOnce(sequencesProbe, dsn);
    const critical = run(sequencesCheck, resultsWith({ sequences: { status: 'ok', durationMs: 1, snapshot: later, at: new Date() } }), { now: new Date() });
    expect(critical.map((f) => [f.severity, f.subject])).toEqual([['critical', 'sequence public.orders_big_seq']]);
    // The column really overflows past the limit the finding names.
    await cluster.sql(`select setval('orders_big_seq', ${int4Max})`);
    await expect(cluster.sql(`insert into orders (note) values ('one too many')`)).rejects.toThrow(/integer out of range/);
  });

  it('a role without SELECT on the sequences gets UNKNOWN with the GRANT, not a guess', async () => {
    const snapshot = await probeOnce(sequencesProbe, cluster.dsn('postgres', 'nopriv'));
    expect(snapshot.unreadable).toBe(3);
    expect(snapshot.sequences.every((s) => s.lastValue === null && s.usedFraction === null && !s.readable)).toBe(true);
    const findings = run(sequencesCheck, resultsWith({ sequences: { status: 'ok', durationMs: 1, snapshot, at: new Date() } }), { now: new Date() });
    expect(findings.map((f) => [f.severity, f.subject])).toEqual([['unknown', 'unreadable sequences']]);
    expect(findings[0]?.message).toContain('GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO <monitoring role>;');
  });
});

describe('checkpoints and pg_wal', () => {
  it('forced checkpoints give the requested-checkpoints warning', async () => {
    const first = await probeResult(storageProbe, dsn);
    const start = okStorage(first).checkpoints;
    const state = stateAfter(checkpointsCheck, resultsWith({ storage: first }));
    for (let i = 0; i < 3; i++) await cluster.sql('checkpoint');
    const second = await waitFor('the three checkpoints in pg_stat_bgwriter', async () => {
      const taken = await probeResult(storageProbe, dsn);
      return okStorage(taken).checkpoints.requested >= start.requested + 3 ? taken : undefined;
    });
    const [requested] = run(checkpointsCheck, resultsWith({ storage: second }), { previous: state, now: new Date() });
    expect(requested?.severity).toBe('warning');
    expect(requested?.subject).toBe('requested checkpoints');
    expect(requested?.message).toMatch(/^3 of 3 checkpoints in the last \S+ were requested \(100\.0%\), 0 started by checkpoint_timeout: WAL reaches max_wal_size/);
  });

  it('pg_wal held by a replication slot grows past 2 × then 4 × a lowered max_wal_size', async () => {
    await cluster.sql(`alter system set max_wal_size = '32MB'`);
    await cluster.sql(`alter system set min_wal_size = '32MB'`);
    await cluster.sql('select pg_reload_conf()');
    await cluster.sql(`select pg_create_physical_replication_slot('storage_hold', true)`);
    await cluster.sql('create table wal_filler (id int)');
    const walSize = async (): Promise<{ result: ProbeResult<StorageSnapshot>; findings: Finding[] }> => {
      const result = await probeResult(storageProbe, dsn);
      return { result, findings: evaluate(walSizeCheck, result) };
    };
    const fillUntil = async (severity: 'warning' | 'critical'): Promise<Finding> =>
      waitFor(`pg_wal to reach the ${severity} level`, async () => {
        // Each switch after a write starts a new 16 MB segment, which the slot keeps.
        await cluster.sql('insert into wal_filler values (1)');
        await cluster.sql('select pg_switch_wal()');
        const { findings } = await walSize();
        return findings[0]?.severity === severity ? findings[0] : undefined;
      }, { intervalMs: 10 });
    // New sessions see the reloaded setting once the postmaster has read it.
    await waitFor('max_wal_size = 32MB', async () => okStorage((await walSize()).result).wal.maxWalSizeBytes === 32 * MB);
    const warning = await fillUntil('warning');
    expect(warning.value).toBeGreaterThanOrEqual(64 * MB);
    expect(warning.message).toMatch(/^pg_wal holds [\d.]+ MB in \d+ segments, [2-3]\.\d × max_wal_size \(32\.0 MB\) \(warning ≥ 2 × = 64\.0 MB\)$/);
    const critical = await fillUntil('critical');
    expect(critical.value).toBeGreaterThanOrEqual(128 * MB);
    expect([critical.threshold, critical.warningThreshold]).toEqual([128 * MB, 64 * MB]);
    // The figure is the real directory: the same as pg_ls_waldir() reports now, give or take a segment.
    const [row] = await cluster.sql('select sum(size)::float8 as bytes from pg_ls_waldir()');
    expect(Math.abs(Number(row?.['bytes']) - (critical.value ?? 0))).toBeLessThanOrEqual(16 * MB);
    await cluster.sql(`select pg_drop_replication_slot('storage_hold')`);
  });
});

describe('a data directory that does not prove to be this server', () => {
  it('is UNKNOWN: the postmaster.pid found there is from another start of the server', async () => {
    // What the server said about itself before a restart: the same path now holds a newer postmaster.pid.
    const node = nodeFor(dsn);
    const queries = storageProbe.queries(await node.serverInfo());
    const rows: Record<string, readonly Row[]> = {};
    for (const [name, query] of Object.entries(queries)) rows[name] = await node.query(query);
    const started = Number(rows['server']?.[0]?.['started_epoch']);
    // Two seconds later at least, so the restart cannot fall in the same second.
    await waitFor('two seconds after the start', async () => Date.now() / 1000 > started + 2, { intervalMs: 50 });
    await cluster.restart();
    const local = await storageProbe.local!(rows);
    const snapshot = storageProbe.parse({ ...rows, ...local }, { server: undefined, now: new Date(), previous: undefined });
    expect(snapshot.disk.local).toBe(false);
    expect(snapshot.disk.filesystems).toEqual([]);
    expect(snapshot.disk.unknownReason).toMatch(new RegExp(`^${cluster.dataDir}/postmaster.pid on this host belongs to another server \\(started at \\S+ instead of \\S+\\): this server's data directory is on another host$`));
    const findings = run(diskCheck, resultsWith({ storage: { status: 'ok', durationMs: 1, snapshot, at: new Date() } }), { now: new Date() });
    expect(findings.map((f) => [f.severity, f.message])).toEqual([['unknown', `cannot evaluate: ${snapshot.disk.unknownReason}`]]);
  });
});

describe('pgwarden show', () => {
  it('prints storage and sequences as text', async () => {
    const storage = await pgwarden(['show', 'storage', '--dsn', dsn]);
    expect(storage.stderr).toBe('');
    expect(storage.code).toBe(0);
    expect(storage.stdout).toContain(`data directory: ${cluster.dataDir}`);
    expect(storage.stdout).toMatch(/filesystems \(1\)\n/);
    expect(storage.stdout).toContain('data directory,pg_wal,tablespace storage_ts');
    expect(storage.stdout).toMatch(/checkpoints\n {2}timed: \d+\n {2}requested: \d+/);
    const sequences = await pgwarden(['show', 'sequences', '--dsn', dsn]);
    expect(sequences.code).toBe(0);
    expect(sequences.stdout).toMatch(/sequences \(3\)\n/);
    expect(sequences.stdout).toMatch(/orders_big_seq +bigint/);
  });
});
