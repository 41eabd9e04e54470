import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { archiverLine, lagTone, receiverLine, replicationScreen } from '../../src/screens/Replication.js';
import { okResult, primaryReplication, renderScreen, resultsIn, screenProps, staleAt, standbyReplication } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}): readonly string[] {
  return renderScreen(replicationScreen, screenProps('replication', options)).text;
}

function keys(options: PropsOptions = {}): string[] {
  return replicationScreen.model!(screenProps('replication', options)).rows.map((row) => row.key);
}

const standbyResults = resultsIn('ok', { replication: okResult(standbyReplication) });

const primary80 = [
  'archiver: FAILING · last failure 20s ago (000000010000001600000091), 7 failures',
  'standbys (2)',
  ' standby        client          state     sync      replay lag▼ lag time last r…',
  '>replica-2      10.0.0.51       streaming async          512 MB    2m05s 400ms …',
  ' replica-1      10.0.0.50       streaming async             0 B      0ms 400ms …',
  'replication slots (3)',
  ' slot               type     active            retained wal_status plugin / dat…',
  ' old_replica        physical no, 2h00m ago      6.00 GB extended',
  ' replica_1          physical yes (pid 402)      16.0 MB reserved',
  ' replica_2          physical yes (pid 405)       512 MB reserved',
];

describe('Replication screen at 80×24', () => {
  it('on a primary: the archiver, the standbys most lagging first, and the slots', () => {
    const lines = rendered();
    expect(lines.slice(0, 10)).toEqual(primary80);
    expect(lines.slice(10).every((line) => line === '')).toBe(true);
    expect(lines).toHaveLength(24);
  });

  it('on a standby: the receiver and the replay', () => {
    expect(rendered({ results: standbyResults }).slice(0, 5)).toEqual([
      'receiver: streaming from 10.0.0.10:5432 · slot replica_2 · timeline 1 · last me…',
      'replay: 16.0 MB behind, 42s delay · received 16/B374D848, replayed 16/B274D848',
      'replication slots (0)',
      ' slot               type     active            retained wal_status plugin / dat…',
      ' no replication slot',
    ]);
  });

  it('says when no standby is connected and the receiver is not running', () => {
    const lonely = resultsIn('ok', { replication: okResult({ ...primaryReplication, standbys: [] }) });
    expect(rendered({ results: lonely }).slice(1, 4)).toEqual(['standbys (0)', ' standby        client          state     sync      replay lag▼ lag time last r…', ' no standby is connected']);
    const orphan = resultsIn('ok', { replication: okResult({ ...standbyReplication, receiver: null }) });
    expect(rendered({ results: orphan })[0]).toBe('receiver: not running: restoring from the archive, or the primary is unreachable');
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ results: resultsIn('pending') }).filter((line) => line !== '')).toEqual(['waiting for the first replication snapshot…']);
    expect(rendered({ results: resultsIn('unsupported') }).filter((line) => line !== '')).toEqual([
      'replication unavailable: this role may not see the WAL senders',
      'fix: GRANT pg_monitor TO the monitoring role',
    ]);
    const error = rendered({ results: resultsIn('error') });
    expect(error.slice(0, 2)).toEqual([
      'replication failed: connection lost: server closed the connection unexpectedly …',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
    ]);
    expect(error.slice(2, 12)).toEqual(primary80);
  });
});

