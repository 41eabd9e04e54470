// Continuous WAL streaming (issue 5 item 3, DESIGN §7 rules 1 and 3): a real cluster, a real
// pg_receivewal on a replication slot, segments pushed from the spool into a real local repository;
// pg_receivewal killed with SIGKILL and restarted without a gap; a repository whose root cannot be
// reached (a path under a plain file) keeping the segment in the spool until it is fixed.
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCatalog } from '../../src/backup/catalog.js';
import { LocalRepository } from '../../src/backup/repository/local.js';
import { WalReceiver, defaultSlotName, type WalReceiverEvent, type WalReceiverOptions } from '../../src/backup/wal/receive.js';
import { parseWalFileName, segmentNumber } from '../../src/backup/wal/segment.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';

const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const SEGMENT = 16 * 1024 * 1024;
const PASSWORD = 'receive-secret-8d1f';
const scratch = new PostgresScratch('wal-receive');
let primary: TestCluster;
let repoDir: string;
let repository: LocalRepository;
let receiver: WalReceiver;
let spool: string;
const events: WalReceiverEvent[] = [];
const receivers: WalReceiver[] = [];

function receiverOptions(spoolDir: string, repositories: LocalRepository[], sink: WalReceiverEvent[]): WalReceiverOptions {
  return {
    // The server trusts the test user; the password is there to show it never reaches a command line.
    connection: { ...resolveConnection(primary.dsn(), 'the test cluster'), password: PASSWORD },
    cluster: 'Receive Test',
    spoolDir,
    repositories,
    compression: 'gzip',
    pgBin: PG_BIN,
    slotCheckMs: 500,
    statusIntervalS: 1,
    onEvent: (event) => sink.push(event),
  };
}

function newReceiver(options: { slot?: string; spoolDir: string; repositories: LocalRepository[]; sink: WalReceiverEvent[] }): WalReceiver {
  const made = new WalReceiver({ ...receiverOptions(options.spoolDir, options.repositories, options.sink), ...(options.slot === undefined ? {} : { slot: options.slot }) });
  receivers.push(made);
  return made;
}

/** Writes a little WAL and switches to a new segment; returns the name of the one it closed. */
async function writeAndSwitch(): Promise<string> {
  await primary.sql("insert into t select g, md5(g::text) from generate_series(1, 200) g");
  const [row] = await primary.sql('select pg_walfile_name(pg_switch_wal()) as name');
  return String(row?.['name']);
}

async function archivedSegments(repo: LocalRepository): Promise<string[]> {
  const catalog = await readCatalog(repo);
  return catalog.wal.filter((wal) => wal.file.kind === 'segment').map((wal) => wal.file.name);
}

async function spoolFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => !name.startsWith('.')).sort();
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  primary = await createPrimary({ name: 'wal-receive' });
  await primary.sql('create table t (id int, note text)');
  repoDir = await scratch.dir('repo');
  repository = new LocalRepository(repoDir);
  spool = join(await scratch.dir('spool'), 'spool');
  receiver = newReceiver({ spoolDir: spool, repositories: [repository], sink: events });
});

