// The recovery window (issue 5 items 8 and 11) over hand-made catalogs: pure data, no repository.
import { describe, expect, it } from 'vitest';
import type { TimelineHistory } from '../../src/backup/catalog.js';
import { parseWalFileName } from '../../src/backup/wal/segment.js';
import { lsnToBigInt, recoveryWindow } from '../../src/backup/window.js';
import { backupOf, catalogOf, manifestOf, walRange } from '../fixtures/backup-catalog.js';

const t0 = new Date('2026-11-20T00:00:00Z');

describe('recoveryWindow', () => {
  it('runs from the oldest backup to the newest archived segment when nothing is missing', () => {
    const window = recoveryWindow(catalogOf({ backups: [backupOf(manifestOf('20261120T000000Z-full', t0, 1, 2, 3))], wal: walRange(1, 2, 9) }));
    expect(window.gaps).toEqual([]);
    expect(window.from).toEqual({ backupId: '20261120T000000Z-full', time: t0.toISOString(), lsn: '0/3000100' });
    expect(window.newestWal).toEqual({ timeline: 1, wal: '000000010000000000000009', lsn: '0/A000000' });
    expect(window.reachableTo).toEqual(window.newestWal);
    expect(window.backups[0]).toMatchObject({ restorable: true, blockedAt: [], ranges: [{ timeline: 1, fromWal: '000000010000000000000002', toWal: '000000010000000000000009' }] });
  });

  it('shows a gap and stops every older backup at it', () => {
    const older = manifestOf('20261120T000000Z-full', t0, 1, 2, 3);
    const newer = manifestOf('20261120T060000Z-full', new Date(t0.getTime() + 6 * 3600_000), 1, 7, 7);
    const window = recoveryWindow(catalogOf({ backups: [backupOf(older), backupOf(newer)], wal: walRange(1, 2, 9, [6]) }));
    expect(window.gaps).toEqual([{ timeline: 1, after: '000000010000000000000005', firstMissing: '000000010000000000000006', lastMissing: '000000010000000000000006', missing: 1 }]);
    const [a, b] = window.backups;
    expect(a).toMatchObject({ restorable: true, to: { timeline: 1, wal: '000000010000000000000005', lsn: '0/6000000' }, blockedAt: [{ timeline: 1, missingWal: '000000010000000000000006' }] });
    expect(b).toMatchObject({ restorable: true, to: { wal: '000000010000000000000009' }, blockedAt: [] });
    expect(window.from?.backupId).toBe(older.id);
    expect(window.reachableTo?.wal).toBe('000000010000000000000009');
  });

  it('marks a backup whose WAL between start and stop is missing as not restorable', () => {
    const broken = manifestOf('20261120T000000Z-full', t0, 1, 4, 6);
    const window = recoveryWindow(catalogOf({ backups: [backupOf(broken)], wal: walRange(1, 2, 9, [5]) }));
    expect(window.backups[0]).toMatchObject({ restorable: false, to: null });
    expect(window.backups[0]?.problem).toContain('000000010000000000000005');
    expect(window.from).toBeNull();
    expect(window.reachableTo).toBeNull();
    expect(window.newestWal?.wal).toBe('000000010000000000000009');
  });

  it('follows a timeline fork from its history file, and not into a sibling branched before the backup', () => {
    // Timeline 1: segments 1–4 (5 archived as .partial by the old primary); timeline 2 branched at 0/5000060;
    // timeline 3 branched from 1 at 0/2000000, before the backup's start: not reachable from it.
    const partial = parseWalFileName('000000010000000000000005.partial');
    if (partial === undefined) throw new Error('partial');
    const wal = [
      ...walRange(1, 1, 4),
      { key: 'wal/00000001/000000010000000000000005.partial.zst', size: 100, file: partial },
      ...walRange(2, 5, 8),
      ...walRange(3, 2, 3),
    ];
    const histories: TimelineHistory[] = [
      { key: 'wal/00000002/00000002.history.zst', timeline: 2, parent: { timeline: 1, switchLsn: '0/5000060' } },
      { key: 'wal/00000003/00000003.history.zst', timeline: 3, parent: { timeline: 1, switchLsn: '0/2000000' } },
    ];
    const backup = manifestOf('20261120T000000Z-full', t0, 1, 3, 3);
    const window = recoveryWindow(catalogOf({ backups: [backupOf(backup)], wal, histories }));
    expect(window.timelines.map((t) => [t.timeline, t.parent, t.forkWal, t.inferred])).toEqual([
      [1, null, null, false],
      [2, 1, '000000020000000000000005', false],
      [3, 1, '000000030000000000000002', false],
    ]);
    expect(window.gaps).toEqual([]);
    const [reach] = window.backups;
    expect(reach?.ranges).toEqual([
      { timeline: 1, fromWal: '000000010000000000000003', toWal: '000000010000000000000004' },
      { timeline: 2, fromWal: '000000020000000000000005', toWal: '000000020000000000000008' },
    ]);
    expect(reach?.to).toEqual({ timeline: 2, wal: '000000020000000000000008', lsn: '0/9000000' });
    expect(window.newestWal).toEqual({ timeline: 3, wal: '000000030000000000000003', lsn: '0/4000000' });
  });

  it('infers a fork from segment names when the history file cannot be read, and a hole at the fork blocks it', () => {
    const unreadable: TimelineHistory = { key: 'wal/00000002/00000002.history.zst.enc', timeline: 2, parent: null, unreadable: 'encrypted, and no key was given' };
    const backup = manifestOf('20261120T000000Z-full', t0, 1, 1, 1);
    const reachable = recoveryWindow(catalogOf({ backups: [backupOf(backup)], wal: [...walRange(1, 1, 4), ...walRange(2, 5, 6)], histories: [unreadable] }));
    expect(reachable.timelines[1]).toMatchObject({ timeline: 2, parent: 1, forkWal: '000000020000000000000005', inferred: true });
    expect(reachable.backups[0]?.to?.wal).toBe('000000020000000000000006');
    // Timeline 1 stops at segment 3: segment 4 is missing, so timeline 2 (from 5) cannot be reached.
    const blocked = recoveryWindow(catalogOf({ backups: [backupOf(backup)], wal: [...walRange(1, 1, 3), ...walRange(2, 5, 6)], histories: [unreadable] }));
    expect(blocked.backups[0]?.to?.wal).toBe('000000010000000000000003');
  });

  it('does segment arithmetic with the archive\'s wal_segment_size', () => {
    const size = 64 * 1024 * 1024; // 64 segments per 4 GB "log"
    const wal = walRange(1, 62, 66, [], size);
    expect(wal.map((w) => w.file.name)).toEqual([
      '00000001000000000000003E', '00000001000000000000003F', '000000010000000100000000', '000000010000000100000001', '000000010000000100000002',
    ]);
    const backup = manifestOf('20261120T000000Z-full', t0, 1, 62, 63, size);
    const window = recoveryWindow(catalogOf({ backups: [backupOf(backup)], wal, segmentSize: size }));
    expect(window.gaps).toEqual([]);
    expect(window.backups[0]?.to).toEqual({ timeline: 1, wal: '000000010000000100000002', lsn: '1/C000000' });
    expect(lsnToBigInt('1/C000000')).toBe(67n * BigInt(size));
  });
});
