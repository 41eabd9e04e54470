import { describe, expect, it } from 'vitest';
import { checkById, checks } from '../../src/checks/catalogue.js';
import { monitorCheck, monitorFindings, type MonitorStatus } from '../../src/checks/monitor.js';
import { noPrimaryFinding, type NodeServerResult } from '../../src/checks/primary.js';
import type { ServerSnapshot } from '../../src/probes/server.js';

const now = new Date('2026-03-02T10:00:00Z');
const at = now.getTime();
const thresholds = monitorCheck.defaults;
const healthy: MonitorStatus = {
  reloadError: null,
  stateDirError: null,
  outboxes: [{ channel: 'email', failingSince: null, stale: false, lastError: null }],
  evaluations: [{ cluster: 'prod', node: 'db1', runningSince: null, intervalMs: 60_000, error: null }],
  lastStall: null,
  pingError: null,
};

function bySubject(status: MonitorStatus): Record<string, [string, string]> {
  return Object.fromEntries(monitorFindings(status, thresholds, now).map((finding) => [finding.subject, [finding.severity, finding.message]]));
}

describe('monitor check', () => {
  it('is the last check of the catalogue and reports nothing from probe results', () => {
    expect(checks.at(-1)?.id).toBe('monitor');
    expect(checkById('monitor')?.evaluate({ results: new Map(), thresholds, now })).toEqual([]);
  });

  it('a healthy watcher has one ok finding per subject (so a recovered subject resolves)', () => {
    const findings = monitorFindings(healthy, thresholds, now);
    expect(findings.map((finding) => [finding.subject, finding.severity])).toEqual([
      ['config reload', 'ok'], ['state directory', 'ok'], ['outbox email', 'ok'], ['evaluation prod/db1', 'ok'], ['heartbeat', 'ok'], ['heartbeat ping', 'ok'],
    ]);
    for (const finding of findings) expect(finding.runbook).toBe('docs/alerts.md#monitor');
  });

  it('warns about a failed reload, an unwritable state directory and a failing heartbeat URL, with the reason', () => {
    const found = bySubject({ ...healthy, reloadError: 'config.json: alerting.teams[0].name: expected a non-empty string', stateDirError: 'EACCES: permission denied', pingError: 'https://hc-ping.com/***: HTTP 404' });
    expect(found['config reload']).toEqual(['warning', 'the config file could not be reloaded; the previous config keeps running: config.json: alerting.teams[0].name: expected a non-empty string']);
    expect(found['state directory']).toEqual(['warning', 'the state cannot be saved: EACCES: permission denied']);
    expect(found['heartbeat ping']?.[0]).toBe('warning');
    expect(found['heartbeat ping']?.[1]).toContain('HTTP 404');
  });

  it('warns about an outbox failing for more than 15 minutes, or stale, not before', () => {
    const failing = (minutes: number, stale = false): [string, string] | undefined =>
      bySubject({ ...healthy, outboxes: [{ channel: 'email', failingSince: at - minutes * 60_000, stale, lastError: 'connect ECONNREFUSED' }] })['outbox email'];
    expect(failing(14)?.[0]).toBe('ok');
    expect(failing(16)).toEqual(['warning', 'notices on email have been failing for 16m00s (warning > 15m00s): connect ECONNREFUSED']);
    expect(failing(1, true)?.[1]).toContain('stale');
  });

  it('warns about an evaluation that overran its interval or could not run', () => {
    const evaluation = (runningFor: number | null, error: string | null = null): [string, string] | undefined =>
      bySubject({ ...healthy, evaluations: [{ cluster: 'prod', node: 'db1', runningSince: runningFor === null ? null : at - runningFor, intervalMs: 60_000, error }] })['evaluation prod/db1'];
    expect(evaluation(59_000)?.[0]).toBe('ok');
    expect(evaluation(61_000)?.[0]).toBe('warning');
    expect(evaluation(61_000)?.[1]).toContain('longer than its interval of 1m00s');
    expect(evaluation(null, 'boom')).toEqual(['warning', 'the checks of prod/db1 could not run: boom']);
  });

  it('a stalled loop is a critical heartbeat for stallHoldSeconds, then ok again', () => {
    const stall = { at: at - 30_000, lateMs: 20_000, tickMs: 5000 };
    const found = bySubject({ ...healthy, lastStall: stall });
    expect(found['heartbeat']?.[0]).toBe('critical');
    expect(found['heartbeat']?.[1]).toContain('a clock tick came 20s late');
    const later = monitorFindings({ ...healthy, lastStall: stall }, { ...thresholds, stallHoldSeconds: 20 }, now);
    expect(later.find((finding) => finding.subject === 'heartbeat')?.severity).toBe('ok');
  });
});

function server(role: 'primary' | 'standby'): NodeServerResult['server'] {
  return { status: 'ok', durationMs: 1, at: now, snapshot: { role } as ServerSnapshot };
}

const down: NodeServerResult['server'] = { status: 'error', error: { message: 'connection refused', hint: undefined, sqlstate: undefined }, since: now, last: undefined };

describe('no primary reachable', () => {
  it('is critical when the reachable nodes are all standbys, or none is reachable', () => {
    const standbys = noPrimaryFinding([{ node: 'db1', server: down }, { node: 'db2', server: server('standby') }]);
    expect(standbys).toMatchObject({ checkId: 'restart', severity: 'critical', subject: 'cluster', value: 0, runbook: 'docs/alerts.md#restart' });
    expect(standbys?.message).toBe('no primary reachable: 1 of 2 nodes answer and none is a primary (db1: unreachable (connection refused); db2: standby)');
    expect(noPrimaryFinding([{ node: 'db1', server: down }, { node: 'db2', server: down }])?.message).toMatch(/^no primary reachable: none of the 2 nodes answers/);
  });

  it('is ok with a primary, and gives no verdict for one node or a node not evaluated yet', () => {
    expect(noPrimaryFinding([{ node: 'db1', server: server('primary') }, { node: 'db2', server: down }])).toMatchObject({ severity: 'ok', message: 'primary: db1' });
    expect(noPrimaryFinding([{ node: 'db1', server: down }])).toBeUndefined();
    expect(noPrimaryFinding([{ node: 'db1', server: server('standby') }, { node: 'db2', server: undefined }])).toBeUndefined();
  });
});
