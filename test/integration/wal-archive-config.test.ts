// `pgwarden wal push/fetch --config FILE --cluster NAME` (issue 5 items 1, 3, 5; DESIGN §7 rules 1
// and 5): a real cluster archives through a config with two local repositories and a master key;
// every segment lands, encrypted, in both; fetch falls back to the second repository when the first
// lacks the file, says "not in the archive" (exit 1) only when both lack it, and stops recovery
// (126) when one repository fails while the other lacks it, or when the config is bad. Every
// pgwarden run happens as the postgres user, through bin/pgwarden.js, as PostgreSQL runs it.
import { randomBytes } from 'node:crypto';
import { chown, cp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';




const scratch = new PostgresScratch('walcfg');


async function writeForPostgres(path: string, text: string, mode = 0o644): Promise<void> {
  await writeFile(path, text, { mode });
  await chown(path, ...(await scratch.owner()));
}

/** The repository's WAL objects for `name` (relative keys). */
async function walObjects(repo: string, name: string): Promise<string[]> {
  const entries = await readdir(repo, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((entry) => entry.isFile() && entry.name.startsWith(name))
    .map((entry) => join(entry.parentPath, entry.name).slice(repo.length + 1));
}

async function switchWal(cluster: TestCluster): Promise<string> {
  const rows = await cluster.sql('select pg_walfile_name(pg_switch_wal()) as name');
  return String(rows[0]?.['name']);
}

let primary: TestCluster;
let work: string;
let repoA: string;
let repoB: string;
let configFile: string;
let keyFile: string;
/** An archived segment and a copy of its bytes taken from pg_wal right after it was archived. */
let segment: string;
let segmentCopy: string;

function configText(repositories: readonly { name: string; path: string }[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://postgres@127.0.0.1:5432/postgres' }] },
      { name: 'other', nodes: [{ name: 'db9', dsn: 'postgresql://postgres@127.0.0.1:5432/postgres' }] }],
    backups: {
      repositories: repositories.map((repository) => ({ name: repository.name, type: 'local', path: repository.path })),
      keys: [{ id: 'k1', file: keyFile }],
      clusters: { prod: { repositories: repositories.map((repository) => repository.name) } },
      ...extra,
    },
  }, null, 2);
}

beforeAll(async () => {
  work = await scratch.dir('work');
  repoA = await scratch.dir('repo-a');
  repoB = await scratch.dir('repo-b');
  keyFile = join(work, 'k1.key');
  await writeForPostgres(keyFile, `${randomBytes(32).toString('base64')}\n`, 0o600);
  configFile = join(work, 'config.json');
  await writeForPostgres(configFile, configText([{ name: 'first', path: repoA }, { name: 'second', path: repoB }]));
  primary = await createPrimary({ name: 'wal-config', archiveCommand: `${process.execPath} ${pgwardenBin} wal push %p --config ${configFile} --cluster prod` });
});

afterAll(async () => {
  await primary?.destroy();
  await scratch.cleanUp();
});

