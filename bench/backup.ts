/**
 * bench/backup (issue 5): pgwarden's physical backup and restore against pgBackRest on the same
 * cluster, the same data and the same machine. Prints a table, the ratios against the goals
 * (backup time ≤ 0.5× pgBackRest's, restore time ≤ 1.0×, repository size ≤ 1.5×) and where
 * pgwarden's backup time goes. Prints figures; asserts nothing.
 *
 *   npm run bench:backup                    (builds dist/ first; scale 50, about 750 MB; ~15 minutes)
 *   BENCH_SCALE=5 npx tsx bench/backup.ts   (a quick run on a built dist/; or the scale as argument)
 *   BENCH_RUNS=2 BENCH_PROFILE=0            (more rounds; skip the stage profile)
 *
 * Needs pgBackRest (scripts/setup-bench.sh), zstd and pgbench, and runs as root: the cluster,
 * both tools and the restores run as the postgres OS user. One throwaway cluster (test/support/
 * cluster.ts) archives every WAL segment to both repositories (archive_command runs `pgbackrest
 * archive-push`, then `pgwarden wal push`), so both find their WAL archived.
 *
 * Settings, as equal as the tools allow: both zstd level 3 on 2 processes/threads (pgwarden
 * `zstd -3 -T2`; pgBackRest compress-type=zst, compress-level=3, process-max=2); both encrypted
 * (pgwarden AES-256-GCM with a generated master key; pgBackRest repo-cipher-type=aes-256-cbc with a
 * generated passphrase in its config file, mode 0600); both an immediate checkpoint (pgwarden
 * --fast; pgBackRest start-fast=y). Both restores are timed without starting the server, and then
 * to the end of recovery (pgwarden --start; pgBackRest restore + pg_ctl start + promotion).
 *
 * Fairness: every timed backup and restore starts after a `sync` and with the page cache dropped
 * (not timed), so no run pays for the write-back of the one before or reads the cluster or the
 * repository from a warm cache; and each round runs the backups and each kind of restore in ABBA
 * order (two runs per tool, averaged), starting with the other tool each round: in this VM the
 * run that follows a removal and a cache drop is slower, and ABBA gives neither tool the better
 * place.
 */
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { encryptStream } from '../src/backup/crypto.js';
import { generateKeyFile, loadKeyring } from '../src/backup/keys.js';
import { LocalRepository } from '../src/backup/repository/local.js';
import { createPrimary, destroyAll, freePort, waitFor, type TestCluster } from '../test/support/cluster.js';
import { onProcessEnd } from '../test/support/exit-cleanup.js';
import { asPostgres, lineAt, mb, ratio, s1, table, timedAsPostgres, treeBytes, type TimedRun } from './backup-tools.js';

const env = process.env;
const scale = Number(process.argv[2] ?? env['BENCH_SCALE'] ?? 50);
const runs = Number(env['BENCH_RUNS'] ?? 1);
const profile = env['BENCH_PROFILE'] !== '0';
const pgBin = '/usr/lib/postgresql/15/bin';
const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');
const pgwarden = [process.execPath, join(repoRoot, 'bin/pgwarden.js')];
const stanza = 'bench';
const keyId = 'bench';

/** The scratch tree, owned by postgres: both repositories, the key, the configs, the restores. */
interface Scratch {
  readonly root: string;
  readonly pgwardenRepo: string;
  readonly pgbackrestRepo: string;
  readonly keyFile: string;
  readonly pgbackrestConf: string;
}

async function postgresIds(): Promise<[number, number]> {
  const [uid, gid] = await Promise.all([asText('id', ['-u', 'postgres']), asText('id', ['-g', 'postgres'])]);
  return [Number(uid), Number(gid)];
}

async function asText(command: string, args: readonly string[]): Promise<string> {
  return (await promisify(execFile)(command, [...args])).stdout.trim();
}

