// `pgwarden drill` end to end (issue 5 item 10): a real cluster archiving with `pgwarden wal push`,
// a backup, rows written after it; drills restore the backup into a scratch directory, start it,
// check it and record the outcome in the repository. A passing drill (row counts at the restore
// point match, pg_amcheck clean, a record with a measured restore time and a plausible data-loss
// window); failing drills that fail for real: a custom SQL check at its critical level and a
// configured table that is not in the backup (exit 1, one line per failed check), a WAL segment
// missing from the repository (the restore cannot reach the restore point); each is recorded with
// ok:false and leaves no directory or server behind. Usage errors and an empty repository exit 2.
// Every pgwarden run happens as the postgres user, who owns the repository and the restored copy.
import { mkdir, readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DrillRecord } from '../../src/backup/drill.js';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch, type Run } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { drillRecords, processesUsing } from '../support/drills.js';

const scratch = new PostgresScratch('drill');
const pgwarden = (args: readonly string[]): Promise<Run> => pgwardenAsPostgres(args, { timeoutMs: 150_000 });

let primary: TestCluster;
let repo: string;
let parent: string;
let work: string;
let dsn: string;
let backupId: string;
/** The segment archived right after the rows written after the backup (removed in one test). */
let afterBackupWal: string;
/** clock_timestamp() just before and just after the last commit before the drills. */
let lastCommitFrom: number;
let lastCommitTo: number;

/** Every drill record of this test's repository, oldest first. */
const records = (): Promise<DrillRecord[]> => drillRecords(repo);