afterAll(async () => {
  for (const made of receivers) await made.stop();
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('WalReceiver', () => {
  it('creates its slot, streams, and moves each completed segment from the spool into the repository', async () => {
    await receiver.start();
    expect(receiver.status()).toMatchObject({ state: 'streaming', slot: 'pgwarden_receive_test', restarts: 0 });
    expect(defaultSlotName('Receive Test')).toBe('pgwarden_receive_test');
    await waitFor('pg_receivewal to connect', async () => {
      const rows = await primary.sql("select state from pg_stat_replication where application_name = 'pgwarden-receivewal'");
      return rows[0]?.['state'] === 'streaming';
    });
    const { pid } = receiver.status();
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    expect(argv).toEqual(expect.arrayContaining(['--slot', 'pgwarden_receive_test', '--directory', spool]));
    expect(argv.join(' ')).not.toContain(PASSWORD);
    expect((await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0')).toContain(`PGPASSWORD=${PASSWORD}`);
    // The slot holds WAL from where streaming started.
    const [slot] = await primary.sql("select slot_type, active, restart_lsn is not null as reserved from pg_replication_slots where slot_name = 'pgwarden_receive_test'");
    expect(slot).toEqual({ slot_type: 'physical', active: true, reserved: true });

    const name = await writeAndSwitch();
    await waitFor(`${name} in the repository`, async () => (await archivedSegments(repository)).includes(name));
    await waitFor(`${name} to leave the spool`, async () => !(await spoolFiles(spool)).includes(name));
    // Only the segment being written is left: the .partial that stays on this host (it appears with the next WAL).
    await primary.sql('insert into t values (0, null)');
    await waitFor('the next segment\'s .partial in the spool', async () => (await spoolFiles(spool)).every((file) => file.endsWith('.partial')) && (await spoolFiles(spool)).length === 1);
    expect(events).toContainEqual({ type: 'pushed', name });
    await waitFor('the status to show the push and the slot', async () => {
      const status = receiver.status();
      return status.lastPushed !== null && status.lastPushed >= name && status.retainedBytes !== null && status.slotWalStatus === 'reserved' && status.partialBytes !== null;
    });
    const status = receiver.status();
    expect(status.retainedBytes).toBeLessThan(2 * SEGMENT);
    expect(status.partialBytes).toBeLessThan(SEGMENT);
    expect(status.waiting).toBe(0);
  });

  it('restarts pg_receivewal killed with SIGKILL, and the repository holds contiguous segments', async () => {
    const before = receiver.status();
    expect(before.pid).not.toBeNull();
    process.kill(before.pid!, 'SIGKILL');
    await waitFor('pg_receivewal to be restarted', async () => {
      const status = receiver.status();
      return status.restarts >= 1 && status.state === 'streaming' && status.pid !== null && status.pid !== before.pid;
    });
    expect(events.some((event) => event.type === 'exited' && event.signal === 'SIGKILL')).toBe(true);
    expect(events).toContainEqual({ type: 'restart-scheduled', inMs: 1000, reason: 'pg_receivewal ended (SIGKILL)' });

    const names: string[] = [];
    for (let round = 0; round < 2; round++) names.push(await writeAndSwitch());
    await waitFor('both segments in the repository', async () => {
      const archived = await archivedSegments(repository);
      return names.every((name) => archived.includes(name));
    });
    const numbers = (await archivedSegments(repository)).map((name) => Number(segmentNumber(parseWalFileName(name)!, SEGMENT)));
    expect(numbers.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe(numbers[0]! + i);
  });

  it('stop() ends pg_receivewal and leaves the slot inactive', async () => {
    await primary.sql('insert into t values (0, null)');
    await waitFor('a .partial in the spool', async () => (await spoolFiles(spool)).some((file) => file.endsWith('.partial')));
    const pid = receiver.status().pid!;
    await receiver.stop();
    expect(receiver.status()).toMatchObject({ state: 'stopped', pid: null });
    // A clean stop: pg_receivewal flushed its .partial, which stays in the spool, and exited 0.
    expect(events.at(-2)).toEqual({ type: 'exited', code: 0, signal: null, error: null });
    expect((await spoolFiles(spool)).filter((file) => file.endsWith('.partial'))).toHaveLength(1);
    expect(processAlive(pid)).toBe(false);
    await waitFor('the slot to be released', async () => {
      const [row] = await primary.sql("select active from pg_replication_slots where slot_name = 'pgwarden_receive_test'");
      return row?.['active'] === false;
    });
  });

  it('starts again after a kill -9 left a .partial cut short while pg_receivewal was zero-filling it', async () => {
    // pg_receivewal fills a new .partial with zeros up to 16 MB before writing WAL into it; a kill
    // in the middle leaves a shorter file that it then refuses forever ("should be 0 or 16777216").
    const [partial] = (await spoolFiles(spool)).filter((file) => file.endsWith('.partial'));
    expect(partial).toBeDefined();
    await writeFile(join(spool, partial!), Buffer.alloc(6_791_168));
    const lines: string[] = [];
    const restarted = new WalReceiver({ ...receiverOptions(spool, [repository], events), log: (line) => lines.push(line) });
    receivers.push(restarted);
    await restarted.start();
    expect(restarted.status().state).toBe('streaming');
    expect(lines).toContain(`wal receiver Receive Test: removed ${partial}: pg_receivewal was stopped while preparing it (6791168 bytes of zeros, no WAL)`);

    const name = await writeAndSwitch();
    await waitFor(`${name} in the repository`, async () => (await archivedSegments(repository)).includes(name));
    // Streaming resumed from the slot, so the segment the short file stood for was received whole.
    const numbers = (await archivedSegments(repository)).map((file) => Number(segmentNumber(parseWalFileName(file)!, SEGMENT)));
    for (let i = 1; i < numbers.length; i++) expect(numbers[i]).toBe(numbers[0]! + i);
    expect(lines.filter((line) => line.includes('error:'))).toEqual([]);
    await restarted.stop();
  });

  it('keeps a segment in the spool until every repository stores it (rule 1), retrying a failing one', async () => {
    // A real failure: the second repository's root lies under a plain file, so every write fails.
    const base = await scratch.dir('broken');
    await writeFile(join(base, 'blocker'), 'not a directory\n');
    const broken = new LocalRepository(join(base, 'blocker', 'repo'));
    const otherSpool = join(await scratch.dir('spool2'), 'spool');
    const sink: WalReceiverEvent[] = [];
    const second = newReceiver({ slot: 'pgwarden_second', spoolDir: otherSpool, repositories: [repository, broken], sink });
    await second.start();
    await waitFor('the second pg_receivewal to connect', async () => {
      const [row] = await primary.sql("select active from pg_replication_slots where slot_name = 'pgwarden_second'");
      return row?.['active'] === true;
    });

    const name = await writeAndSwitch();
    await waitFor(`a failed push of ${name}`, async () => sink.some((event) => event.type === 'push-failed' && event.name >= name));
    expect(await spoolFiles(otherSpool)).toContain(name);
    expect(second.status().lastError).toMatch(/^cannot push 0000000100000000000000[0-9A-F]{2}: /);
    expect(second.status().waiting).toBeGreaterThanOrEqual(1);
    // The first repository may hold it already (pushWal ran there first): it still counts only once both do.
    const retried = sink.filter((event) => event.type === 'push-failed').length;

    await rm(join(base, 'blocker'));
    await mkdir(join(base, 'blocker', 'repo'), { recursive: true });
    await waitFor(`${name} pushed to both repositories`, async () => (await archivedSegments(broken)).includes(name), { timeoutMs: 45_000 });
    await waitFor(`${name} to leave the spool`, async () => !(await spoolFiles(otherSpool)).includes(name));
    expect((await archivedSegments(repository))).toContain(name);
    expect(retried).toBeGreaterThanOrEqual(1);
    expect(sink).toContainEqual({ type: 'pushed', name });

    await second.stop();
    expect(second.status().state).toBe('stopped');
  });
});