async function makeScratch(): Promise<Scratch> {
  const [uid, gid] = await postgresIds();
  const root = join(tmpdir(), `pgwarden-bench-backup-${process.pid}`);
  await mkdir(root, { mode: 0o700 });
  scratchRoot = root;
  const scratch: Scratch = {
    root,
    pgwardenRepo: join(root, 'pgwarden-repo'),
    pgbackrestRepo: join(root, 'pgbackrest-repo'),
    keyFile: join(root, 'keys', `${keyId}.key`),
    pgbackrestConf: join(root, 'pgbackrest.conf'),
  };
  for (const dir of [root, scratch.pgwardenRepo, scratch.pgbackrestRepo, dirname(scratch.keyFile), join(root, 'pgbackrest-log'), join(root, 'pgbackrest-lock'), join(root, 'restores')]) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chown(dir, uid, gid);
  }
  // A key file must belong to the user pgwarden runs as (archive_command runs as postgres).
  await generateKeyFile(scratch.keyFile);
  await chown(scratch.keyFile, uid, gid);
  return scratch;
}

/** pgBackRest's own config: the secret passphrase lives here (mode 0600), never on a command line. */
async function writePgbackrestConf(scratch: Scratch, cluster: TestCluster): Promise<void> {
  const text = [
    '[global]',
    `repo1-path=${scratch.pgbackrestRepo}`,
    // Nothing expires during a run (up to two full backups per round): the WAL archive sizes compare.
    'repo1-retention-full=99',
    'repo1-cipher-type=aes-256-cbc',
    `repo1-cipher-pass=${randomBytes(32).toString('base64')}`,
    'compress-type=zst',
    'compress-level=3',
    'process-max=2',
    'start-fast=y',
    `log-path=${join(scratch.root, 'pgbackrest-log')}`,
    `lock-path=${join(scratch.root, 'pgbackrest-lock')}`,
    'log-level-console=warn',
    'log-level-file=info',
    '',
    `[${stanza}]`,
    `pg1-path=${cluster.dataDir}`,
    `pg1-port=${cluster.port}`,
    `pg1-socket-path=${dirname(cluster.dataDir)}`,
    'pg1-user=postgres',
    '',
  ].join('\n');
  await writeFile(scratch.pgbackrestConf, text, { mode: 0o600 });
  await chown(scratch.pgbackrestConf, ...(await postgresIds()));
}

function pgbackrest(scratch: Scratch, ...args: string[]): string[] {
  return ['pgbackrest', `--config=${scratch.pgbackrestConf}`, `--stanza=${stanza}`, ...args];
}

/** Waits until the archiver has stored every segment up to now (after a WAL switch), in both repositories. */
async function archiveCaughtUp(cluster: TestCluster, timeoutMs: number): Promise<void> {
  const [switched] = await cluster.sql('select pg_walfile_name(pg_switch_wal()) as wal');
  const wanted = String(switched?.['wal']);
  await waitFor(`the archiver to store ${wanted}`, async () => {
    const [row] = await cluster.sql('select last_archived_wal, last_failed_wal, failed_count from pg_stat_archiver');
    const last = row?.['last_archived_wal'];
    return typeof last === 'string' && last.slice(0, 24) >= wanted;
  }, { timeoutMs, intervalMs: 1000 });
}

/** A restored copy's server on `port`, waited until it has left recovery. */
async function waitPromoted(port: number): Promise<void> {
  await waitFor(`the restored server on port ${port} to end recovery`, async () => {
    const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return (await client.query<{ r: boolean }>('select pg_is_in_recovery() as r')).rows[0]?.r === false;
    } finally {
      await client.end().catch(() => undefined);
    }
  }, { timeoutMs: 600_000, intervalMs: 50 });
}

/** Servers started from restored directories: stopped at the end, whatever happens. */
const startedDirs = new Set<string>();

// On Ctrl-C the harness stops its cluster; the restored servers and the scratch tree are ours.
let scratchRoot: string | undefined;
onProcessEnd(() => {
  for (const dir of startedDirs) {
    try {
      const pid = Number.parseInt(readFileSync(join(dir, 'postmaster.pid'), 'utf8'), 10);
      if (pid > 0) process.kill(pid, 'SIGQUIT');
    } catch {
      // Not running.
    }
  }
  if (scratchRoot !== undefined) rmSync(scratchRoot, { recursive: true, force: true, maxRetries: 3 });
});

