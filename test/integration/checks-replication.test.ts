// The replication checks against a real primary and standby: replay paused behind a burst of
// writes, a failing archive_command, an inactive slot, a standby that stops, a primary that goes
// away and a promotion. One pair for the file; the tests run in order and end with the promotion.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replicationLagCheck, replicationSlotsCheck, walArchivingCheck } from '../../src/checks/replication.js';
import { connectivityCheck, restartCheck } from '../../src/checks/server.js';
import { CheckWatch, findingFor, has, severities } from '../support/checks.js';
import { createPrimary, createStandby, destroyAll, type TestCluster } from '../support/cluster.js';

const MB = 1024 ** 2;
const SLOT = 'checks_standby';
// The walreceiver takes cluster_name as its application_name: the name the primary knows it by.
const REPLICA = 'checks-replica';
let primary: TestCluster;
let standby: TestCluster;
let onPrimary: CheckWatch;
let onStandby: CheckWatch;
const checks = [replicationLagCheck, replicationSlotsCheck, walArchivingCheck, connectivityCheck, restartCheck];

beforeAll(async () => {
  // archive_command 'false': a real failing archiver; the slot and the unarchived segments keep all WAL for the standby.
  primary = await createPrimary({ name: 'checks-repl', archiveCommand: 'false' });
  standby = await createStandby(primary, { name: 'checks-repl-standby', slot: SLOT, settings: { cluster_name: REPLICA } });
  onPrimary = new CheckWatch(primary.dsn(), checks);
  onStandby = new CheckWatch(standby.dsn(), checks);
  // A replayed commit, so the standby has a last-replay time to measure its delay from.
  await primary.sql('create table before_lag (id int); insert into before_lag values (1)');
});

afterAll(async () => {
  await onPrimary.close();
  await onStandby.close();
  await destroyAll();
});

/** Writes about `mb` MB of WAL on the primary. */
async function writeWal(table: string, mb: number): Promise<void> {
  await primary.sql(`create table ${table} as select g, repeat('x', 200) as pad from generate_series(1, ${Math.round(mb * 4000)}) g`);
}