beforeAll(async () => {
  repo = await scratch.dir('repo');
  parent = await scratch.dir('target');
  work = await scratch.dir('work');
  primary = await createPrimary({ name: 'drill', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
  dsn = `host=${primary.host} port=${primary.port} user=postgres dbname=postgres`;
  await primary.sql("create table items (id int primary key, note text not null); insert into items select g, md5(g::text) from generate_series(1, 500) g");
  await primary.sql('select pg_switch_wal()');
  await waitFor('the first WAL segment in the archive', async () => (await readdir(repo)).includes('archive.json'), { timeoutMs: 30_000 });
  const backup = await pgwarden(['backup', '--dsn', dsn, '--repo', repo, '--fast']);
  expect(backup.code, backup.stderr).toBe(0);
  backupId = backup.stdout.trim();

  // Written after the backup: recovery must replay them from the archived WAL.
  await primary.sql("insert into items select g, md5(g::text) from generate_series(501, 550) g");
  const [before] = await primary.sql('select extract(epoch from clock_timestamp())::float8 as t');
  await primary.sql("insert into items select g, md5(g::text) from generate_series(551, 600) g");
  const [after] = await primary.sql('select extract(epoch from clock_timestamp())::float8 as t');
  lastCommitFrom = Number(before?.['t']) * 1000;
  lastCommitTo = Number(after?.['t']) * 1000;
  const [switched] = await primary.sql('select pg_walfile_name(pg_switch_wal()) as name');
  afterBackupWal = String(switched?.['name']);
  await waitFor(`WAL ${afterBackupWal} in the archive`, async () => (await readdir(join(repo, 'wal', '00000001'))).some((name) => name.startsWith(afterBackupWal)), { timeoutMs: 30_000 });
}, 120_000);

afterAll(async () => {
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('pgwarden drill', () => {
  it('passes: the copy restored to a restore point has the rows counted at it, pg_amcheck finds nothing, and the record is in the repository', async () => {
    const run = await pgwarden(['drill', '--repo', repo, '--dsn', dsn, '--table', 'public.items', '--target-dir', parent]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^drill \\S+ passed: backup ${backupId} restored in [\\d.]+ s to restore point pgwarden-drill-`));
    expect(run.stdout).toContain('ok rows public.items: 600 rows, as on the source at the restore point');
    expect(run.stdout).toContain('ok pg_amcheck: no corruption found');
    expect(run.stderr).toContain(`drill: restoring the latest backup (${backupId})`);
    expect(run.stderr).toContain('drill: pg_amcheck --all');

    const [record] = await records();
    expect(record).toMatchObject({ ok: true, reason: null, backupId, cluster: expect.any(String) as unknown });
    expect(record?.checks.map((check) => [check.name, check.ok])).toEqual([
      ['restore point', true], ['restore', true], ['pg_amcheck', true], ['rows public.items', true],
    ]);
    expect(record?.restoreSeconds).toBeGreaterThan(0);
    // The last commit replayed is the last insert above; the window runs from it to the drill's start.
    const recoveredTo = Date.parse(record?.recoveredTo ?? '');
    expect(recoveredTo).toBeGreaterThanOrEqual(Math.floor(lastCommitFrom) - 1);
    expect(recoveredTo).toBeLessThanOrEqual(Math.ceil(lastCommitTo) + 1);
    const startedAt = Date.parse(record?.startedAt ?? '');
    expect(record?.dataLossWindowSeconds).toBeCloseTo((startedAt - recoveredTo) / 1000, 0);
    expect(record?.dataLossWindowSeconds).toBeGreaterThan(0);
    expect(record?.dataLossWindowSeconds).toBeLessThan(120);
    expect(Date.parse(record?.finishedAt ?? '')).toBeGreaterThanOrEqual(startedAt);

    expect(await readdir(parent)).toEqual([]);
    expect(await processesUsing(parent)).toEqual([]);
  });

  it('fails on a custom SQL check at its critical level and a configured table missing from the backup: exit 1, one line each, recorded, cleaned up', async () => {
    const configFile = join(work, 'config.json');
    await scratch.writeFile(configFile, JSON.stringify({
      clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: `postgresql://postgres@${primary.host}:${primary.port}/postgres` }] }],
      backups: {
        repositories: [{ name: 'local', type: 'local', path: repo }],
        clusters: { prod: { drill: { tables: ['public.items', 'public.missing'], target_dir: parent } } },
      },
      health: {
        sql: [
          { name: 'items-present', query: 'select count(*) from items', direction: 'below', warning: 100, critical: 1 },
          { name: 'items-bounded', query: 'select count(*) from items', warning: 300, critical: 500 },
        ],
      },
    }));
    const before = (await records()).length;
    const run = await pgwarden(['drill', '--config', configFile, '--cluster', 'prod']);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(1);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines, `${run.stdout}\n${run.stderr}`).toHaveLength(2);
    expect(lines[0]).toMatch(/^FAILED rows public\.missing: cannot count it on the restored copy: .*relation "public\.missing" does not exist/);
    expect(lines[1]).toMatch(/^FAILED sql items-bounded: returned 600 on postgres \(critical; warning ≥ 300, critical ≥ 500\)/);
    expect(run.stderr).toMatch(/drill \S+ of cluster prod FAILED/);

    const all = await records();
    expect(all).toHaveLength(before + 1);
    const record = all[all.length - 1];
    expect(record).toMatchObject({ ok: false, cluster: 'prod', backupId });
    expect(record?.reason).toMatch(/^rows public\.missing: /);
    expect(record?.checks.map((check) => [check.name, check.ok])).toEqual([
      ['restore point', true], ['restore', true], ['pg_amcheck', true], ['rows public.items', true], ['rows public.missing', false],
      ['sql items-present', true], ['sql items-bounded', false],
    ]);
    expect(await readdir(parent)).toEqual([]);
    expect(await processesUsing(parent)).toEqual([]);
  });

  it('fails when a WAL segment is missing from the repository: the restore point is out of reach; recorded, nothing left behind', async () => {
    const walDir = join(repo, 'wal', '00000001');
    const [object] = (await readdir(walDir)).filter((name) => name.startsWith(afterBackupWal));
    if (object === undefined) throw new Error(`${afterBackupWal} is not in the archive`);
    const aside = join(work, 'aside');
    await mkdir(aside, { recursive: true });
    await rename(join(walDir, object), join(aside, object));
    let run: Run;
    try {
      run = await pgwarden(['drill', '--repo', repo, '--dsn', dsn, '--table', 'public.items', '--target-dir', parent, '--json']);
    } finally {
      await rename(join(aside, object), join(walDir, object));
    }
    expect(run.code, run.stderr).toBe(1);
    const printed = JSON.parse(run.stdout) as DrillRecord;
    expect(printed).toMatchObject({ ok: false, backupId: null, restoreSeconds: null, recoveredTo: null });
    expect(printed.checks.map((check) => [check.name, check.ok])).toEqual([['restore point', true], ['restore', false]]);
    expect(printed.reason).toContain('is beyond the archived WAL');
    expect(printed.reason).toContain(afterBackupWal);
    const all = await records();
    expect(all[all.length - 1]).toEqual(printed);
    expect(await readdir(parent)).toEqual([]);
  });

  it('exits 2 on bad usage and on a repository with nothing to drill, writing nothing', async () => {
    const none = await pgwarden(['drill']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('--repo DIR or --config FILE is required');
    expect(none.stderr).toContain('usage: pgwarden drill');

    const badTable = await pgwarden(['drill', '--repo', repo, '--table', 'items']);
    expect(badTable.code).toBe(2);
    expect(badTable.stderr).toContain('"items" is not a schema-qualified table name');

    const unknown = await pgwarden(['drill', '--repo', repo, '--frobnicate']);
    expect(unknown.code).toBe(2);

    const empty = await scratch.dir('empty');
    const nothing = await pgwarden(['drill', '--repo', empty, '--target-dir', parent]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('holds no restorable backup: nothing to drill');
    expect(await readdir(empty)).toEqual([]);
  });
});