async function stopRestored(dir: string): Promise<void> {
  if (!startedDirs.has(dir)) return;
  await asPostgres([join(pgBin, 'pg_ctl'), 'stop', '-D', dir, '-m', 'immediate', '-w']).catch(() => undefined);
  startedDirs.delete(dir);
}

/** A, B, B, A: each of two runs twice, so neither gains from its place in the sequence. */
async function abba<A, B>(first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B, B, A]> {
  const a1 = await first();
  const b1 = await second();
  const b2 = await second();
  const a2 = await first();
  return [a1, b1, b2, a2];
}

/** Two runs of one measure averaged (wall and CPU), with the first run itself for its phases. */
type MeanRun = TimedRun & { readonly first: TimedRun };

function meanRun(a: TimedRun, b: TimedRun): MeanRun {
  return { ...a, wallS: (a.wallS + b.wallS) / 2, userS: (a.userS + b.userS) / 2, sysS: (a.sysS + b.sysS) / 2, first: a };
}

/** The first run of an averaged measure (a single run is its own first). */
function firstOf(run: TimedRun): TimedRun {
  return 'first' in run ? (run as MeanRun).first : run;
}

function meanStart(a: { restore: TimedRun; startS: number }, b: { restore: TimedRun; startS: number }): { restore: TimedRun; startS: number } {
  return { restore: meanRun(a.restore, b.restore), startS: (a.startS + b.startS) / 2 };
}

/**
 * The same start for every timed run (not timed): everything dirty is written back, so a run pays
 * only for its own writes, and the page cache is dropped, so no run reads the repository from
 * memory or reuses the pages the run before it freed (in a VM that hands freed memory back to the
 * host, reused pages are far cheaper than fresh ones, which made the order of the runs matter).
 */
