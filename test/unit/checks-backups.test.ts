import { describe, expect, it } from 'vitest';
import { backupFindings, type BackupStatus } from '../../src/checks/backups.js';
import { parseBackups, resolveBackupPlan, type BackupPlan } from '../../src/config/backups.js';
import { Validator } from '../../src/config/load.js';

function plan(): BackupPlan {
  const v = new Validator('/etc/pgwarden.json');
  const backups = parseBackups(v, { repositories: [{ name: 'local', type: 'local', path: '/var/lib/pgwarden/repo' }], clusters: { prod: { schedule: { full: '0 3 * * *' }, margin_minutes: 60 } } }, ['prod']);
  const resolved = resolveBackupPlan({ backups }, 'prod');
  if (resolved === undefined) throw new Error('no plan');
  return resolved;
}

const healthy: BackupStatus = {
  repository: 'local /var/lib/pgwarden/repo',
  readError: null,
  lastGood: { id: '20261127T030000Z-full', at: '2026-11-27T03:05:00.000Z' },
  lastVerification: { id: '20261127T030000Z-full', at: '2026-11-27T03:06:00.000Z', ok: true, problems: [] },
  windowProblems: [],
  lastDrill: { id: 'd1', at: '2026-11-27T04:40:00.000Z', ok: true, detail: '' },
  failedJobs: [],
};

function subjects(status: BackupStatus, now: string): [string, string][] {
  return backupFindings(plan(), status, new Date(now)).map((finding) => [finding.subject, finding.severity]);
}

describe('backupFindings', () => {
  it('says nothing about a cluster whose backups are in order', () => {
    expect(subjects(healthy, '2026-11-27T12:00:00Z')).toEqual([]);
  });

  it('warns once the next scheduled full backup plus the margin has passed, not before', () => {
    // The next run after 03:05 on the 27th is 03:00 on the 28th; plus 60 min: 04:00.
    expect(subjects(healthy, '2026-11-28T03:59:00Z')).toEqual([]);
    const [age] = backupFindings(plan(), healthy, new Date('2026-11-28T04:01:00Z'));
    expect(age).toMatchObject({ subject: 'age', severity: 'warning', unit: 'seconds', threshold: (24 * 60 - 5 + 60) * 60 });
    expect(age?.message).toContain('20261127T030000Z-full');
  });

  it('is critical without a restorable backup, on a failed verification, drill or job, and on a broken window', () => {
    const broken: BackupStatus = {
      ...healthy,
      lastGood: null,
      lastVerification: { ...healthy.lastVerification!, ok: false, problems: ['backups/x/part-0001.zst: checksum mismatch'] },
      windowProblems: ['window: WAL gap on timeline 1: 000000010000000000000005 (1 segment(s)) missing'],
      lastDrill: { id: 'd2', at: '2026-11-27T04:40:00.000Z', ok: false, detail: 'rows public.orders: 10 restored, 12 at the source' },
      failedJobs: [{ job: 'full', at: '2026-11-27T03:01:00.000Z', message: 'pgwarden: backup failed: the repository disk is full' }],
    };
    const findings = backupFindings(plan(), broken, new Date('2026-11-27T12:00:00Z'));
    expect(findings.map((finding) => [finding.subject, finding.severity])).toEqual([
      ['job full', 'critical'], ['restorable', 'critical'], ['verification', 'critical'], ['window', 'critical'], ['drill', 'critical'],
    ]);
    expect(findings[0]?.message).toContain('the repository disk is full');
    expect(findings[0]?.context.details).toMatchObject({ repository: 'local /var/lib/pgwarden/repo', job: 'full' });
    expect(findings[3]?.message).toContain('WAL gap');
  });

  it('is UNKNOWN when the catalog cannot be read, still reporting failed jobs', () => {
    const unreadable: BackupStatus = { ...healthy, readError: 'EACCES: permission denied', failedJobs: [{ job: 'logical', at: '2026-11-27T05:00:00.000Z', message: 'exit 1' }] };
    expect(subjects(unreadable, '2026-11-27T12:00:00Z')).toEqual([['job logical', 'critical'], ['repository', 'unknown']]);
  });
});
