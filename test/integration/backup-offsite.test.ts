/**
 * A cluster configured with two repositories, a local directory and an off-site S3 bucket (s3rver):
 * WAL goes to both through archive_command, `pgwarden backup --config` lands in both, and when the
 * local repository is lost, the off-site copy alone verifies and restores (docs/disaster-recovery.md).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgwardenAsPostgres, pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, waitFor, type TestCluster } from '../support/cluster.js';
import { S3Server } from '../support/s3.js';

const scratch = new PostgresScratch('offsite');
let s3: S3Server;
let primary: TestCluster;
let local: string;
let configFile: string;
let backupId: string;

/** s3rver's account, in the environment of every pgwarden run (the server's archive_command included). */
const s3Env = 'AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER';

function run(args: readonly string[]): ReturnType<typeof pgwardenAsPostgres> {
  return pgwardenAsPostgres(args, { env: { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' }, timeoutMs: 120_000 });
}

async function offsiteKeys(prefix: string): Promise<string[]> {
  const root = join(s3.directory, s3.bucket, 'prod', prefix);
  const found: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await walk(join(dir, entry.name), `${rel}${entry.name}/`);
      else if (entry.name.endsWith('._S3rver_object')) found.push(`${rel}${entry.name.replace(/\._S3rver_object$/, '')}`);
    }
  };
  await walk(root, '');
  return found.sort();
}

beforeAll(async () => {
  s3 = await S3Server.start();
  local = await scratch.dir('local');
  const etc = await scratch.dir('etc');
  const keyFile = join(etc, 'k1.key');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await chown(keyFile, ...(await scratch.owner()));
  configFile = join(etc, 'pgwarden.json');
  primary = await createPrimary({ name: 'offsite', archiveCommand: 'false' });
  await writeFile(configFile, JSON.stringify({
    clusters: [{ name: 'prod', nodes: [{ name: 'db1', dsn: `host=${primary.host} port=${primary.port} user=postgres dbname=postgres` }] }],
    backups: {
      repositories: [
        { name: 'local', type: 'local', path: local },
        { name: 'offsite', type: 's3', endpoint: s3.endpoint, region: 'us-east-1', bucket: s3.bucket, prefix: 'prod/', conditional_writes: false },
      ],
      keys: [{ id: 'k1', file: keyFile }],
      clusters: { prod: { repositories: ['local', 'offsite'] } },
    },
  }, null, 2));
  await chown(configFile, ...(await scratch.owner()));
  await primary.sql(`alter system set archive_command = '${s3Env} ${process.execPath} ${pgwardenBin} wal push %p --config ${configFile} --cluster prod'`);
  await primary.sql('select pg_reload_conf()');
  await primary.sql('create table orders (id int primary key, note text)');
  await primary.sql("insert into orders select i, 'before' from generate_series(1, 100) i");
  await primary.sql('select pg_switch_wal()');
  await waitFor('WAL in both repositories', async () => (await readdir(local)).includes('archive.json') && (await offsiteKeys('')).includes('archive.json'));
}, 120_000);

afterAll(async () => {
  await primary?.destroy();
  await s3?.stop();
  await scratch.cleanUp();
});

describe('local plus off-site repositories', () => {
  it('backup --config stores the backup in the local repository and copies it, still encrypted, to S3', async () => {
    const backup = await run(['backup', '--config', configFile, '--cluster', 'prod', '--fast', '--part-size', '1']);
    expect(backup.code, backup.stderr).toBe(0);
    backupId = backup.stdout.trim();
    expect(backup.stderr).toContain(`copied to`);
    const localFiles = (await readdir(join(local, 'backups', backupId))).filter((name) => !name.startsWith('.')).sort();
    const remote = (await offsiteKeys(`backups/${backupId}/`)).filter((name) => !name.startsWith('verify-'));
    expect(localFiles).toContain('manifest.json');
    expect(remote).toEqual(localFiles.filter((name) => !name.startsWith('verify-')));
    expect(remote.filter((name) => name.endsWith('.enc')).length).toBeGreaterThan(1);
  }, 120_000);

  it('with the local repository lost, the off-site copy verifies and restores every archived commit', async () => {
    await primary.sql("insert into orders select i, 'after' from generate_series(101, 150) i");
    // The segment the switch closes is the one holding the inserts.
    const closed = (await primary.psql('select pg_walfile_name(pg_switch_wal())')).trim();
    await waitFor('the segment with the last inserts off-site', async () => (await offsiteKeys('wal/00000001/')).some((key) => key.startsWith(closed)));
    // Its archive_command has returned too: no push is still writing into the local repository.
    await waitFor('the archiver done with that segment', async () => (await primary.psql('select last_archived_wal from pg_stat_archiver')).trim() >= closed);

    await rm(local, { recursive: true, force: true });
    const verify = await run(['verify', '--config', configFile, '--cluster', 'prod', '--repo', 'offsite']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`backup ${backupId}: ok`);
    expect(verify.stdout).toContain('recovery window: ok');

    const target = join(await scratch.dir('restored'), 'data');
    const restored = await run(['restore', '--config', configFile, '--cluster', 'prod', '--repo', 'offsite', '--to', 'latest', '--target-dir', target, '--start']);
    expect(restored.code, restored.stderr).toBe(0);
    const port = /runs on port (\d+)/.exec(restored.stdout)?.[1];
    expect(port).toBeDefined();
    scratch.onCleanUp(() => new Promise((done) => {
      execFile('runuser', ['-u', 'postgres', '--', '/usr/lib/postgresql/15/bin/pg_ctl', '-D', target, 'stop', '-m', 'immediate'], () => done());
    }));
    const client = new pg.Client({ host: '127.0.0.1', port: Number(port), user: 'postgres', database: 'postgres' });
    await client.connect();
    try {
      const { rows } = await client.query<{ n: string; after: string }>("select count(*) as n, count(*) filter (where note = 'after') as after from orders");
      expect(rows[0]).toEqual({ n: '150', after: '50' });
    } finally {
      await client.end();
    }
  }, 180_000);
});
