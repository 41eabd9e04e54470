// Retention (issue 5 item 6, DESIGN §7 rule 8) over hand-made catalogs with a controllable clock.
import { describe, expect, it } from 'vitest';
import type { TimelineHistory } from '../../src/backup/catalog.js';
import { checkPolicy, defaultRetention, planRetention, type RetentionPlan, type RetentionPolicy } from '../../src/backup/retention.js';
import { backupOf, catalogOf, idAt, manifestOf, walName, walRange } from '../fixtures/backup-catalog.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const t0 = new Date('2026-11-01T00:00:00Z');
const at = (ms: number): Date => new Date(t0.getTime() + ms);

function deletedBackups(plan: RetentionPlan): string[] {
  return plan.steps.filter((s) => s.kind === 'backup').map((s) => s.subject);
}
function deletedWal(plan: RetentionPlan): string[] {
  return plan.steps.filter((s) => s.kind === 'wal').flatMap((s) => s.keys.map((key) => key.slice(key.lastIndexOf('/') + 1).replace(/\.zst$/, '')));
}
const policy = (overrides: Partial<RetentionPolicy> = {}): RetentionPolicy => ({ ...defaultRetention, ...overrides });

describe('planRetention', () => {
  // 20 days of hourly backups: backup i starts at segment 2i and stops there; WAL is continuous.
  const hourly = Array.from({ length: 480 }, (_, i) => backupOf(manifestOf(idAt(at(i * HOUR)), at(i * HOUR), 1, 2 * i, 2 * i)));
  const twentyDays = catalogOf({ backups: hourly, wal: walRange(1, 0, 2 * 480 + 1) });

  it('keeps 14 days of hourly backups and the WAL from the oldest kept one, and follows the clock', () => {
    const now = at(480 * HOUR); // one hour after the last backup
    const plan = planRetention(twentyDays, policy(), now);
    // Kept: consistent less than 14 days ago, i.e. i > 480 - 336 = 144.
    expect(plan.keep).toHaveLength(335);
    expect(deletedBackups(plan)).toHaveLength(145);
    expect(deletedBackups(plan)[0]).toBe(idAt(at(144 * HOUR)));
    expect(deletedBackups(plan)).not.toContain(idAt(at(145 * HOUR)));
    // WAL below the oldest kept backup's start (segment 290) goes; from it onwards it stays.
    const wal = deletedWal(plan);
    expect(wal).toHaveLength(290);
    expect(wal[wal.length - 1]).toBe(walName(1, 289));
    // Each backup's manifest is the first key deleted.
    for (const step of plan.steps.filter((s) => s.kind === 'backup')) expect(step.keys[0]).toBe(`backups/${step.subject}/manifest.json`);

    // Two days later (no new backups): 48 more expire.
    const later = planRetention(twentyDays, policy(), at(480 * HOUR + 2 * DAY));
    expect(deletedBackups(later)).toHaveLength(145 + 48);
    expect(later.keep.at(-1)?.id).toBe(idAt(at((145 + 48) * HOUR)));
  });

  it('caps what is kept at max_count', () => {
    const plan = planRetention(twentyDays, policy({ maxCount: 24 }), at(480 * HOUR));
    expect(plan.keep.map((k) => k.id)).toEqual(hourly.slice(-24).reverse().map((b) => b.manifest.id));
    expect(deletedBackups(plan)).toHaveLength(456);
    expect(plan.steps.find((s) => s.subject === hourly[400]?.manifest.id)?.reason).toContain('max_count 24');
  });

  it('keeps min_count backups however old they are', () => {
    const old = [0, 1, 2].map((d) => backupOf(manifestOf(idAt(at(d * DAY)), at(d * DAY), 1, 2 * d, 2 * d)));
    const catalog = catalogOf({ backups: old, wal: walRange(1, 0, 5) });
    const plan = planRetention(catalog, policy({ minCount: 2 }), at(60 * DAY));
    expect(plan.keep.map((k) => k.id)).toEqual([old[2]?.manifest.id, old[1]?.manifest.id]);
    expect(deletedBackups(plan)).toEqual([old[0]?.manifest.id]);
    expect(plan.steps.find((s) => s.kind === 'backup')?.reason).toMatch(/older than 14 days \(60\.0 days\)/);
    expect(deletedWal(plan)).toEqual([walName(1, 0), walName(1, 1)]);
  });

  it('never deletes the newest restorable backup, even past the age limit and behind a newer broken one', () => {
    // A (40 days) and B (35 days) are restorable; C (2 days old) lacks WAL between its start and stop.
    const a = backupOf(manifestOf(idAt(at(0)), at(0), 1, 0, 0));
    const b = backupOf(manifestOf(idAt(at(5 * DAY)), at(5 * DAY), 1, 2, 2));
    const c = backupOf(manifestOf(idAt(at(38 * DAY)), at(38 * DAY), 1, 6, 7));
    const catalog = catalogOf({ backups: [a, b, c], wal: walRange(1, 0, 9, [7]) });
    const plan = planRetention(catalog, policy({ days: 14, minCount: 1 }), at(40 * DAY));
    expect(plan.keep).toEqual([
      { id: c.manifest.id, reason: 'among the newest 1 (min_count)' },
      { id: b.manifest.id, reason: 'the newest restorable backup (never deleted)' },
    ]);
    expect(deletedBackups(plan)).toEqual([a.manifest.id]);
    // B needs its WAL from segment 2: only 0 and 1 go.
    expect(deletedWal(plan)).toEqual([walName(1, 0), walName(1, 1)]);

    // A single backup, 100 days old, with --days 0: still kept.
    const lone = planRetention(catalogOf({ backups: [a], wal: walRange(1, 0, 3) }), policy({ days: 0 }), at(100 * DAY));
    expect(lone.steps).toEqual([]);
    expect(lone.keep[0]?.reason).toBe('the newest restorable backup (never deleted)');
  });

  it('deletes nothing complete and no WAL when no backup is restorable', () => {
    const broken = backupOf(manifestOf(idAt(at(0)), at(0), 1, 2, 3));
    const plan = planRetention(catalogOf({ backups: [broken], wal: walRange(1, 0, 9, [3]) }), policy({ days: 1 }), at(50 * DAY));
    expect(plan.steps).toEqual([]);
    expect(plan.notes[0]).toContain('no backup is restorable');
  });

  it('keeps the WAL a kept backup needs on its timeline and the timelines descending from it', () => {
    // Timeline 2 branched from 1 at segment 6, timeline 3 from 1 at segment 3 (before the kept backup's start).
    const histories: TimelineHistory[] = [
      { key: 'wal/00000002/00000002.history.zst', timeline: 2, parent: { timeline: 1, switchLsn: '0/6000000' } },
      { key: 'wal/00000003/00000003.history.zst', timeline: 3, parent: { timeline: 1, switchLsn: '0/3000000' } },
    ];
    const expired = backupOf(manifestOf(idAt(at(0)), at(0), 1, 1, 1));
    const kept = backupOf(manifestOf(idAt(at(20 * DAY)), at(20 * DAY), 1, 4, 4));
    const wal = [...walRange(1, 1, 5), ...walRange(2, 6, 9), ...walRange(3, 3, 7)];
    const plan = planRetention(catalogOf({ backups: [expired, kept], wal, histories }), policy(), at(21 * DAY));
    expect(deletedBackups(plan)).toEqual([expired.manifest.id]);
    // Timeline 1 below segment 4 and the whole of timeline 3 (it branched before the kept backup began) go;
    // timeline 1 from 4 and all of timeline 2 stay.
    expect(deletedWal(plan)).toEqual([walName(1, 1), walName(1, 2), walName(1, 3), ...[3, 4, 5, 6, 7].map((s) => walName(3, s))]);

    // With the history files unreadable, every higher timeline is assumed to descend: timeline 3 from segment 4 stays.
    const unknown = histories.map((h) => ({ ...h, parent: null, unreadable: 'encrypted, and no key was given' }));
    const careful = planRetention(catalogOf({ backups: [expired, kept], wal, histories: unknown }), policy(), at(21 * DAY));
    expect(deletedWal(careful)).toEqual([walName(1, 1), walName(1, 2), walName(1, 3), walName(3, 3)]);
  });

  it('removes incomplete backups after the grace period only', () => {
    const done = backupOf(manifestOf(idAt(at(0)), at(0), 1, 0, 0));
    const now = at(3 * DAY);
    const incomplete = [
      { id: idAt(at(1 * DAY)), keys: [`backups/${idAt(at(1 * DAY))}/base.tar.zst`], storedBytes: 10, startedAt: at(1 * DAY).toISOString() },
      { id: idAt(at(3 * DAY - HOUR)), keys: [`backups/${idAt(at(3 * DAY - HOUR))}/base.tar.zst`], storedBytes: 10, startedAt: at(3 * DAY - HOUR).toISOString() },
      { id: 'hand-made', keys: ['backups/hand-made/x'], storedBytes: 1, startedAt: null },
    ];
    const plan = planRetention(catalogOf({ backups: [done], wal: walRange(1, 0, 2), incomplete }), policy(), now);
    expect(plan.steps.filter((s) => s.kind === 'incomplete').map((s) => s.subject)).toEqual([idAt(at(1 * DAY))]);
    expect(plan.notes.join('\n')).toContain('backups/hand-made/ has no manifest');
  });

  it('refuses a policy that cannot be right', () => {
    expect(() => checkPolicy(policy({ minCount: 0 }))).toThrow(/min_count/);
    expect(() => checkPolicy(policy({ minCount: 3, maxCount: 2 }))).toThrow(/max_count \(2\)/);
    expect(() => checkPolicy(policy({ days: -1 }))).toThrow(/days/);
  });
});