describe('replication checks on a real primary and standby', () => {
  it('replication lag: ok while streaming; bytes behind on both sides and seconds on the standby while replay is paused; ok after resume', async () => {
    const streaming = await onPrimary.until(replicationLagCheck, {}, 'the standby caught up', (f) => f[0]?.severity === 'ok' && f[0].value === 0);
    expect(streaming).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster', value: 0, message: '1 standbys streaming, none 100 MB or 1m00s behind' })]);
    expect(severities(await onStandby.evaluate(replicationLagCheck))).toEqual([['ok', 'standby']]);

    await standby.sql('select pg_wal_replay_pause()');
    await writeWal('lag_burst', 6);
    const bytes = { warningBytes: MB, criticalBytes: 1024 * MB };
    const subject = `replica ${REPLICA}`;
    const warned = findingFor(await onPrimary.until(replicationLagCheck, bytes, 'the standby 1 MB behind', (f) => has(f, subject, 'warning') !== undefined), subject);
    expect(warned).toMatchObject({ checkId: 'replication-lag', threshold: MB, warningThreshold: MB, unit: 'bytes' });
    expect(warned.value).toBeGreaterThanOrEqual(MB);
    expect(warned.context.lag?.bytes).toBe(warned.value);
    expect(warned.context.details?.['syncState']).toBe('async');
    expect(warned.message).toMatch(new RegExp(`^replica ${REPLICA} \\(127\\.0\\.0\\.1\\) replay is \\d+(\\.\\d+)? MB and \\S+ behind \\(warning ≥ 1\\.00 MB\\)$`));

    const critical = findingFor(await onPrimary.until(replicationLagCheck, { ...bytes, criticalBytes: 4 * MB }, 'the standby 4 MB behind', (f) => has(f, subject, 'critical') !== undefined), subject);
    expect(critical).toMatchObject({ threshold: 4 * MB, warningThreshold: MB, unit: 'bytes' });
    expect(critical.message).toMatch(/behind \(critical ≥ 4\.00 MB\)$/);

    // The standby's own view: received but not replayed, and for how long.
    const own = findingFor(await onStandby.until(replicationLagCheck, bytes, 'the standby seeing its paused replay', (f) => f[0]?.severity === 'warning' && f[0].message.includes('replay is paused')), 'standby');
    expect(own).toMatchObject({ unit: 'bytes', threshold: MB });
    expect(own.value).toBeGreaterThanOrEqual(4 * MB);
    expect(own.context.details).toMatchObject({ senderHost: '127.0.0.1', paused: 'yes' });
    expect(own.context.lag?.seconds).toBeGreaterThan(0);
    const bySeconds = { warningBytes: 1024 ** 4, criticalBytes: 2 * 1024 ** 4, warningSeconds: 1, criticalSeconds: 2 };
    const late = findingFor(await onStandby.until(replicationLagCheck, bySeconds, 'the replay 2 s late', (f) => f[0]?.severity === 'critical'), 'standby');
    expect(late).toMatchObject({ unit: 'seconds', threshold: 2, warningThreshold: 1 });
    expect(late.value).toBeGreaterThanOrEqual(2);
    expect(late.context.lag?.seconds).toBe(late.value);
    expect(late.message).toMatch(/^this standby's replay is \d+(\.\d+)? MB and \S+ behind what it received, replay is paused \(critical ≥ 2\.0s\)$/);

    await standby.sql('select pg_wal_replay_resume()');
    expect(severities(await onPrimary.until(replicationLagCheck, bytes, 'the primary seeing the standby caught up', (f) => f[0]?.severity === 'ok'))).toEqual([['ok', 'cluster']]);
    expect(severities(await onStandby.until(replicationLagCheck, bySeconds, 'the standby caught up', (f) => f[0]?.severity === 'ok'))).toEqual([['ok', 'standby']]);
  });

  it('WAL archiving: a failing archive_command warns, then is critical past the lowered duration, with the queue over its lowered limit; ok once it works', async () => {
    await primary.sql('insert into before_lag values (2); select pg_switch_wal()');
    const failing = { criticalFailingSeconds: 1, warningWaitingSegments: 0 };
    const first = await onPrimary.until(walArchivingCheck, failing, 'the archiver failing', (f) => has(f, 'archiver', 'warning') !== undefined);
    const archiver = findingFor(first, 'archiver');
    expect(archiver).toMatchObject({ checkId: 'wal-archiving', unit: 'seconds', warningThreshold: 0 });
    expect(archiver.message).toMatch(/^archiving [0-9A-F]{24} fails, first seen failing now; last success never \(warning: failing\)$/);
    expect(archiver.context.details?.['lastFailedWal']).toMatch(/^[0-9A-F]{24}$/);
    expect(archiver.context.details?.['failedCount']).toBeGreaterThan(0);
    const queue = findingFor(first, 'archive queue');
    expect(queue).toMatchObject({ severity: 'warning', threshold: 0, unit: 'segments' });
    expect(queue.value).toBeGreaterThanOrEqual(1);

    // The failure run is timed from the first evaluation that saw it.
    const critical = findingFor(await onPrimary.until(walArchivingCheck, failing, 'failing for over 1 s', (f) => has(f, 'archiver', 'critical') !== undefined), 'archiver');
    expect(critical).toMatchObject({ threshold: 1 });
    expect(critical.value).toBeGreaterThan(1);
    expect(critical.message).toMatch(/fails, seen failing for \S+; last success never \(critical > 1\.0s\)$/);

    await primary.sql("alter system set archive_command = 'true'");
    await primary.sql('select pg_reload_conf()');
    const fixed = await onPrimary.until(walArchivingCheck, {}, 'the archiver working and the queue empty', (f) => f.every((x) => x.severity === 'ok') && f.find((x) => x.subject === 'archive queue')?.value === 0);
    expect(findingFor(fixed, 'archiver').message).toMatch(/^archiving works; last success \S+ ago$/);
    expect(findingFor(fixed, 'archive queue').message).toBe('0 WAL segments waiting to be archived (warning > 10)');
    expect(await onStandby.evaluate(walArchivingCheck)).toEqual([]);
  });

  it('replication slots: an inactive slot warns after the lowered time, one retaining WAL over the lowered size warns; ok once dropped', async () => {
    await primary.sql("select pg_create_physical_replication_slot('checks_idle', true)");
    const inactive = { inactiveSeconds: 1, retainedBytes: 1024 ** 4 };
    // The first evaluation sees it inactive (before PostgreSQL 17 the probe times inactivity from then).
    expect(severities(await onPrimary.evaluate(replicationSlotsCheck, inactive))).toEqual([['ok', 'cluster']]);
    const idle = findingFor(await onPrimary.until(replicationSlotsCheck, inactive, 'the slot inactive for 1 s', (f) => has(f, 'slot checks_idle', 'warning') !== undefined), 'slot checks_idle');
    expect(idle).toMatchObject({ checkId: 'replication-slots', unit: 'seconds', threshold: 1, warningThreshold: 1 });
    expect(idle.value).toBeGreaterThanOrEqual(1);
    expect(idle.message).toMatch(/^slot checks_idle \(physical\) inactive for \S+, retaining \S+ \S+ of WAL \(warning: inactive ≥ 1\.0s\)$/);
    expect(idle.context.details).toMatchObject({ type: 'physical', walStatus: 'reserved' });

    await writeWal('slot_burst', 2);
    const retaining = { inactiveSeconds: 3600, retainedBytes: MB };
    const large = findingFor(await onPrimary.until(replicationSlotsCheck, retaining, 'the slot retaining 1 MB', (f) => has(f, 'slot checks_idle', 'warning') !== undefined), 'slot checks_idle');
    expect(large).toMatchObject({ unit: 'bytes', threshold: MB });
    expect(large.value).toBeGreaterThanOrEqual(2 * MB);
    expect(large.message).toMatch(/^slot checks_idle \(physical\) inactive, retaining \d+(\.\d+)? MB of WAL \(warning ≥ 1\.00 MB\)$/);

    await primary.sql("select pg_drop_replication_slot('checks_idle')");
    const after = await onPrimary.until(replicationSlotsCheck, inactive, 'only the active standby slot left', (f) => f[0]?.severity === 'ok');
    expect(after).toEqual([expect.objectContaining({ severity: 'ok', subject: 'cluster' })]);
    expect(after[0]?.message).toMatch(/^1 slots, none lost, inactive for 1\.0s or retaining/);
  });

  it('a standby that stops: critical on the primary, its slot inactive, the standby unreachable; all ok once it is back', async () => {
    // The primary has seen the replica connected (the evaluations above): its absence is now news.
    await standby.stop('fast');
    const gone = findingFor(await onPrimary.until(replicationLagCheck, {}, 'the replica gone', (f) => has(f, `replica ${REPLICA}`, 'critical') !== undefined), `replica ${REPLICA}`);
    expect(gone.message).toMatch(new RegExp(`^replica ${REPLICA} is no longer connected \\(last seen \\S+ ago\\)$`));

    const slot = findingFor(await onPrimary.until(replicationSlotsCheck, { inactiveSeconds: 1 }, 'the standby slot inactive for 1 s', (f) => has(f, `slot ${SLOT}`, 'warning') !== undefined), `slot ${SLOT}`);
    expect(slot).toMatchObject({ unit: 'seconds', threshold: 1 });
    expect(slot.message).toMatch(new RegExp(`^slot ${SLOT} \\(physical\\) inactive for \\S+, retaining`));
    expect(findingFor(await onStandby.until(connectivityCheck, {}, 'the standby down', (f) => f[0]?.severity === 'critical'), 'cluster').message).toMatch(/^the server does not answer: /);

    await standby.start();
    expect(severities(await onPrimary.until(replicationLagCheck, {}, 'the replica streaming again', (f) => f[0]?.severity === 'ok'))).toEqual([['ok', 'cluster']]);
    expect(severities(await onPrimary.until(replicationSlotsCheck, { inactiveSeconds: 1 }, 'the slot active again', (f) => f[0]?.severity === 'ok'))).toEqual([['ok', 'cluster']]);
    expect(severities(await onStandby.until(connectivityCheck, {}, 'the standby answering', (f) => f[0]?.severity === 'ok', 40_000))).toEqual([['ok', 'cluster']]);
  });

  it('the primary goes away: the standby is not streaming (critical); promoted, it reports the role change', async () => {
    const before = await onStandby.evaluate(restartCheck);
    expect(findingFor(before, 'role')).toMatchObject({ severity: 'ok', message: 'standby on timeline 1' });

    await primary.stop('fast');
    const cut = findingFor(await onStandby.until(replicationLagCheck, {}, 'the standby not streaming', (f) => f[0]?.severity === 'critical'), 'standby');
    expect(cut.message).toMatch(/^this standby is not streaming: /);
    expect(cut.context.lag).toBeDefined();

    await standby.promote();
    const promoted = await onStandby.until(restartCheck, {}, 'the promotion seen', (f) => has(f, 'role', 'warning') !== undefined);
    const role = findingFor(promoted, 'role');
    expect(role.message).toMatch(/^the role changed from standby on timeline 1 to primary on timeline 2 (just now|\S+ ago) \(warning < 10m00s\)$/);
    expect(role.context.details).toEqual({ role: 'primary', timeline: 2, previousRole: 'standby on timeline 1' });
    // A primary without standbys has no lag to report; the change ages out of the (lowered) window.
    expect(await onStandby.evaluate(replicationLagCheck)).toEqual([]);
    const settled = await onStandby.until(restartCheck, { recentSeconds: 0.5 }, 'the role change older than 0.5 s', (f) => has(f, 'role', 'ok') !== undefined);
    expect(findingFor(settled, 'role').message).toBe('primary on timeline 2');
  });
});
