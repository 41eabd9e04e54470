/** Notice fixtures for the outbox and notifier tests: a lock-wait alert with full context. */
import type { Notice, NoticeAlertData, NoticeKind } from '../../src/alerts/types.js';

export const blockedQuery = "update accounts set balance = balance - 10 where id = 7 and note = '<b>&'";
export const lockTreeLine = '4242 app billing (idle in transaction 312 s) blocks 4343';

/** One lock-wait alert as the engine puts it in a notice. */
export function lockAlert(status: NoticeAlertData['status'] = 'firing'): NoticeAlertData {
  return {
    key: 'prod/db1/lock_wait/pid 4343',
    cluster: 'prod',
    node: 'db1',
    checkId: 'lock_wait',
    subject: 'pid 4343',
    status,
    severity: 'critical',
    value: 312,
    threshold: 300,
    unit: 's',
    message: 'pid 4343 waits 312 s for a lock (critical above 300 s)',
    context: {
      sessions: [
        { pid: 4343, user: 'app', application: 'billing', client: '10.0.0.7', query: blockedQuery },
        { pid: 4242, user: 'app', application: 'billing', client: '10.0.0.8', query: null },
      ],
      lockTree: [lockTreeLine, '  4343 app billing (waiting 312 s)'],
      details: { relation: 'public.accounts', mode: 'RowExclusiveLock' },
    },
    runbook: 'docs/alerts.md#lock_wait',
    firstSeen: Date.parse('2025-03-01T10:00:00Z'),
    acknowledgedBy: null,
    escalatedFrom: null,
  };
}

/** A notice of the given kind in thread `threadId`, seq `seq`. */
export function notice(kind: NoticeKind = 'firing', seq = 1, threadId = 'a1b2c3-m7x0', overrides: Partial<Notice> = {}): Notice {
  const resolved = kind === 'resolved';
  return {
    id: `${threadId}.${seq}`,
    channel: 'email',
    team: 'dba',
    recipients: ['dba@example.com', 'oncall@example.com'],
    threadId,
    kind,
    severity: resolved ? 'ok' : 'critical',
    subject: `[${resolved ? 'RESOLVED' : 'CRITICAL'}] prod: lock_wait`,
    body: ['engine body line'],
    alerts: [lockAlert(resolved ? 'resolved' : 'firing')],
    suppressedCount: 0,
    createdAt: new Date(Date.parse('2025-03-01T10:01:00Z') + seq * 60_000),
    ...overrides,
  };
}
