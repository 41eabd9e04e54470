// The Backups view's keys end to end (issue 5 item 11): the built console in a real pseudo-terminal
// (tmux), run as the postgres user like a DBA's backup account, over a real primary whose
// archive_command is `pgwarden wal push --config …` into a local, encrypted repository. `b` shows
// the exact `pgwarden backup` command line and its cost, runs it once confirmed, streams its
// progress, and the new backup appears in the list; `v` verifies it ("ok"); a backup held up by a
// failing archiver shows that one job runs at a time, that q and Esc ask before stopping it, and
// stops when told; --read-only refuses a backup but verifies. Every job is in the audit log.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { killAll, overwideLines, start, type Terminal, waitForDialog } from '../support/terminal.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const scratch = new PostgresScratch('console-jobs');
const columns = 200;
const rows = 50;

let primary: TestCluster;
let repo: string;
let home: string;
let configPath: string;
let auditPath: string;

/** The console as the postgres user, on the Backups view. */
async function console(extra: readonly string[] = []): Promise<Terminal> {
  const terminal = await start(`runuser -u postgres -- ${process.execPath} bin/pgwarden.js --config ${configPath} --audit-log ${auditPath} ${extra.join(' ')}`, { columns, rows, cwd: root });
  await terminal.waitForText(/^pgwarden/, 20_000);
  await terminal.press('9');
  await terminal.waitForText(/^local \(local .*\): \d+ backups?/m, 20_000);
  // The node's role (from the first server probe) is in the header, and in every plan's target.
  await terminal.waitForText(/^pgwarden .*\) │ primary/m, 20_000);
  return terminal;
}

async function auditEntries(): Promise<Record<string, unknown>[]> {
  const text = await readFile(auditPath, 'utf8').catch(() => '');
  return text.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
}

