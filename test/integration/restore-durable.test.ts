/**
 * The two pieces restore leans on to be durable and quick (src/backup/durable.ts,
 * src/backup/control-file.ts): the cluster state read from a real pg_control as a server starts,
 * recovers, is promoted and stops, and `durably` around real writes.
 */
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clusterState } from '../../src/backup/control-file.js';
import { durably, syncTrees } from '../../src/backup/durable.js';
import { LocalRepository } from '../../src/backup/repository/local.js';
import { stageWal } from '../../src/backup/wal-staging.js';
import { pgwardenBin, PostgresScratch } from '../support/as-postgres.js';
import { createPrimary, createStandby, destroyAll, waitFor } from '../support/cluster.js';

const scratch: string[] = [];
const postgresScratch = new PostgresScratch('staging');

afterAll(async () => {
  await destroyAll();
  await postgresScratch.cleanUp();
  for (const dir of scratch) await rm(dir, { recursive: true, force: true });
});

describe('clusterState: global/pg_control without a connection', () => {
  it('follows a primary and a standby through recovery, promotion and shutdown', async () => {
    const primary = await createPrimary({ name: 'control-file' });
    expect(await clusterState(primary.dataDir)).toBe('in production');
    const standby = await createStandby(primary);
    expect(await clusterState(standby.dataDir)).toBe('in archive recovery');
    await standby.stop('fast');
    expect(await clusterState(standby.dataDir)).toBe('shut down in recovery');
    await standby.start();
    await standby.promote();
    expect(await clusterState(standby.dataDir)).toBe('in production');
    await primary.stop('fast');
    expect(await clusterState(primary.dataDir)).toBe('shut down');
    await primary.start();
  }, 120_000);

  it('is undefined for a directory that holds no cluster', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-no-cluster-'));
    scratch.push(dir);
    expect(await clusterState(dir)).toBeUndefined();
  });
});

describe('durably', () => {
  it('returns what the work returns once it is written, with the flusher running beside it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-durable-'));
    scratch.push(dir);
    const result = await durably([dir], async () => {
      for (let index = 0; index < 50; index++) await writeFile(join(dir, `f${index}`), Buffer.alloc(256 * 1024, index));
      return 'written';
    });
    expect(result).toBe('written');
    expect((await readFile(join(dir, 'f49')))[0]).toBe(49);
  });

  it('passes the work\'s error on, and stops its flusher', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-durable-'));
    scratch.push(dir);
    await expect(durably([dir], () => Promise.reject(new Error('tar failed')))).rejects.toThrow('tar failed');
  });

  it('fails when the last sync cannot run: nothing may be recorded as on disk then', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-durable-'));
    scratch.push(dir);
    const gone = join(dir, 'removed-by-the-work');
    await expect(durably([gone], () => Promise.resolve('done'))).rejects.toThrow(/ENOENT.*removed-by-the-work/);
    await expect(syncTrees([dir])).resolves.toBeUndefined();
  });
});

describe('stageWal: WAL fetched ahead of recovery from a real archive', () => {
  it('stages the segments in order, owned by the cluster owner, and stops at a damaged one, naming it', async () => {
    const repo = await postgresScratch.dir('repo');
    const primary = await createPrimary({ name: 'staging', archiveCommand: `${process.execPath} ${pgwardenBin} wal push --repo ${repo} %p` });
    const names: string[] = [];
    for (let index = 0; index < 3; index++) {
      await primary.sql(`create table t${index} as select generate_series(1, 1000) as id`);
      names.push((await primary.psql('select pg_walfile_name(pg_switch_wal())')).trim());
    }
    const walDir = join(repo, 'wal', '00000001');
    await waitFor('three segments archived', async () => names.every((name) => existsSyncIn(walDir, name)), { timeoutMs: 30_000 });
    // The second one is damaged in the repository: a byte in the middle of its stored object flipped.
    const damaged = (await readdir(walDir)).find((entry) => entry.startsWith(names[1] ?? '-') && !entry.startsWith('.'));
    const damagedPath = join(walDir, damaged ?? '');
    const bytes = await readFile(damagedPath);
    bytes.writeUInt8(bytes.readUInt8(bytes.length >> 1) ^ 0xff, bytes.length >> 1);
    await writeFile(damagedPath, bytes);

    const dataDir = await postgresScratch.dir('restored');
    const [uid, gid] = await postgresScratch.owner();
    const result = await stageWal(names, { repository: new LocalRepository(repo), keyring: undefined, dataDir, owner: { uid, gid } });
    expect(result.staged).toEqual([names[0]]);
    expect(result.stoppedAt?.name).toBe(names[1]);
    expect(result.stoppedAt?.reason).toMatch(new RegExp(`${names[1] ?? '-'}|checksum|SHA-256`));
    const staged = await stat(join(dataDir, 'pgwarden-wal-staged', names[0] ?? ''));
    expect({ size: staged.size, uid: staged.uid }).toEqual({ size: 16 * 1024 * 1024, uid });
    expect(await readdir(join(dataDir, 'pgwarden-wal-staged'))).toEqual([names[0]]);
  }, 120_000);
});

function existsSyncIn(dir: string, prefix: string): boolean {
  try {
    return readdirSync(dir).some((entry) => entry.startsWith(prefix));
  } catch {
    return false;
  }
}
