import { describe, expect, it } from 'vitest';
import { replicationLagCheck, replicationSlotsCheck, walArchivingCheck } from '../../src/checks/replication.js';
import type { PrimaryReplication } from '../../src/probes/replication.js';
import { primaryReplication, standbyReplication } from '../fixtures/snapshots.js';
import { ago, fixtureNow, okResults, run, stateAfter, summary } from '../fixtures/checks.js';

const GB = 1024 ** 3;
const primary = (fields: Partial<PrimaryReplication>) => okResults({ replication: { ...primaryReplication, ...fields } });

describe('replication lag', () => {
  it('per standby: warning by time, critical by bytes or when not streaming, with the lag figures', () => {
    const findings = run(replicationLagCheck, okResults({ replication: primaryReplication }));
    expect(summary(findings)).toEqual([['warning', 'replica replica-2', 'replica replica-2 (10.0.0.51) replay is 512 MB and 2m05s behind (warning ≥ 100 MB)']]);
    expect(findings[0]?.context.lag).toEqual({ bytes: 512 * 1024 ** 2, seconds: 125 });
    const far = primaryReplication.standbys.map((s) => (s.pid === 405 ? { ...s, lag: { bytes: 2 * GB, seconds: 10 } } : s));
    expect(summary(run(replicationLagCheck, primary({ standbys: far })))[0]).toEqual(['critical', 'replica replica-2', 'replica replica-2 (10.0.0.51) replay is 2.00 GB and 10s behind (critical ≥ 1.00 GB)']);
    const catchup = primaryReplication.standbys.map((s) => (s.pid === 405 ? { ...s, state: 'catchup' } : s));
    expect(summary(run(replicationLagCheck, primary({ standbys: catchup })))[0]).toEqual(['critical', 'replica replica-2', 'replica replica-2 (10.0.0.51) is not streaming: catchup, 512 MB behind']);
    const healthy = primaryReplication.standbys.map((s) => ({ ...s, lag: { bytes: 0, seconds: 0 } }));
    expect(summary(run(replicationLagCheck, primary({ standbys: healthy })))).toEqual([['ok', 'cluster', '2 standbys streaming, none 100 MB or 1m00s behind']]);
    expect(run(replicationLagCheck, primary({ standbys: [] }))).toEqual([]);
  });

  it('a standby that disconnects stays critical until it returns (or is forgotten)', () => {
    const state = stateAfter(replicationLagCheck, okResults({ replication: primaryReplication }), undefined, ago(120));
    const gone = primary({ standbys: primaryReplication.standbys.filter((s) => s.pid !== 405).map((s) => ({ ...s, lag: { bytes: 0, seconds: 0 } })) });
    expect(summary(run(replicationLagCheck, gone, { previous: state }))).toEqual([['critical', 'replica replica-2', 'replica replica-2 is no longer connected (last seen 2m00s ago)']]);
    const later = new Date(fixtureNow.getTime() + 2 * 86_400_000);
    expect(summary(run(replicationLagCheck, gone, { previous: state, now: later }))[0]?.[0]).toBe('ok');
  });

  it('on a standby: its own replay, and critical when it is not streaming', () => {
    expect(summary(run(replicationLagCheck, okResults({ replication: standbyReplication })))).toEqual([
      ['ok', 'standby', "this standby's replay is 16.0 MB and 42s behind what it received"],
    ]);
    const behind = { ...standbyReplication, replay: { ...standbyReplication.replay, delaySeconds: 90, paused: true } };
    expect(summary(run(replicationLagCheck, okResults({ replication: behind })))).toEqual([
      ['warning', 'standby', "this standby's replay is 16.0 MB and 1m30s behind what it received, replay is paused (warning ≥ 1m00s)"],
    ]);
    expect(summary(run(replicationLagCheck, okResults({ replication: { ...standbyReplication, receiver: null } })))).toEqual([
      ['critical', 'standby', 'this standby is not streaming: no WAL receiver runs (disconnected, or restoring from the archive)'],
    ]);
  });
});

describe('replication slots', () => {
  it('warns for an inactive or large slot, critical for a lost one, nothing without slots', () => {
    expect(summary(run(replicationSlotsCheck, okResults({ replication: primaryReplication })))).toEqual([
      ['warning', 'slot old_replica', 'slot old_replica (physical) inactive for 2h00m, retaining 6.00 GB of WAL (warning ≥ 5.00 GB)'],
    ]);
    const small = primaryReplication.slots.map((s) => (s.name === 'old_replica' ? { ...s, retainedBytes: GB } : s));
    const inactive = run(replicationSlotsCheck, primary({ slots: small }))[0];
    expect([inactive?.severity, inactive?.message, inactive?.unit, inactive?.value]).toEqual(['warning', 'slot old_replica (physical) inactive for 2h00m, retaining 1.00 GB of WAL (warning: inactive ≥ 15m00s)', 'seconds', 7200]);
    const lost = primaryReplication.slots.map((s) => (s.name === 'old_replica' ? { ...s, walStatus: 'lost' } : s));
    expect(summary(run(replicationSlotsCheck, primary({ slots: lost })))).toEqual([
      ['critical', 'slot old_replica', 'slot old_replica is lost: the WAL its consumer needs was removed, it can no longer catch up'],
    ]);
    const fine = primaryReplication.slots.filter((s) => s.active);
    expect(summary(run(replicationSlotsCheck, primary({ slots: fine })))).toEqual([['ok', 'cluster', '2 slots, none lost, inactive for 15m00s or retaining 5.00 GB']]);
    expect(run(replicationSlotsCheck, primary({ slots: [] }))).toEqual([]);
  });
});

describe('WAL archiving', () => {
  it('warning when failing, critical after 5 minutes of failing (from the state), backlog over 10 segments', () => {
    const results = okResults({ replication: primaryReplication });
    expect(summary(run(walArchivingCheck, results))).toEqual([
      ['warning', 'archiver', 'archiving 000000010000001600000091 fails, first seen failing now; last success 6m40s ago (warning: failing)'],
      ['warning', 'archive queue', '14 WAL segments waiting to be archived (warning > 10)'],
    ]);
    const state = stateAfter(walArchivingCheck, results, undefined, ago(400));
    expect(summary(run(walArchivingCheck, results, { previous: state }))[0]).toEqual(['critical', 'archiver', 'archiving 000000010000001600000091 fails, seen failing for 6m40s; last success 6m40s ago (critical > 5m00s)']);
    const working = { ...primaryReplication.archiver, failing: false, waitingSegments: 1, lastArchivedSeconds: 20 };
    expect(summary(run(walArchivingCheck, primary({ archiver: working }), { previous: state }))).toEqual([
      ['ok', 'archiver', 'archiving works; last success 20s ago'],
      ['ok', 'archive queue', '1 WAL segments waiting to be archived (warning > 10)'],
    ]);
    expect(stateAfter(walArchivingCheck, primary({ archiver: working }), state)).toEqual({ failingSince: null });
    const uncounted = { ...working, waitingSegments: null, waitingUnknownReason: 'this role may not call pg_ls_archive_statusdir(): grant it pg_monitor' };
    expect(summary(run(walArchivingCheck, primary({ archiver: uncounted })))[1]).toEqual(['unknown', 'archive queue', 'cannot evaluate: this role may not call pg_ls_archive_statusdir(): grant it pg_monitor']);
    expect(run(walArchivingCheck, primary({ archiver: { ...working, mode: 'off' } }))).toEqual([]);
    expect(run(walArchivingCheck, okResults({ replication: standbyReplication }))).toEqual([]);
  });
});