beforeAll(async () => {
  repo = await scratch.dir('repo');
  home = await scratch.dir('home');
  configPath = join(home, 'config.json');
  auditPath = join(home, 'audit.log');
  const keyPath = join(home, 'k1.key');
  await writeFile(keyPath, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await chown(keyPath, ...(await scratch.owner()));
  primary = await createPrimary({ name: 'console-jobs', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --config ${configPath} --cluster main %p` });
  await writeFile(configPath, JSON.stringify({
    refresh_ms: 500,
    clusters: [{ name: 'main', nodes: [{ name: 'primary', dsn: primary.dsn() }] }],
    alerting: { state_dir: join(home, 'alerts') },
    backups: { repositories: [{ name: 'local', type: 'local', path: repo }], keys: [{ id: 'k1', file: keyPath }] },
  }));
  await chown(configPath, ...(await scratch.owner()));
  await primary.sql('create table t (id int primary key); insert into t select generate_series(1, 1000)');
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  await killAll();
  await primary?.sql('alter system reset archive_command; select pg_reload_conf()').catch(() => undefined);
  await destroyAll();
  await scratch.cleanUp();
});

describe('backup jobs from the Backups view', () => {
  it('backs up (plan = the command line), shows its progress and the new backup, then verifies it', async () => {
    const terminal = await console();
    await terminal.waitForText('no complete backup in any repository yet');
    expect(await terminal.screen()).toMatch(/b back up {2}v verify {2}D drill/);

    await terminal.press('b');
    const plan = await waitForDialog(terminal, 'Back up now');
    const command = `${process.execPath} ${pgwardenBin} backup --config ${configPath} --cluster main --node primary --fast`;
    expect(plan).toContain(`target: main/primary primary → local (${repo})`);
    expect(plan).toContain('danger: medium');
    expect(plan).toContain(`1. ${command}`);
    expect(plan).toContain('a fast checkpoint on the primary: a burst of I/O');
    expect(plan).toContain('encrypted');
    expect(plan).toContain('press y to run, n or esc to cancel');
    expect(plan).not.toMatch(/[A-Za-z0-9+/]{43}=/);

    await terminal.press('y');
    const running = await terminal.waitForText(/^backup running \S+ · main\/primary primary → local/m);
    expect(running).toContain('esc stops it (asks first)');
    // Its stderr, as it happens.
    await terminal.waitForText(/^ {2}backup \d{8}T\d{6}Z-full: /m, 30_000);
    const done = await terminal.waitForText(/done: Back up now: backup (\d{8}T\d{6}Z-full) stored/, 60_000);
    const id = /done: Back up now: backup (\d{8}T\d{6}Z-full) stored/.exec(done)?.[1] ?? '';
    expect(done).toMatch(/^backup finished after \S+ \(exit 0\): backup \d{8}T\d{6}Z-full stored/m);
    // The list is read again at once: the backup is there, never verified yet.
    const listed = await terminal.waitForText(new RegExp(`^>.*local .* primary .*\\s+never\\s+never\\s+${id}`, 'm'), 20_000);
    expect(listed).toMatch(/^local \(local .*\): 1 backup /m);
    expect(overwideLines(await terminal.joinedLines(), columns)).toEqual([]);

    await terminal.press('v');
    const verifyPlan = await waitForDialog(terminal, 'Verify a backup');
    expect(verifyPlan).toContain(`1. ${process.execPath} ${pgwardenBin} verify ${id} --config ${configPath} --cluster main --repo local`);
    expect(verifyPlan).toContain('danger: low');
    expect(verifyPlan).toContain('the server is not touched');
    await terminal.press('y');
    await terminal.waitForText(`done: Verify a backup: backup ${id}: ok (`, 60_000);
    await terminal.waitForText(new RegExp(`^>.*local .*\\s+ok \\S+ ago\\s+never\\s+${id}`, 'm'), 20_000);

    // A drill: its plan names `pgwarden drill` with the same config, cluster and repository; declined here.
    await terminal.press('D');
    const drillPlan = await waitForDialog(terminal, 'Restore drill');
    expect(drillPlan).toContain(`1. ${process.execPath} ${pgwardenBin} drill --config ${configPath} --cluster main --repo local`);
    expect(drillPlan).toContain('danger: medium');
    await terminal.press('n');
    await terminal.waitForText('nothing was done');

    await terminal.press('q');
    expect(await terminal.waitForExit(20_000)).toBe(0);
    const audit = await auditEntries();
    expect(audit.map((entry) => [entry['action'], entry['outcome']])).toEqual([['backup.now', 'ok'], ['backup.verify', 'ok'], ['backup.drill', 'cancelled']]);
    expect(audit[0]).toMatchObject({ sql: [command], plan_target: `main/primary primary → local (${repo})` });
  }, 180_000);

  it('runs one job at a time; q and Esc ask before stopping a running backup, which then stops', async () => {
    // A failing archiver holds the backup: it waits for its WAL, for real.
    await primary.sql("alter system set archive_command = 'false'");
    await primary.sql('select pg_reload_conf()');
    const terminal = await console();
    await terminal.press('b');
    await terminal.waitForText('Back up now');
    await terminal.press('y');
    // pg_basebackup itself waits for the archiver before it ends.
    const held = await terminal.waitForText(/^ {2}backup \d{8}T\d{6}Z-full: .*MiB/m, 60_000);
    const heldId = /^ {2}backup (\d{8}T\d{6}Z-full): /m.exec(held)?.[1] ?? '';

    await terminal.press('b');
    await terminal.waitForText(/warning: a backup job is running on main \(\S+\): one at a time; wait for it, or Esc to stop it/);

    await terminal.press('q');
    const quit = await waitForDialog(terminal, 'Quit: a backup job is running');
    expect(quit).toMatch(/running for \S+ \(pid \d+\)/);
    expect(quit).toContain('listed as incomplete, never counted as a backup');
    await terminal.press('n');
    await terminal.waitForScreen('the quit dialog to close', (screen) => !screen.includes('Quit: a backup job is running'));
    expect(await terminal.exitCode()).toBeNull();
    expect(await terminal.screen()).toMatch(/^backup running /m);

    await terminal.press('Escape');
    await terminal.waitForText('Stop the running backup job?');
    await terminal.press('y');
    const stopped = await terminal.waitForText(/error: Back up now: stopped on request \(SIGTERM\); a backup stopped before its manifest is stored never counts/, 20_000);
    expect(stopped).toMatch(/^backup FAILED after \S+ \(ended by SIGTERM\)/m);
    // It never counts: no manifest, and the list still holds the one complete backup.
    expect(existsSync(join(repo, 'backups', heldId, 'manifest.json'))).toBe(false);
    expect(await terminal.screen()).toMatch(/^local \(local .*\): 1 backup /m);

    await terminal.press('q');
    expect(await terminal.waitForExit(20_000)).toBe(0);
    const audit = await auditEntries();
    expect(audit[audit.length - 1]).toMatchObject({ action: 'backup.now', outcome: 'failed', message: expect.stringContaining('stopped on request') });
    await primary.sql('alter system reset archive_command');
    await primary.sql('select pg_reload_conf()');
  }, 180_000);

  it('--read-only refuses a backup and says why, but offers verify', async () => {
    const terminal = await console(['--read-only']);
    await terminal.press('b');
    const refused = await waitForDialog(terminal, 'refused:');
    expect(refused).toContain('refused: --read-only: a backup runs a checkpoint and pg_backup_start on the server (verify is allowed)');
    await terminal.press('Escape');
    // Esc then a key at once would read as Alt+key: wait for the dialog to close.
    await terminal.waitForScreen('the dialog to close', (screen) => !screen.includes('refused:'));
    await terminal.press('v');
    const verify = await waitForDialog(terminal, 'Verify a backup');
    expect(verify).toContain('press y to run');
    await terminal.press('n');
    await terminal.waitForText('nothing was done');
    await terminal.press('q');
    expect(await terminal.waitForExit(20_000)).toBe(0);
    expect((await auditEntries()).pop()).toMatchObject({ action: 'backup.verify', outcome: 'cancelled' });
  }, 120_000);
});
