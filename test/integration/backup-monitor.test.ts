// The console's backup monitor (issue 5 item 11) over real LocalRepositories populated through the
// repository API (manifests, verification records and WAL objects in pgwarden's own format): it
// reads each repository of the console's cluster, computes the recovery window, reads again on its
// timer and on demand, reports a repository it cannot read with the reason and the fix while the
// others still show, follows the selected cluster, and says when there is no backup plan.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBackupMonitor, type BackupDesk, type BackupsView, type RepositoryState } from '../../src/app/backup-monitor.js';
import { LocalRepository } from '../../src/backup/repository/local.js';
import type { BackupManifest } from '../../src/backup/types.js';
import { encodeObjectHeader, ensureArchiveInfo, walObjectKey } from '../../src/backup/wal/archive.js';
import { compress } from '../../src/backup/wal/compress.js';
import { parseWalFileName } from '../../src/backup/wal/segment.js';
import type { BackupsConfig, ClusterBackupSettings } from '../../src/config/backups.js';
import { waitFor } from '../support/cluster.js';
import { idAt, manifestOf, walName } from '../fixtures/backup-catalog.js';

const HOUR = 3_600_000;
const SYSTEM_ID = '7300000000000000001';
const now = Date.now();
const b1 = manifestOf(idAt(new Date(now - 48 * HOUR)), new Date(now - 48 * HOUR), 1, 1, 1);
const b2 = { ...manifestOf(idAt(new Date(now - 2 * HOUR)), new Date(now - 2 * HOUR), 1, 3, 3), source: { cluster: 'main', node: 'db2', standby: true }, durationMs: 90_000 };
let root: string;
let repository: LocalRepository;
let other: string;
const opened: BackupDesk[] = [];

/** Stores a WAL file as `pgwarden wal push` does: header line, then the gzip-compressed bytes. */
async function putWal(repo: LocalRepository, name: string, original: Buffer): Promise<void> {
  const file = parseWalFileName(name);
  if (file === undefined) throw new Error(name);
  const header = encodeObjectHeader({ name, kind: file.kind, size: original.length, sha256: '0'.repeat(64), compression: 'gzip', encrypted: false, systemIdentifier: SYSTEM_ID, timeline: file.timeline });
  await repo.put(walObjectKey(file, 'gzip', false), Buffer.concat([header, await compress(original, 'gzip')]));
}

async function putBackup(repo: LocalRepository, manifest: BackupManifest, verified?: boolean): Promise<void> {
  const data = Buffer.alloc(4096, manifest.id);
  const stored = await repo.put(`backups/${manifest.id}/base.tar.gz`, data);
  if (verified !== undefined) {
    await repo.put(`backups/${manifest.id}/verify-${idAt(new Date(manifest.stoppedAt))}.json`, Buffer.from(JSON.stringify({ at: manifest.stoppedAt, ok: verified, problems: [] })));
  }
  const full = { ...manifest, compression: 'gzip', objects: [{ key: stored.key, size: stored.size, sha256: stored.sha256, originalSize: data.length, originalSha256: stored.sha256 }] };
  await repo.put(`backups/${manifest.id}/manifest.json`, Buffer.from(JSON.stringify(full, null, 2)));
}

const defaults: ClusterBackupSettings = { repositories: undefined, compression: undefined, schedule: {}, retention: {}, drill: {}, marginMinutes: undefined, streaming: {} };

function configWith(repositories: Record<string, string>, clusters: Record<string, readonly string[] | undefined> = { '*': undefined }): { backups: BackupsConfig } {
  return {
    backups: {
      repositories: Object.entries(repositories).map(([name, path]) => ({ name, spec: { type: 'local', path } })),
      keys: [],
      clusters: Object.fromEntries(Object.entries(clusters).map(([name, names]) => [name, { ...defaults, repositories: names }])),
    },
  };
}

function monitor(options: Parameters<typeof createBackupMonitor>[0]): BackupDesk {
  const desk = createBackupMonitor(options);
  opened.push(desk);
  return desk;
}

/** The repositories once none is still loading. */
async function settled(desk: BackupDesk): Promise<readonly RepositoryState[]> {
  return waitFor('every repository read', () => {
    const view = desk.view();
    return Promise.resolve(view.kind === 'configured' && !view.reading && view.repositories.every((r) => r.status !== 'loading') ? view.repositories : undefined);
  }, { timeoutMs: 10_000, intervalMs: 20 });
}

function ok(state: RepositoryState | undefined): Extract<RepositoryState, { status: 'ok' }> {
  if (state?.status !== 'ok') throw new Error(`expected a good read, got ${JSON.stringify(state)}`);
  return state;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pgwarden-backup-monitor-'));
  other = await mkdtemp(join(tmpdir(), 'pgwarden-backup-monitor-other-'));
  repository = new LocalRepository(root);
  await ensureArchiveInfo(repository, { systemIdentifier: SYSTEM_ID, pgVersion: 15, walSegmentSize: 16 * 1024 * 1024 });
  const segment = Buffer.alloc(1024, 7); // the catalog reads names only
  // Timeline 1: 1–6 with 4 missing (a gap).
  for (const s of [1, 2, 3, 5, 6]) await putWal(repository, walName(1, s), segment);
  await putBackup(repository, b1);
  await putBackup(repository, b2, true);
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((desk) => desk.close()));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(other, { recursive: true, force: true });
});