async function settle(): Promise<void> {
  await promisify(execFile)('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

async function freshDir(scratch: Scratch, name: string): Promise<string> {
  const dir = join(scratch.root, 'restores', name);
  await stopRestored(dir);
  await rm(dir, { recursive: true, force: true });
  return dir;
}

interface Round {
  readonly ours: { backup: TimedRun; backupBytes: number; phases: Map<string, number>; restore: TimedRun; restoreStart: TimedRun | undefined };
  /** startRestore: the restore before the timed start (its own run, not the one timed alone). */
  readonly theirs: { backup: TimedRun; backupBytes: number; restore: TimedRun; startRestore: TimedRun; startS: number };
}

/**
 * The phases of the server's side of a pg_basebackup (pg_stat_progress_basebackup), polled every
 * 100 ms while `work` runs: seconds spent in each, in the order seen.
 */
async function basebackupPhases<T>(cluster: TestCluster, work: () => Promise<T>): Promise<{ result: T; phases: Map<string, number> }> {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', database: 'postgres', application_name: 'bench-backup-phases' });
  client.on('error', () => undefined);
  await client.connect();
  const phases = new Map<string, number>();
  let stop = false;
  const poller = (async () => {
    let last = process.hrtime.bigint();
    let phase: string | undefined;
    while (!stop) {
      const rows = (await client.query<{ phase: string }>('select phase from pg_stat_progress_basebackup')).rows;
      const now = process.hrtime.bigint();
      if (phase !== undefined) phases.set(phase, (phases.get(phase) ?? 0) + Number(now - last) / 1e9);
      phase = rows[0]?.phase;
      last = now;
      await delay(100);
    }
  })();
  try {
    return { result: await work(), phases };
  } finally {
    stop = true;
    await poller.catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

async function pgwardenBackup(scratch: Scratch, cluster: TestCluster, variant: { compression: string; encrypted: boolean } = { compression: 'zstd', encrypted: true }): Promise<{ run: TimedRun; bytes: number; id: string; phases: Map<string, number> }> {
  const keyArgs = variant.encrypted ? ['--key', `${keyId}=${scratch.keyFile}`] : [];
  const { result: run, phases } = await basebackupPhases(cluster, () => timedAsPostgres([...pgwarden, 'backup', '--dsn', cluster.dsn(), '--repo', scratch.pgwardenRepo, ...keyArgs, '--fast', '--compression', variant.compression]));
  const id = run.stdout.trim();
  return { run, id, phases, bytes: await treeBytes(join(scratch.pgwardenRepo, 'backups', id)) };
}

async function pgbackrestBackup(scratch: Scratch): Promise<{ run: TimedRun; bytes: number; label: string }> {
  const run = await timedAsPostgres(pgbackrest(scratch, '--type=full', 'backup'));
  const info = JSON.parse(await asPostgres(pgbackrest(scratch, '--output=json', 'info'))) as { backup: { label: string }[] }[];
  const label = info[0]?.backup.at(-1)?.label;
  if (label === undefined) throw new Error('pgbackrest info lists no backup after a successful backup');
  return { run, label, bytes: await treeBytes(join(scratch.pgbackrestRepo, 'backup', stanza, label)) };
}

async function round(scratch: Scratch, cluster: TestCluster, index: number): Promise<Round> {
  // Alternate the order, so that neither tool always runs on a warmer page cache.
  const oursFirst = index % 2 === 0;
  process.stderr.write(`round ${index + 1}: backups (${oursFirst ? 'pgwarden first' : 'pgBackRest first'})…\n`);
  // ABBA here too (see the restores below), every backup from a cold cache (settle): the second
  // would otherwise find the cluster in the page cache.
  const oursBackup = async (): Promise<Awaited<ReturnType<typeof pgwardenBackup>>> => {
    await settle();
    return pgwardenBackup(scratch, cluster);
  };
  const theirsBackup = async (): Promise<Awaited<ReturnType<typeof pgbackrestBackup>>> => {
    await settle();
    return pgbackrestBackup(scratch);
  };
  let ours: Awaited<ReturnType<typeof pgwardenBackup>>;
  let theirs: Awaited<ReturnType<typeof pgbackrestBackup>>;
  if (oursFirst) {
    const [o1, t1, t2, o2] = await abba(oursBackup, theirsBackup);
    [ours, theirs] = [{ ...o1, run: meanRun(o1.run, o2.run) }, { ...t1, run: meanRun(t1.run, t2.run) }];
  } else {
    const [t1, o1, o2, t2] = await abba(theirsBackup, oursBackup);
    [ours, theirs] = [{ ...o1, run: meanRun(o1.run, o2.run) }, { ...t1, run: meanRun(t1.run, t2.run) }];
  }

  process.stderr.write(`round ${index + 1}: restores (${oursFirst ? 'pgBackRest first' : 'pgwarden first'})…\n`);
  const keyArgs = ['--key', `${keyId}=${scratch.keyFile}`];
  // Each timed run starts on a settled disk: what earlier steps left dirty in the page cache is
  // written back first (sync, not timed), so neither tool pays for the other's writes.
  const oursRestore = async (): Promise<TimedRun> => {
    const oursDir = await freshDir(scratch, 'pgwarden');
    await settle();
    const run = await timedAsPostgres([...pgwarden, 'restore', '--repo', scratch.pgwardenRepo, ...keyArgs, '--to', 'latest', '--target-dir', oursDir]);
    await freshDir(scratch, 'pgwarden');
    return run;
  };
  const theirsDir = join(scratch.root, 'restores', 'pgbackrest');
  const theirsRestoreRun = async (): Promise<TimedRun> => {
    await freshDir(scratch, 'pgbackrest');
    await mkdir(theirsDir, { mode: 0o700 });
    await chown(theirsDir, ...(await postgresIds()));
    await settle();
    return timedAsPostgres(pgbackrest(scratch, `--pg1-path=${theirsDir}`, '--archive-mode=off', 'restore'));
  };
  const oursStart = async (): Promise<TimedRun> => {
    const startDir = await freshDir(scratch, 'pgwarden-start');
    const port = await freePort();
    startedDirs.add(startDir);
    await settle();
    const run = await timedAsPostgres([...pgwarden, 'restore', '--repo', scratch.pgwardenRepo, ...keyArgs, '--to', 'latest', '--target-dir', startDir, '--start', '--port', String(port)]);
    // Where the server's start went (its log has millisecond timestamps), on stderr.
    const serverLog = readFileSync(join(startDir, 'pgwarden-restore.log'), 'utf8').trim();
    process.stderr.write(`round ${index + 1}: pgwarden restore --start, the server log:\n${serverLog.replace(/^/gm, '  ')}\n`);
    await freshDir(scratch, 'pgwarden-start');
    return run;
  };
  // pgBackRest restores to the end of the archive and promotes; its copy keeps the source's port
  // in the included test config, so a port of its own goes last in postgresql.auto.conf.
  const theirsStart = async (): Promise<{ restore: TimedRun; startS: number }> => {
    const restore = await theirsRestoreRun();
    const theirsPort = await freePort();
    await appendFile(join(theirsDir, 'postgresql.auto.conf'), `port = ${theirsPort}\n`);
    const started = process.hrtime.bigint();
    startedDirs.add(theirsDir);
    await asPostgres([join(pgBin, 'pg_ctl'), 'start', '-D', theirsDir, '-l', join(scratch.root, 'restores', 'pgbackrest.log'), '-w', '-t', '600']);
    await waitPromoted(theirsPort);
    return { restore, startS: Number(process.hrtime.bigint() - started) / 1e9 };
  };

  // ABBA: each tool restores twice, first and last or in the middle, and the two are averaged, so
  // neither gains from its place (in this VM the run right after a removal and a cache drop is
  // measurably slower). The order alternates with the rounds.
  let restore: TimedRun;
  let theirsRestore: TimedRun;
  let restoreStart: TimedRun;
  let theirsStarted: { restore: TimedRun; startS: number };
  if (oursFirst) {
    const [t1, o1, o2, t2] = await abba(theirsRestoreRun, oursRestore);
    [theirsRestore, restore] = [meanRun(t1, t2), meanRun(o1, o2)];
    const [ts1, os1, os2, ts2] = await abba(theirsStart, oursStart);
    [theirsStarted, restoreStart] = [meanStart(ts1, ts2), meanRun(os1, os2)];
  } else {
    const [o1, t1, t2, o2] = await abba(oursRestore, theirsRestoreRun);
    [theirsRestore, restore] = [meanRun(t1, t2), meanRun(o1, o2)];
    const [os1, ts1, ts2, os2] = await abba(oursStart, theirsStart);
    [theirsStarted, restoreStart] = [meanStart(ts1, ts2), meanRun(os1, os2)];
  }
  const startS = theirsStarted.startS;
  const theirsStartRestore = theirsStarted.restore;
  await freshDir(scratch, 'pgbackrest');
  return {
    ours: { backup: ours.run, backupBytes: ours.bytes, phases: ours.phases, restore, restoreStart },
    theirs: { backup: theirs.run, backupBytes: theirs.bytes, restore: theirsRestore, startRestore: theirsStartRestore, startS },
  };
}

const cpu = (run: TimedRun): string => s1(run.userS + run.sysS);

function report(rounds: readonly Round[], walBytes: { ours: number; theirs: number }, databaseBytes: number): void {
  const rows: string[][] = [['round', 'measure', 'pgwarden', 'pgBackRest', 'ratio', 'goal']];
  const verdict = (value: number, goal: number): string => {
    const over = ((value / goal) - 1) * 100;
    return `≤ ${goal.toFixed(1)}× ${value <= goal ? 'met' : `MISSED by ${over.toFixed(over < 1 ? 1 : 0)}%`}`;
  };
  rounds.forEach(({ ours, theirs }, index) => {
    const n = String(index + 1);
    rows.push(
      [n, 'backup, wall', s1(ours.backup.wallS), s1(theirs.backup.wallS), ratio(ours.backup.wallS, theirs.backup.wallS), verdict(ours.backup.wallS / theirs.backup.wallS, 0.5)],
      [n, 'backup, CPU (user+sys)', cpu(ours.backup), cpu(theirs.backup), ratio(ours.backup.userS + ours.backup.sysS, theirs.backup.userS + theirs.backup.sysS), ''],
      [n, 'backup, stored', mb(ours.backupBytes), mb(theirs.backupBytes), ratio(ours.backupBytes, theirs.backupBytes), verdict(ours.backupBytes / theirs.backupBytes, 1.5)],
      [n, 'restore (not started)', s1(ours.restore.wallS), s1(theirs.restore.wallS), ratio(ours.restore.wallS, theirs.restore.wallS), verdict(ours.restore.wallS / theirs.restore.wallS, 1)],
      [n, 'restore, CPU (user+sys)', cpu(ours.restore), cpu(theirs.restore), ratio(ours.restore.userS + ours.restore.sysS, theirs.restore.userS + theirs.restore.sysS), ''],
    );
    if (ours.restoreStart !== undefined) {
      const theirsTotal = theirs.startRestore.wallS + theirs.startS;
      rows.push([n, 'restore + recovery to promotion', s1(ours.restoreStart.wallS), s1(theirsTotal), ratio(ours.restoreStart.wallS, theirsTotal), verdict(ours.restoreStart.wallS / theirsTotal, 1)]);
    }
  });
  rows.push(['', 'WAL archive (whole run)', mb(walBytes.ours), mb(walBytes.theirs), ratio(walBytes.ours, walBytes.theirs), '']);
  console.log(`\npgbench scale ${scale}: databases ${mb(databaseBytes)}; ${rounds.length} round(s); load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  console.log(table(rows));

  // Where pgwarden's time goes, from its own progress lines.
  for (const [index, { ours }] of rounds.entries()) {
    const streamed = lineAt(ours.backup, /of data directory in/);
    const done = lineAt(ours.backup, /: done in /);
    const started = lineAt(ours.backup, /: from (primary|standby)/);
    if (streamed !== undefined && done !== undefined && started !== undefined) {
      console.log(`\nround ${index + 1} pgwarden backup phases: start-up and checks ${s1(started)}; pg_basebackup → zstd → encrypt → store ${s1(streamed - started)}; WAL wait, read-back, manifest ${s1(done - streamed)}; exit ${s1(ours.backup.wallS - done)}`);
    }
    const server = [...ours.phases].map(([phase, seconds]) => `${phase} ${s1(seconds)}`).join('; ');
    console.log(`round ${index + 1} pg_basebackup's phases on the server (pg_stat_progress_basebackup): ${server}`);
    const firstPart = lineAt(ours.restore, /part 1\/\d+.*verified and unpacked/);
    const lastPart = ours.restore.lines.filter((entry) => /verified and unpacked/.test(entry.line)).at(-1)?.atS;
    if (firstPart !== undefined && lastPart !== undefined) {
      console.log(`round ${index + 1} pgwarden restore phases (first of its two runs): plan and first part ${s1(firstPart)}; other parts ${s1(lastPart - firstPart)}; settings and exit ${s1(firstOf(ours.restore).wallS - lastPart)}`);
    }
    const starting = ours.restoreStart === undefined ? undefined : lineAt(ours.restoreStart, /starting PostgreSQL/);
    if (ours.restoreStart !== undefined && starting !== undefined) {
      console.log(`round ${index + 1} pgwarden restore --start (first of its two runs): unpacked at ${s1(starting)}; start and recovery to promotion ${s1(firstOf(ours.restoreStart).wallS - starting)}`);
    }
  }
}

/**
 * pg_basebackup -X none again, timing its output: the data directory streams, then the server
 * waits in pg_backup_stop until the archiver has stored the stop segment and the backup history
 * file (with -X none; pgBackRest's backup does not wait there, it polls its own archive).
 */
async function basebackupSplit(cluster: TestCluster): Promise<{ streamS: number; tailS: number }> {
  const child = spawn('runuser', ['-u', 'postgres', '--', `${pgBin}/pg_basebackup`, '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', '-D', '-', '-F', 'tar', '-X', 'none', '--checkpoint=fast', '--no-manifest'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const started = process.hrtime.bigint();
  const at = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  const arrivals: { atS: number; total: number }[] = [];
  let total = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    total += chunk.length;
    arrivals.push({ atS: at(), total });
  });
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`pg_basebackup exited with ${code ?? 'a signal'}`);
  const endS = at();
  // The last 64 KiB are pg_control and the tar trailer, written as the backup ends.
  const streamS = arrivals.find((arrival) => arrival.total >= total - 64 * 1024)?.atS ?? endS;
  return { streamS, tailS: endS - streamS };
}

/** Timings of the backup pipeline's stages, each alone: what pg_basebackup, zstd, encryption and the store cost. */
async function profileStages(scratch: Scratch, cluster: TestCluster): Promise<void> {
  const basebackup = `${pgBin}/pg_basebackup -h 127.0.0.1 -p ${cluster.port} -U postgres -D - -F tar -X none --checkpoint=fast --no-manifest`;
  const tarFile = join(scratch.root, 'profile.tar.zst');
  const raw = await timedAsPostgres(['bash', '-c', `${basebackup} > /dev/null`]);
  const split = await basebackupSplit(cluster);
  const zstd = await timedAsPostgres(['bash', '-c', `set -o pipefail; ${basebackup} | zstd -3 -q -c -T2 --no-progress > ${tarFile}`]);
  const compressed = (await stat(tarFile)).size;

  const keyring = loadKeyring([{ id: keyId, file: scratch.keyFile }]);
  let started = process.hrtime.bigint();
  await pipeline(createReadStream(tarFile), encryptStream(keyring), new Writable({ write: (_chunk, _encoding, callback) => callback() }));
  const encryptS = Number(process.hrtime.bigint() - started) / 1e9;

  const repoDir = join(scratch.root, 'profile-repo');
  await mkdir(repoDir);
  const repository = new LocalRepository(repoDir);
  started = process.hrtime.bigint();
  const stored = await repository.put('backups/profile/pgdata.tar.000001.zst', createReadStream(tarFile), { ifExists: 'fail' });
  const putS = Number(process.hrtime.bigint() - started) / 1e9;
  started = process.hrtime.bigint();
  await pipeline(await repository.get('backups/profile/pgdata.tar.000001.zst', stored.sha256), new Writable({ write: (_chunk, _encoding, callback) => callback() }));
  const readS = Number(process.hrtime.bigint() - started) / 1e9;
  await rm(repoDir, { recursive: true, force: true });
  await rm(tarFile, { force: true });

  // Recovery calls restore_command once per WAL file (and for each file it probes that is not
  // there): the cost of one call, median of 5, is what separates the two tools at start-up.
  const [archived] = await cluster.sql('select last_archived_wal as wal from pg_stat_archiver');
  const wal = String(archived?.['wal']).slice(0, 24);
  const fetchDir = join(scratch.root, 'profile-wal');
  await mkdir(fetchDir, { mode: 0o700 });
  await chown(fetchDir, ...(await postgresIds()));
  const fetches: { ours: TimedRun[]; theirs: TimedRun[]; node: TimedRun[] } = { ours: [], theirs: [], node: [] };
  for (let i = 0; i < 5; i++) {
    fetches.ours.push(await timedAsPostgres([...pgwarden, 'wal', 'fetch', wal, join(fetchDir, `ours-${i}`), '--repo', scratch.pgwardenRepo, '--key', `${keyId}=${scratch.keyFile}`, '--pgdata', cluster.dataDir], { cwd: cluster.dataDir }));
    fetches.theirs.push(await timedAsPostgres(pgbackrest(scratch, 'archive-get', wal, join(fetchDir, `theirs-${i}`)), { cwd: cluster.dataDir }));
    fetches.node.push(await timedAsPostgres([process.execPath, '-e', '0']));
  }
  await rm(fetchDir, { recursive: true, force: true });
  const median = (list: readonly TimedRun[], pick: (run: TimedRun) => number): number => list.map(pick).sort((a, b) => a - b)[Math.floor(list.length / 2)] ?? Number.NaN;
  const ms = (seconds: number): string => `${(seconds * 1000).toFixed(0)} ms`;
  const fetchRow = (label: string, list: readonly TimedRun[]): string[] => [label, ms(median(list, (run) => run.wallS)), ms(median(list, (run) => run.userS + run.sysS))];

  console.log(`\nOne restore_command call (WAL ${wal}, 16 MB), median of 5:`);
  console.log(table([
    ['command', 'wall', 'CPU (user+sys)'],
    fetchRow('pgwarden wal fetch (node, zstd -d, AES-GCM, SHA-256)', fetches.ours),
    fetchRow('pgbackrest archive-get (C)', fetches.theirs),
    fetchRow('node -e 0 (the runtime\'s bare start-up)', fetches.node),
  ]));

  // The whole backup again, and without compression: what zstd costs in place. (Not without
  // encryption: the archive is encrypted, and a backup reads its history file from it.)
  const variants = [];
  for (const variant of [{ compression: 'zstd', encrypted: true }, { compression: 'none', encrypted: true }]) {
    const backup = await pgwardenBackup(scratch, cluster, variant);
    variants.push({ label: `pgwarden backup, ${variant.compression}${variant.encrypted ? ', encrypted' : ''}`, backup });
  }
  console.log('\npgwarden backup variants (run one after the other):');
  console.log(table([
    ['variant', 'wall', 'CPU (user+sys)', 'stored', 'server: streaming', 'server: waiting for archiving'],
    ...variants.map(({ label, backup }) => [
      label, s1(backup.run.wallS), cpu(backup.run), mb(backup.bytes),
      s1(backup.phases.get('streaming database files') ?? 0), s1(backup.phases.get('waiting for wal archiving to finish') ?? 0),
    ]),
  ]));

  console.log(`\nStages of the backup pipeline, each timed alone (${mb(compressed)} compressed):`);
  console.log(table([
    ['stage', 'wall', 'CPU (user+sys)'],
    ['pg_basebackup -F tar -X none → /dev/null', s1(raw.wallS), cpu(raw)],
    ['pg_basebackup -X none again: data streamed (first to last byte)', s1(split.streamS), ''],
    ['  then until it exits (pg_backup_stop waits for the archiver)', s1(split.tailS), ''],
    ['pg_basebackup | zstd -3 -T2 → file', s1(zstd.wallS), cpu(zstd)],
    ['encryptStream (AES-256-GCM) of the .zst', s1(encryptS), ''],
    ['LocalRepository.put (SHA-256, write, fsync)', s1(putS), ''],
    ['read-back check (get with SHA-256)', s1(readS), ''],
  ]));
}

async function main(): Promise<void> {
  await asText('pgbackrest', ['version']).catch(() => {
    throw new Error('pgBackRest is not installed: run scripts/setup-bench.sh (as root)');
  });
  const scratch = await makeScratch();
  try {
    // pgBackRest first: its backup polls its own archive for the stop segment, so it never waits
    // for pgwarden's push; pgwarden's pg_basebackup -X none waits for the whole command, so
    // pgwarden pays for pgBackRest's push too (about 0.1 s of C per file: against pgwarden).
    const archiveCommand = `pgbackrest --config=${scratch.pgbackrestConf} --stanza=${stanza} archive-push %p && ${pgwarden.join(' ')} wal push --repo ${scratch.pgwardenRepo} --key ${keyId}=${scratch.keyFile} %p`;
    process.stderr.write(`creating a cluster archiving to both repositories (${scratch.root})…\n`);
    const cluster = await createPrimary({
      name: 'bench-backup',
      archiveCommand,
      // Room for pgbench -i without a checkpoint every few seconds; the harness runs fsync off.
      settings: { shared_buffers: '128MB', max_wal_size: '2GB', checkpoint_timeout: '30min' },
    });
    await writePgbackrestConf(scratch, cluster);
    await asPostgres(pgbackrest(scratch, 'stanza-create'));
    await asPostgres(pgbackrest(scratch, 'check'));

    process.stderr.write(`pgbench -i -s ${scale}…\n`);
    await asPostgres([join(pgBin, 'pgbench'), '-i', '-s', String(scale), '-q', '-h', '127.0.0.1', '-p', String(cluster.port), '-U', 'postgres', 'postgres']);
    await cluster.sql('checkpoint');
    process.stderr.write('waiting for the archiver to catch up…\n');
    await archiveCaughtUp(cluster, 30 * 60_000);
    const [size] = await cluster.sql('select sum(pg_database_size(oid))::text as bytes from pg_database');

    const rounds: Round[] = [];
    for (let index = 0; index < runs; index++) rounds.push(await round(scratch, cluster, index));
    const walBytes = { ours: await treeBytes(join(scratch.pgwardenRepo, 'wal')), theirs: await treeBytes(join(scratch.pgbackrestRepo, 'archive')) };
    report(rounds, walBytes, Number(size?.['bytes']));
    if (profile) await profileStages(scratch, cluster);
  } finally {
    for (const dir of [...startedDirs]) await stopRestored(dir);
    await destroyAll();
    await rm(scratch.root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
}

await main();
