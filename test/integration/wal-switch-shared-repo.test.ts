// Streaming and archive_command into ONE repository (docs/wal-streaming.md, DESIGN §7 rules 1 and
// 2): a real cluster whose archive_command is `pgwarden wal push`, and a real WalReceiver (its own
// process, as the postgres user, with pg_receivewal on a slot) pushing into the same local
// repository. Each switched segment is stored once and both sides count it as archived; a segment
// stored first with other bytes after its switch record (what pg_receivewal's copy may hold) is
// counted as archived by the receiver and by archive_command, and is never replaced.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readdir, readFile, rm, stat, writeFile, chown } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresScratch, pgwardenAsPostgres, pgwardenBin } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { startReceiver as startWalReceiver, type ReceiverProcess } from '../support/wal-receiver.js';

const execFileAsync = promisify(execFile);
const PG_BIN = process.env['PGWARDEN_TEST_PG_BIN'] ?? '/usr/lib/postgresql/15/bin';
const SEGMENT = 16 * 1024 * 1024;
const scratch = new PostgresScratch('wal-shared');

let primary: TestCluster;
let repoDir: string;
let spool: string;
/** A FIFO that, while it exists, holds archive_command until the test writes to it. */
let gate: string;
const receivers: ReceiverProcess[] = [];

/**
 * The receiver compresses as archive_command does (auto: zstd), so that both store a segment under
 * the same key and the repository tells the second one that the first one was there.
 */
function startReceiver(): ReceiverProcess {
  const made = startWalReceiver({ dsn: primary.dsn(), spool, repo: repoDir, pgBin: PG_BIN, cluster: 'Shared Test', compression: 'auto' });
  receivers.push(made);
  return made;
}

async function waitStreaming(receiver: ReceiverProcess): Promise<void> {
  await waitFor('the receiver to start pg_receivewal', async () => receiver.events.some((event) => event.type === 'started'));
  await waitFor('the slot to be active', async () => {
    const [row] = await primary.sql("select active from pg_replication_slots where slot_name = 'pgwarden_shared_test'");
    return row?.['active'] === true;
  });
}

/** Writes a little WAL and switches; the segment closed and where its switch record ends. */
async function writeAndSwitch(): Promise<{ name: string; end: number }> {
  await primary.sql("insert into t select g, md5(g::text) from generate_series(1, 500) g");
  const [row] = await primary.sql('select file_name, file_offset from pg_walfile_name_offset(pg_switch_wal())');
  return { name: String(row?.['file_name']), end: Number(row?.['file_offset']) };
}

async function archiver(): Promise<{ lastArchived: string; failed: number; archived: number }> {
  const [row] = await primary.sql('select last_archived_wal, failed_count, archived_count from pg_stat_archiver');
  const last = row?.['last_archived_wal'];
  return { lastArchived: typeof last === 'string' ? last : '', failed: Number(row?.['failed_count']), archived: Number(row?.['archived_count']) };
}

async function waitArchived(name: string): Promise<void> {
  await waitFor(`archive_command to archive ${name}`, async () => {
    const stats = await archiver();
    if (stats.failed > 0) throw new Error(`archiving failed: ${JSON.stringify(stats)}`);
    return stats.lastArchived >= name;
  }, { timeoutMs: 45_000 });
}

/** The repository's objects for one WAL name. */
async function objectsOf(name: string): Promise<string[]> {
  return (await readdir(join(repoDir, 'wal', '00000001'))).filter((file) => file.startsWith(name) && !file.startsWith('.'));
}

beforeAll(async () => {
  repoDir = await scratch.dir('repo');
  gate = join(await scratch.dir('gate'), 'gate');
  spool = join(await scratch.dir('spool'), 'spool');
  const push = `${process.execPath} ${pgwardenBin} wal push --repo ${repoDir} %p`;
  primary = await createPrimary({ name: 'wal-shared', archiveCommand: `if [ -p ${gate} ]; then cat ${gate} > /dev/null; fi; ${push}` });
  await primary.sql('create table t (id int, note text)');
  await execFileAsync('runuser', ['-u', 'postgres', '--', 'mkdir', '-m', '0700', spool]);
});