describe('backup monitor', () => {
  it('reads the catalog and the recovery window of the cluster\'s repository', async () => {
    const desk = monitor({ config: configWith({ local: root }), cluster: 'main' });
    const [local] = await settled(desk);
    const state = ok(local);
    expect(state.backups.map((b) => b.id)).toEqual([b2.id, b1.id]);
    expect(state.backups[0]).toMatchObject({
      repository: 'local', finishedAt: b2.stoppedAt, durationMs: 90_000, node: 'db2', fromStandby: true,
      verified: { at: b2.stoppedAt, ok: true, problems: [] }, drilled: null, restorable: true, problem: null,
    });
    expect(state.backups[0]?.storedBytes).toBeGreaterThan(4096);
    expect(state.backups[1]).toMatchObject({ fromStandby: false, verified: null, restorable: true });
    expect(state.window.from).toEqual({ backupId: b1.id, time: b1.consistentAt, lsn: b1.stopLsn });
    expect(state.window.newestWal?.wal).toBe(walName(1, 6));
    expect(state.window.gaps).toEqual([expect.objectContaining({ timeline: 1, firstMissing: walName(1, 4), missing: 1 })]);
    // The gap stops every backup short of the newest WAL.
    expect(state.window.reachableTo?.wal).toBe(walName(1, 3));
  });

  it('reads again on demand and on its timer, and publishes each change', async () => {
    const repo = new LocalRepository(other);
    await ensureArchiveInfo(repo, { systemIdentifier: SYSTEM_ID, pgVersion: 15, walSegmentSize: 16 * 1024 * 1024 });
    const desk = monitor({ config: configWith({ other }), cluster: 'main', intervalMs: 200 });
    const seen: BackupsView[] = [];
    desk.subscribe((view) => seen.push(view));
    expect(ok((await settled(desk))[0]).backups).toEqual([]);
    await putWal(repo, walName(1, 1), Buffer.alloc(10));
    await putBackup(repo, b1);
    await desk.refresh();
    expect(ok((await settled(desk))[0]).backups.map((b) => b.id)).toEqual([b1.id]);
    // The timer: nobody asks, the next backup shows up.
    await putBackup(repo, { ...b2, startWal: walName(1, 1), stopWal: walName(1, 1) }, false);
    const later = await waitFor('the timer to read the new backup', () => {
      const view = desk.view();
      const state = view.kind === 'configured' ? view.repositories[0] : undefined;
      return Promise.resolve(state?.status === 'ok' && state.backups.length === 2 ? state : undefined);
    }, { timeoutMs: 5000, intervalMs: 20 });
    expect(ok(later).backups[0]?.verified).toEqual({ at: b2.stoppedAt, ok: false, problems: [] });
    expect(seen.length).toBeGreaterThanOrEqual(3);
  });

  it('reports a repository it cannot read with the reason and the fix, and still shows the others', async () => {
    const missing = join(root, 'no-such-dir');
    const desk = monitor({ config: configWith({ local: root, gone: missing }), cluster: 'main' });
    const [local, gone] = await settled(desk);
    expect(ok(local).backups).toHaveLength(2);
    expect(gone).toMatchObject({ name: 'gone', status: 'error', last: null });
    if (gone?.status !== 'error') throw new Error('unreachable');
    expect(gone.reason).toContain('the repository directory does not exist');
    expect(gone.fix).toContain(`mkdir -p ${missing}`);
    // Once it exists, the next read is good again.
    await mkdir(missing);
    await desk.refresh();
    expect(ok((await settled(desk))[1]).backups).toEqual([]);
  });

  it('keeps the last good read when a later read fails', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-backup-monitor-flaky-'));
    try {
      const desk = monitor({ config: configWith({ flaky: dir }), cluster: 'main' });
      ok((await settled(desk))[0]);
      await rm(dir, { recursive: true });
      await desk.refresh();
      const [state] = await settled(desk);
      expect(state).toMatchObject({ status: 'error', last: { backups: [] } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('follows the selected cluster, and says when a cluster has no backup plan', async () => {
    const config = configWith({ local: root, other }, { main: ['local'], reports: ['other'] });
    const desk = monitor({ config, cluster: 'main' });
    expect((await settled(desk)).map((r) => r.name)).toEqual(['local']);
    desk.select('reports');
    expect(desk.view()).toMatchObject({ kind: 'configured', cluster: 'reports', repositories: [{ name: 'other', status: 'loading' }] });
    expect((await settled(desk)).map((r) => r.name)).toEqual(['other']);
    desk.select('staging');
    expect(desk.view()).toEqual({ kind: 'unconfigured', cluster: 'staging' });
    await desk.refresh();
    const none = monitor({ config: { backups: undefined }, cluster: 'main' });
    expect(none.view()).toEqual({ kind: 'unconfigured', cluster: 'main' });
  });
});
