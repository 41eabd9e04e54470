// The backup catalog, the recovery window and retention end to end (issue 5 items 6, 8, 11): a real
// LocalRepository holding manifests, verification records and WAL objects in pgwarden's own format
// (written through the repository API), listed and expired through the built command line.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCatalog } from '../../src/backup/catalog.js';
import { applyRetention, defaultRetention, planRetention } from '../../src/backup/retention.js';
import { LocalRepository } from '../../src/backup/repository/local.js';
import type { BackupManifest, Repository } from '../../src/backup/types.js';
import { encodeObjectHeader, ensureArchiveInfo, walObjectKey } from '../../src/backup/wal/archive.js';
import { compress } from '../../src/backup/wal/compress.js';
import { parseWalFileName } from '../../src/backup/wal/segment.js';
import { pgwarden } from '../support/cli.js';
import { idAt, manifestOf, walName } from '../fixtures/backup-catalog.js';

const DAY = 86_400_000;
const SYSTEM_ID = '7300000000000000001';
let root: string;
let repository: LocalRepository;
const now = Date.now();
const b1 = manifestOf(idAt(new Date(now - 30 * DAY)), new Date(now - 30 * DAY), 1, 1, 1);
const b2 = manifestOf(idAt(new Date(now - 20 * DAY)), new Date(now - 20 * DAY), 1, 3, 3);
const b3 = manifestOf(idAt(new Date(now - 1 * DAY)), new Date(now - 1 * DAY), 1, 7, 7);
const abandoned = idAt(new Date(now - 3 * DAY));

/** Stores a WAL file as `pgwarden wal push` does: header line, then the gzip-compressed bytes. */
async function putWal(name: string, original: Buffer): Promise<void> {
  const file = parseWalFileName(name);
  if (file === undefined) throw new Error(name);
  const header = encodeObjectHeader({ name, kind: file.kind, size: original.length, sha256: '0'.repeat(64), compression: 'gzip', encrypted: false, systemIdentifier: SYSTEM_ID, timeline: file.timeline });
  await repository.put(walObjectKey(file, 'gzip', false), Buffer.concat([header, await compress(original, 'gzip')]));
}

async function putBackup(manifest: BackupManifest, verified?: boolean): Promise<void> {
  const data = Buffer.alloc(4096, manifest.id);
  const stored = await repository.put(`backups/${manifest.id}/base.tar.gz`, data);
  if (verified !== undefined) {
    await repository.put(`backups/${manifest.id}/verify-${idAt(new Date(manifest.stoppedAt))}.json`, Buffer.from(JSON.stringify({ at: manifest.stoppedAt, ok: verified, problems: [] })));
  }
  const full = { ...manifest, compression: 'gzip', objects: [{ key: stored.key, size: stored.size, sha256: stored.sha256, originalSize: data.length, originalSha256: stored.sha256 }] };
  await repository.put(`backups/${manifest.id}/manifest.json`, Buffer.from(JSON.stringify(full, null, 2)));
}