describe('Replication screen at 200×50', () => {
  it('on a primary: every column, and the whole archiver line', () => {
    const lines = rendered({ width: 200, height: 50 });
    expect(lines.slice(0, 10)).toEqual([
      'archiver: FAILING · last failure 20s ago (000000010000001600000091), 7 failures · last archived 6m40s ago (000000010000001600000090) · 14 segments waiting',
      'standbys (2)',
      ' standby        client          state     sync      replay lag▼ lag time last reply replayed to',
      '>replica-2      10.0.0.51       streaming async          512 MB    2m05s  400ms ago 16/9374D848',
      ' replica-1      10.0.0.50       streaming async             0 B      0ms  400ms ago 16/9374D848',
      'replication slots (3)',
      ' slot               type     active            retained wal_status plugin / database',
      ' old_replica        physical no, 2h00m ago      6.00 GB extended',
      ' replica_1          physical yes (pid 402)      16.0 MB reserved',
      ' replica_2          physical yes (pid 405)       512 MB reserved',
    ]);
    expect(lines).toHaveLength(50);
  });

  it('on a standby: the whole receiver line', () => {
    expect(rendered({ width: 200, height: 50, results: standbyResults })[0]).toBe(
      'receiver: streaming from 10.0.0.10:5432 · slot replica_2 · timeline 1 · last message 500ms ago',
    );
  });

  it('renders the pending, unsupported and error states', () => {
    expect(rendered({ width: 200, height: 50, results: resultsIn('pending') })[0]).toBe('waiting for the first replication snapshot…');
    expect(rendered({ width: 200, height: 50, results: resultsIn('unsupported') }).slice(0, 2)).toEqual([
      'replication unavailable: this role may not see the WAL senders',
      'fix: GRANT pg_monitor TO the monitoring role',
    ]);
    const error = rendered({ width: 200, height: 50, results: resultsIn('error') });
    expect(error[0]).toBe('replication failed: connection lost: server closed the connection unexpectedly (pgwarden reconnects on its own)');
    expect(error[3]).toBe('standbys (2)');
  });
});

describe('Replication model and lines', () => {
  it('lists standbys, most lagging first, then slots', () => {
    expect(keys()).toEqual(['standby:405', 'standby:402', 'slot:old_replica', 'slot:replica_1', 'slot:replica_2']);
    expect(keys({ results: standbyResults })).toEqual([]);
  });

  it('sorts the standbys by the chosen column', () => {
    expect(keys({ viewState: { sort: { column: 'application', descending: false } } }).slice(0, 2)).toEqual(['standby:402', 'standby:405']);
    expect(rendered({ viewState: { sort: { column: 'application', descending: false } } })[3]).toBe('>replica-1      10.0.0.50       streaming async             0 B      0ms 400ms …');
  });

  it('filters standbys by application, state and client, and slots by name', () => {
    expect(keys({ viewState: { filter: parseFilter('10\\.0\\.0\\.50') } })).toEqual(['standby:402']);
    expect(keys({ viewState: { filter: parseFilter('!replica-2') } })).toEqual(['standby:402', 'slot:old_replica', 'slot:replica_1', 'slot:replica_2']);
    expect(keys({ viewState: { filter: parseFilter('inactive') } })).toEqual(['slot:old_replica']);
  });

  it('rates lag as DESIGN.md §5 says: 100 MB or 60 s, then 1 GB or 300 s', () => {
    const MB = 1024 ** 2;
    expect(lagTone(99 * MB, 59)).toBeUndefined();
    expect(lagTone(100 * MB, 0)).toBe('warning');
    expect(lagTone(0, 60)).toBe('warning');
    expect(lagTone(1024 * MB, 0)).toBe('critical');
    expect(lagTone(null, 300)).toBe('critical');
  });

  it('describes the archiver when healthy, off, or unable to count', () => {
    const healthy = { ...primaryReplication.archiver, failing: false, waitingSegments: 0 };
    expect(archiverLine(healthy).map((part) => part.text).join('')).toBe('archiver: ok · last archived 6m40s ago (000000010000001600000090) · 0 segments waiting');
    expect(archiverLine({ ...healthy, mode: 'off' })[0]?.text).toBe('archiver: archive_mode is off (no WAL archive: point-in-time recovery is impossible)');
    const unknown = { ...healthy, waitingSegments: null, waitingUnknownReason: 'this role may not call pg_ls_archive_statusdir(): grant it pg_monitor' };
    expect(archiverLine(unknown).at(-1)?.text).toBe(' · segments waiting unknown (this role may not call pg_ls_archive_statusdir(): grant it pg_monitor)');
    expect(archiverLine(primaryReplication.archiver).at(-1)).toEqual({ text: ' · 14 segments waiting', tone: 'warning' });
  });

  it('describes a receiver without host details', () => {
    const receiver = { ...standbyReplication.receiver!, senderHost: null, senderPort: null, slotName: null, status: 'waiting' };
    expect(receiverLine({ ...standbyReplication, receiver }).map((part) => part.text).join('')).toBe('receiver: waiting from the primary · no slot · timeline 1 · last message 500ms ago');
  });
});