afterAll(async () => {
  // Let an archive_command still held by the gate go: opening a FIFO read-write never blocks.
  await open(gate, constants.O_RDWR).then((handle) => handle.close(), () => undefined);
  await rm(gate, { force: true });
  for (const receiver of receivers) await receiver.stop();
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('a WalReceiver and archive_command sharing one repository', () => {
  it('store every switched segment once, and neither side ever fails', async () => {
    const receiver = startReceiver();
    await waitStreaming(receiver);
    const names: string[] = [];
    for (let round = 0; round < 3; round++) names.push((await writeAndSwitch()).name);
    await waitFor('the receiver to push every segment', async () => names.every((name) => receiver.events.some((event) => event.type === 'pushed' && event.name === name)));
    await waitArchived(names.at(-1)!);
    expect(receiver.events.filter((event) => event.type === 'push-failed')).toEqual([]);
    const stats = await archiver();
    expect(stats.failed).toBe(0);
    expect(stats.archived).toBeGreaterThanOrEqual(3);
    for (const name of names) expect(await objectsOf(name)).toHaveLength(1);
    await receiver.stop();
  });

  it('count a segment stored first with other bytes after its switch as archived, and never replace it', async () => {
    for (const running of receivers) await running.stop();
    // Hold archive_command, so that the copy with another tail is stored first.
    await execFileAsync('mkfifo', ['-m', '0644', gate]);
    const { name, end } = await writeAndSwitch();
    expect(end).toBeLessThan(SEGMENT - 8192);
    const server = await readFile(join(primary.dataDir, 'pg_wal', name));
    const otherTail = Buffer.from(server);
    otherTail.fill(0xa5, end, end + 3 * 8192);
    const dir = await scratch.dir('other-tail');
    await writeFile(join(dir, name), otherTail);
    await chown(join(dir, name), ...(await scratch.owner()));
    const stored = await pgwardenAsPostgres(['wal', 'push', '--repo', repoDir, join(dir, name)], { cwd: primary.dataDir });
    expect(stored, stored.stderr).toMatchObject({ code: 0, stderr: '' });
    const [key] = await objectsOf(name);
    const object = await readFile(join(repoDir, 'wal', '00000001', key!));

    // The receiver resumes from its slot, completes the segment and pushes its copy: the same WAL.
    const receiver = startReceiver();
    await waitFor(`the receiver to push ${name}`, async () => receiver.events.some((event) => event.type === 'pushed' && event.name === name));
    expect(receiver.events.filter((event) => event.type === 'push-failed')).toEqual([]);

    expect((await archiver()).lastArchived < name).toBe(true);
    await writeFile(gate, '');
    await rm(gate);
    await waitArchived(name);
    expect((await archiver()).failed).toBe(0);
    // Archiving goes on after it.
    const next = await writeAndSwitch();
    await waitArchived(next.name);

    expect(await objectsOf(name)).toEqual([key]);
    expect((await readFile(join(repoDir, 'wal', '00000001', key!))).equals(object)).toBe(true);
    const out = await scratch.dir('fetched');
    const fetched = await pgwardenAsPostgres(['wal', 'fetch', '--repo', repoDir, name, join(out, 'RECOVERYXLOG')], { cwd: out });
    expect(fetched, fetched.stderr).toMatchObject({ code: 0 });
    const back = await readFile(join(out, 'RECOVERYXLOG'));
    expect(back.equals(otherTail)).toBe(true);
    expect(back.equals(server)).toBe(false);
    expect((await stat(join(out, 'RECOVERYXLOG'))).size).toBe(SEGMENT);
    await receiver.stop();
  });
});
