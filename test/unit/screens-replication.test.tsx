import { describe, expect, it } from 'vitest';
import { parseFilter } from '../../src/app/state.js';
import { buildTopology, type NodeObservation, type TopologyView } from '../../src/cluster/topology.js';
import { clockTime } from '../../src/components/ProbeStatus.js';
import { makeTheme } from '../../src/components/theme.js';
import type { ReplicationSnapshot } from '../../src/probes/replication.js';
import type { ServerSnapshot } from '../../src/probes/server.js';
import { archiverLine, lagTone, receiverLine, replicationScreen, topologyLines } from '../../src/screens/Replication.js';
import { errorResult, okResult, primaryReplication, renderScreen, resultsIn, screenProps, serverSnapshot, staleAt, standbyReplication, standbyServerSnapshot } from '../fixtures/snapshots.js';
import type { PropsOptions } from '../fixtures/snapshots.js';

function rendered(options: PropsOptions = {}, topology?: TopologyView): readonly string[] {
  return renderScreen(replicationScreen, { ...screenProps('replication', options), topology }).text;
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

// ---------------------------------------------------------------------------------------------
// The cluster's topology above this node's view.

function observed(name: string, host: string, server: ServerSnapshot, replication: NodeObservation['replication']): NodeObservation {
  return { name, host, port: 5432, server: okResult(server), replication };
}

const asciiTheme = makeTheme({ color: false, ascii: true });
const receiver = standbyReplication.receiver;
if (receiver === null) throw new Error('fixture without receiver');

/**
 * db1 (the fixtures' primary, timeline 2) with replica-1 (tied by application_name) and replica-2
 * (tied by its slot, 512 MB behind), a cascade under replica-1, and "old": a former primary that
 * still accepts writes on timeline 1.
 */
const splitBrain: TopologyView = {
  cluster: 'main',
  topology: buildTopology([
    observed('db1', '10.0.0.10', { ...serverSnapshot, timeline: 2 }, okResult(primaryReplication)),
    observed('replica-1', '10.0.0.50', { ...standbyServerSnapshot, timeline: 2 }, okResult({
      ...standbyReplication, receiver: { ...receiver, slotName: null }, standbys: [{ ...primaryReplication.standbys[0]!, pid: 901, application: 'cascade' }],
    })),
    observed('replica-2', '10.0.0.51', { ...standbyServerSnapshot, timeline: 2 }, okResult(standbyReplication)),
    observed('cascade', '10.0.0.52', { ...standbyServerSnapshot, timeline: 2 }, okResult({ ...standbyReplication, receiver: { ...receiver, senderHost: '10.0.0.50', slotName: null } })),
    observed('old', '10.0.0.9', { ...serverSnapshot, timeline: 1 }, okResult({ ...primaryReplication, standbys: [], slots: [] })),
  ]),
};

const tree80 = [
  'split brain: db1 (timeline 2) and old (timeline 1) both accept writes; stop wri…',
  'topology of main: 5 nodes · primary db1, old',
  ' node              role         tl replay lag lag time sync      state     slot',
  ' db1               primary       2',
  ' ├─ replica-1      standby       2        0 B      0ms async     streaming repl…',
  ' │  └─ cascade     standby       2        0 B      0ms async     streaming',
  ' └─ replica-2      standby       2     512 MB    2m05s async     streaming repl…',
  ' old               primary       1',
];

describe('Replication screen with the cluster topology', () => {
  it('puts the split brain first in red, then the tree, then this node\'s view at 80×24', () => {
    const lines = rendered({}, splitBrain);
    expect(lines.slice(0, 8)).toEqual(tree80);
    // This node's own view follows, in the room left: the archiver, the standbys, the slots.
    expect(lines.slice(8, 13)).toEqual(primary80.slice(0, 5));
    expect(lines.filter((line) => line.startsWith('replication slots (3)'))).toHaveLength(1);
    expect(lines).toHaveLength(24);
  });

  it('shows the whole lines at 200×50', () => {
    expect(rendered({ width: 200, height: 50 }, splitBrain).slice(0, 9)).toEqual([
      'split brain: db1 (timeline 2) and old (timeline 1) both accept writes; stop writes on the one that must not be primary (the older timeline is usually the old primary), then rejoin it as a standby',
      'topology of main: 5 nodes · primary db1, old',
      ' node              role         tl replay lag lag time sync      state     slot',
      ' db1               primary       2',
      ' ├─ replica-1      standby       2        0 B      0ms async     streaming replica_1',
      ' │  └─ cascade     standby       2        0 B      0ms async     streaming',
      ' └─ replica-2      standby       2     512 MB    2m05s async     streaming replica_2',
      ' old               primary       1',
      'archiver: FAILING · last failure 20s ago (000000010000001600000091), 7 failures · last archived 6m40s ago (000000010000001600000090) · 14 segments waiting',
    ]);
  });

  it('draws the tree with ASCII branches under --ascii', () => {
    const lines = topologyLines(splitBrain, asciiTheme, 20).map((parts) => parts.map((part) => part.text).join('').trimEnd());
    expect(lines.slice(3, 8)).toEqual([
      ' db1               primary       2',
      ' |- replica-1      standby       2        0 B      0ms async     streaming replica_1',
      ' |  `- cascade     standby       2        0 B      0ms async     streaming',
      ' `- replica-2      standby       2     512 MB    2m05s async     streaming replica_2',
      ' old               primary       1',
    ]);
  });

  it('colours the problems and the nodes they name', () => {
    const lines = topologyLines(splitBrain, asciiTheme, 20);
    expect(lines[0]?.[0]?.tone).toBe('critical');
    const old = lines.find((parts) => parts[0]?.text.startsWith(' old'));
    expect(old?.[0]?.tone).toBe('critical');
    const replica2 = lines.find((parts) => parts[0]?.text.includes('replica-2'));
    expect(replica2?.[3]).toEqual({ text: expect.stringContaining('512 MB'), tone: 'warning' });
    expect(replica2?.[4]).toEqual({ text: expect.stringContaining('2m05s'), tone: 'warning' });
  });

  it('counts what does not fit: problems beyond a third of the room, nodes beyond the rest', () => {
    const many: TopologyView = {
      cluster: 'big',
      topology: buildTopology(Array.from({ length: 8 }, (_, index) => ({
        name: `n${index}`, host: `10.0.1.${index}`, port: 5432,
        server: errorResult<ServerSnapshot>(undefined, 'connection refused'), replication: errorResult<ReplicationSnapshot>(undefined, 'connection refused'),
      }))),
    };
    const lines = topologyLines(many, asciiTheme, 9).map((parts) => parts.map((part) => part.text).join('').trimEnd());
    expect(lines).toEqual([
      'no primary: none of the 8 nodes answers',
      'n0 is seen by nobody: pgwarden cannot reach it (connection refused) and no node lists it as a standby',
      'and 7 more problems: 7 unseen',
      'topology of big: 8 nodes · no primary',
      ' node              role         tl replay lag lag time sync      state     slot',
      ' n0                unreachable   -                                         pgwarden cannot connect: connection refused',
      ' n1                unreachable   -                                         pgwarden cannot connect: connection refused',
      ' n2                unreachable   -                                         pgwarden cannot connect: connection refused',
      ' and 5 more nodes',
    ]);
  });

  it('shows the tree with the pending, unsupported and error states of this node\'s probe', () => {
    expect(rendered({ results: resultsIn('pending') }, splitBrain).filter((line) => line !== '')).toEqual(['waiting for the first replication snapshot…', ...tree80]);
    expect(rendered({ results: resultsIn('unsupported') }, splitBrain).slice(0, 3)).toEqual([
      'replication unavailable: this role may not see the WAL senders',
      'fix: GRANT pg_monitor TO the monitoring role',
      tree80[0],
    ]);
    // The stale snapshot of this node still shows under the tree.
    const error = rendered({ results: resultsIn('error') }, splitBrain);
    expect(error.slice(0, 11)).toEqual([
      'replication failed: connection lost: server closed the connection unexpectedly …',
      `showing data from ${clockTime(staleAt)} (stale, 45s old)`,
      ...tree80,
      primary80[0],
    ]);
  });

  it('on a cascading standby, lists the standbys streaming from it', () => {
    const cascading = resultsIn('ok', { replication: okResult({ ...standbyReplication, standbys: [{ ...primaryReplication.standbys[1]!, application: 'cascade' }] }) });
    expect(rendered({ results: cascading }).slice(0, 7)).toEqual([
      'receiver: streaming from 10.0.0.10:5432 · slot replica_2 · timeline 1 · last me…',
      'replay: 16.0 MB behind, 42s delay · received 16/B374D848, replayed 16/B274D848',
      'standbys (1)',
      ' standby        client          state     sync      replay lag▼ lag time last r…',
      '>cascade        10.0.0.51       streaming async          512 MB    2m05s 400ms …',
      'replication slots (0)',
      ' slot               type     active            retained wal_status plugin / dat…',
    ]);
    expect(replicationScreen.model!(screenProps('replication', { results: cascading })).rows.map((row) => row.key)).toEqual(['standby:405']);
  });
});