describe('wal push --config', () => {
  it('stores each segment, encrypted, in both repositories of the cluster', async () => {
    await primary.sql('create table t (id int primary key, note text); insert into t select g, md5(g::text) from generate_series(1, 1000) g');
    segment = await switchWal(primary);
    await waitFor(`${segment} to be archived`, async () => {
      const [row] = await primary.sql('select last_archived_wal, failed_count, last_failed_wal from pg_stat_archiver');
      if (Number(row?.['failed_count']) > 0) throw new Error(`archiving failed for ${String(row?.['last_failed_wal'])}`);
      return typeof row?.['last_archived_wal'] === 'string' && row['last_archived_wal'] >= segment;
    }, { timeoutMs: 30_000 });
    segmentCopy = join(work, segment);
    await cp(join(primary.dataDir, 'pg_wal', segment), segmentCopy);
    await chown(segmentCopy, ...(await scratch.owner()));
    for (const repo of [repoA, repoB]) {
      const objects = await walObjects(repo, segment);
      expect(objects).toEqual([`wal/00000001/${segment}.zst.enc`]);
      expect((await readFile(join(repo, objects[0]!))).includes(Buffer.from('PGWENC01'))).toBe(true);
    }
  });

  it('fails (exit 1, retried by PostgreSQL) when one repository cannot store it, naming it and where it did land', async () => {
    const missing = join(work, 'no-such-repo');
    const partial = join(work, 'partial.json');
    await writeForPostgres(partial, configText([{ name: 'first', path: repoA }, { name: 'gone', path: missing }]));
    const run = await pgwardenAsPostgres(['wal', 'push', segmentCopy, '--config', partial, '--cluster', 'prod'], { cwd: primary.dataDir });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`failed in local ${missing}: `);
    expect(run.stderr).toContain(`stored in local ${repoA}`);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('wal fetch --config', () => {
  it('restores from the second repository when the first lacks the file', async () => {
    const [object] = await walObjects(repoA, segment);
    await rm(join(repoA, object!));
    const out = await scratch.dir('fetch-second');
    const run = await pgwardenAsPostgres(['wal', 'fetch', segment, join(out, 'RECOVERYXLOG'), '--config', configFile, '--cluster', 'prod'], { cwd: out });
    expect(run, run.stderr).toMatchObject({ code: 0, stderr: '' });
    expect((await readFile(join(out, 'RECOVERYXLOG'))).equals(await readFile(segmentCopy))).toBe(true);
  });

  it('exits 1 ("not in the archive") only when both repositories verifiably lack the file', async () => {
    const out = await scratch.dir('fetch-none');
    const run = await pgwardenAsPostgres(['wal', 'fetch', '0000000100000000000000F0', join(out, 'RECOVERYXLOG'), '--config', configFile, '--cluster', 'prod'], { cwd: out });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`0000000100000000000000F0 is not in the archive (local ${repoA}, local ${repoB})`);
    expect(await readdir(out)).toEqual([]);
  });

  it('exits 126 when one repository fails while the other lacks the file, and still restores from one that has it', async () => {
    // The first repository loses its archive.json (an unmounted disk looks like this): a failure, not "missing".
    await rename(join(repoA, 'archive.json'), join(repoA, 'archive.json.away'));
    try {
      const out = await scratch.dir('fetch-broken');
      const lacking = await pgwardenAsPostgres(['wal', 'fetch', '0000000100000000000000F0', join(out, 'RECOVERYXLOG'), '--config', configFile, '--cluster', 'prod'], { cwd: out });
      expect(lacking.code).toBe(126);
      expect(lacking.stderr).toContain('failed, so recovery stops');
      expect(lacking.stderr).toContain(`local ${repoA}: local ${repoA} holds no WAL archive`);
      expect(lacking.stderr).toContain(`local ${repoB}: not in the archive`);
      expect(await readdir(out)).toEqual([]);

      const present = await pgwardenAsPostgres(['wal', 'fetch', segment, join(out, 'RECOVERYXLOG'), '--config', configFile, '--cluster', 'prod'], { cwd: out });
      expect(present.code, present.stderr).toBe(0);
      expect(present.stderr).toContain(`restored from local ${repoB}`);
      expect((await readFile(join(out, 'RECOVERYXLOG'))).equals(await readFile(segmentCopy))).toBe(true);
    } finally {
      await rename(join(repoA, 'archive.json.away'), join(repoA, 'archive.json'));
    }
  });

  it('exits 126 on a bad config (PostgreSQL must stop, not end recovery), naming the key and the fix', async () => {
    const bad = join(work, 'bad.json');
    await writeForPostgres(bad, configText([{ name: 'first', path: repoA }], { clusterz: {} }));
    const out = await scratch.dir('fetch-bad');
    const fetch = await pgwardenAsPostgres(['wal', 'fetch', segment, join(out, 'RECOVERYXLOG'), '--config', bad, '--cluster', 'prod'], { cwd: out });
    expect(fetch.code).toBe(126);
    expect(fetch.stderr).toContain(`${bad}: backups.clusterz: unknown key`);
    expect(fetch.stderr).toContain('did you mean "clusters"');
    const push = await pgwardenAsPostgres(['wal', 'push', segmentCopy, '--config', bad, '--cluster', 'prod'], { cwd: primary.dataDir });
    expect(push.code).toBe(2);
    // Without --cluster, a config of two clusters is ambiguous: fatal to fetch too.
    const ambiguous = await pgwardenAsPostgres(['wal', 'fetch', segment, join(out, 'RECOVERYXLOG'), '--config', configFile], { cwd: out });
    expect(ambiguous.code).toBe(126);
    expect(ambiguous.stderr).toContain('pass --cluster NAME (one of prod, other)');
    const uncovered = await pgwardenAsPostgres(['wal', 'fetch', segment, join(out, 'RECOVERYXLOG'), '--config', configFile, '--cluster', 'other'], { cwd: out });
    expect(uncovered.code).toBe(126);
    expect(uncovered.stderr).toContain('no backup settings cover cluster "other"');
    expect(await readdir(out)).toEqual([]);
  });
});