/** The repository's objects (hidden sidecars and temporary files left out). */
async function objects(): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => join(e.parentPath, e.name).slice(root.length + 1)).sort();
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'pgwarden-catalog-'));
  repository = new LocalRepository(root);
  await ensureArchiveInfo(repository, { systemIdentifier: SYSTEM_ID, pgVersion: 15, walSegmentSize: 16 * 1024 * 1024 });
  const segment = Buffer.alloc(1024, 7); // the catalog reads names only; the bytes need not be a real segment
  // Timeline 1: 1–8 with 5 missing (a gap), 8 also as .partial; timeline 2 branched at 0/8000028 and runs 8–10.
  for (const s of [1, 2, 3, 4, 6, 7]) await putWal(walName(1, s), segment);
  await putWal(`${walName(1, 8)}.partial`, segment);
  await putWal('00000002.history', Buffer.from('1\t0/8000028\tno recovery target specified\n'));
  for (const s of [8, 9, 10]) await putWal(walName(2, s), segment);
  await putBackup(b1);
  await putBackup(b2);
  await putBackup(b3, true);
  await repository.put(`backups/${abandoned}/base.tar.gz`, Buffer.alloc(100, 1)); // no manifest: incomplete
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('pgwarden backups', () => {
  it('reads the catalog from the repository alone', async () => {
    const catalog = await readCatalog(repository);
    expect(catalog.backups.map((b) => b.manifest.id)).toEqual([b1.id, b2.id, b3.id]);
    expect(catalog.backups[2]?.verifications).toEqual([{ at: b3.stoppedAt, ok: true, problems: [] }]);
    expect(catalog.incomplete).toEqual([expect.objectContaining({ id: abandoned, startedAt: new Date(Math.floor((now - 3 * DAY) / 1000) * 1000).toISOString() })]);
    expect(catalog.histories).toEqual([{ key: 'wal/00000002/00000002.history.gz', timeline: 2, parent: { timeline: 1, switchLsn: '0/8000028' } }]);
    expect(catalog.wal.map((w) => w.file.name)).toContain(`${walName(1, 8)}.partial`);
    expect(catalog.problems).toEqual([]);
  });

  it('lists backups, the recovery window, the gap and the fork', async () => {
    const run = await pgwarden(['backups', 'list', '--repo', root]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rowOf = (id: string): string => run.stdout.split('\n').find((l) => l.startsWith(id)) ?? '';
    expect(rowOf(b1.id)).toMatch(/1m05s\s+never\s+1\s+0\/5000000 on timeline 1$/);
    expect(rowOf(b3.id)).toMatch(/ok \d{4}-.*\s+1\s+0\/B000000 on timeline 2$/);
    expect(run.stdout).toContain(`Incomplete (no manifest): ${abandoned}, started 3d00h ago`);
    expect(run.stdout).toContain(`Recovery window: from ${b1.consistentAt.replace('T', ' ').replace(/\.\d+Z$/, 'Z')} (${b1.stopLsn}, backup ${b1.id}) to ${walName(2, 10)} (up to 0/B000000, timeline 2)`);
    expect(run.stdout).toContain(`GAP on timeline 1: 1 segment missing (${walName(1, 5)}) after ${walName(1, 4)}`);
    expect(run.stdout).toContain(`Timeline 2 branches from timeline 1 at 0/8000028 (${walName(2, 8)})`);

    const json = await pgwarden(['backups', 'list', '--repo', root, '--json']);
    expect(json.code).toBe(0);
    const doc = JSON.parse(json.stdout) as { backups: { id: string; reach: { restorable: boolean; blocked_at: unknown[] } }[]; window: { gaps: unknown[]; newest_wal: { wal: string } } };
    expect(doc.backups.map((b) => [b.id, b.reach.restorable, b.reach.blocked_at.length])).toEqual([[b1.id, true, 1], [b2.id, true, 1], [b3.id, true, 0]]);
    expect(doc.window.gaps).toHaveLength(1);
    expect(doc.window.newest_wal.wal).toBe(walName(2, 10));
  });

  it('refuses bad usage with exit 2 and the usage line', async () => {
    const run = await pgwarden(['backups', 'expire', '--repo', root, '--min-count', '0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('min_count must be a whole number of at least 1');
    expect(run.stderr).toContain('usage: pgwarden backups list');
  });

  it('prints the plan on --dry-run and deletes nothing', async () => {
    const before = await objects();
    const run = await pgwarden(['backups', 'expire', '--repo', root, '--days', '14', '--dry-run']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`keep    ${b3.id}: the newest restorable backup (never deleted)`);
    expect(run.stdout).toMatch(new RegExp(`delete  ${b1.id}: older than 14 days \\(30\\.0 days\\)`));
    expect(run.stdout).toContain(`delete  incomplete ${abandoned}`);
    expect(run.stdout).toContain(`delete  WAL timeline 1: 5 files, ${walName(1, 1)} … ${walName(1, 6)}`);
    expect(run.stdout).toContain('Dry run');
    expect(await objects()).toEqual(before);
  });

  it('expires old backups, the incomplete one and the WAL no kept backup needs; keeps the rest', async () => {
    const run = await pgwarden(['backups', 'expire', '--repo', root, '--days', '14']);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Done.');
    expect(await objects()).toEqual([
      'archive.json',
      `backups/${b3.id}/base.tar.gz`,
      `backups/${b3.id}/manifest.json`,
      `backups/${b3.id}/verify-${idAt(new Date(b3.stoppedAt))}.json`,
      `wal/00000001/${walName(1, 7)}.gz`,
      `wal/00000001/${walName(1, 8)}.partial.gz`,
      'wal/00000002/00000002.history.gz',
      ...[8, 9, 10].map((s) => `wal/00000002/${walName(2, s)}.gz`),
    ]);
    const list = await pgwarden(['backups', 'list', '--repo', root]);
    expect(list.stdout).toContain('Gaps: none');
    expect(list.stdout).toContain(`backup ${b3.id}) to ${walName(2, 10)}`);

    // Run again: nothing left to delete, and the newest restorable backup survives any age limit.
    const again = await pgwarden(['backups', 'expire', '--repo', root, '--days', '0']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('Nothing to delete.');
    expect(await objects()).toContain(`backups/${b3.id}/manifest.json`);
  });

  it('deletes the manifest first: a crash right after leaves an incomplete backup, never a broken complete one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'pgwarden-catalog-crash-'));
    try {
      const local = new LocalRepository(dir);
      const old = manifestOf(idAt(new Date(now - 40 * DAY)), new Date(now - 40 * DAY), 1, 1, 1);
      const kept = manifestOf(idAt(new Date(now - DAY)), new Date(now - DAY), 1, 2, 2);
      for (const m of [old, kept]) {
        await local.put(`backups/${m.id}/base.tar.gz`, Buffer.from(m.id));
        await local.put(`backups/${m.id}/manifest.json`, Buffer.from(JSON.stringify(m)));
      }
      await local.put(`wal/00000001/${walName(1, 1)}.gz`, Buffer.from('x'));
      await local.put(`wal/00000001/${walName(1, 2)}.gz`, Buffer.from('x'));
      // The process "dies" at its second delete call: only what the first call removed is gone.
      const calls: string[][] = [];
      const dying: Repository = {
        description: local.description,
        put: (key, body, options) => local.put(key, body, options),
        get: (key, sha) => local.get(key, sha),
        head: (key) => local.head(key),
        list: (prefix) => local.list(prefix),
        delete: async (keys) => {
          calls.push([...keys]);
          if (calls.length > 1) throw new Error('killed');
          await local.delete(keys);
        },
      };
      const plan = planRetention(await readCatalog(local), defaultRetention, new Date(now));
      await expect(applyRetention(dying, plan)).rejects.toThrow('killed');
      expect(calls[0]).toEqual([`backups/${old.id}/manifest.json`]);
      const after = await readCatalog(local);
      expect(after.backups.map((b) => b.manifest.id)).toEqual([kept.id]);
      expect(after.incomplete.map((i) => i.id)).toEqual([old.id]);
      expect(after.wal).toHaveLength(2);
      // The next run finishes the job.
      await applyRetention(local, planRetention(after, defaultRetention, new Date(now)));
      const done = await readCatalog(local);
      expect([done.incomplete.length, done.wal.map((w) => w.file.name)]).toEqual([0, [walName(1, 2)]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
