import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsCheck, overallState, renderNagios } from '../../src/cli/alerts-check.js';
import { applicationCheckIds } from '../../src/checks/application.js';
import { checks } from '../../src/checks/catalogue.js';
import { loadConfig } from '../../src/config/load.js';
import type { Finding, Severity } from '../../src/checks/types.js';
import type { Config } from '../../src/config/types.js';
import { probeIds } from '../../src/probes/index.js';
import { createPrimary, destroyAll, freePort, type TestCluster } from '../support/cluster.js';
import { closeAll, openSession } from '../support/sessions.js';

const CLUSTER_TIMEOUT = 120_000;

function configFor(dsn: string): Config {
  return loadConfig({ configFile: undefined, dsn, knownProbes: probeIds, env: {}, defaultPath: '/nonexistent/pgwarden.json' });
}

function fake(checkId: string, severity: Severity, subject: string, value: number | null, unit = 'seconds'): Finding {
  return { checkId, severity, subject, value, threshold: null, warningThreshold: 300, unit, message: `${checkId} is ${severity}`, context: {}, runbook: '' };
}

/** Every check but restart: a cluster started for the test is by definition "restarted recently". */
const allButRestart = checks.map((check) => check.id).filter((id) => id !== 'restart');

let cluster: TestCluster;

beforeAll(async () => {
  // max_connections 10 with 3 superuser-reserved slots leaves 7 usable: a few sessions saturate it.
  cluster = await createPrimary({ name: 'alerts-check', preload: ['pg_stat_statements'], maxConnections: 10 });
  await cluster.sql('create extension pg_stat_statements');
}, CLUSTER_TIMEOUT);

afterAll(async () => {
  await closeAll();
  await destroyAll();
});

describe('pgwarden alerts check', () => {
  it('a healthy cluster is OK: exit 0, no finding lines, perfdata on the status line', { timeout: 30_000 }, async () => {
    const out = await alertsCheck(configFor(cluster.dsn()), { json: false, checks: allButRestart });
    expect(out.stdout).toMatch(/^PGWARDEN OK - 0 critical, 0 warning, 0 unknown \| /);
    expect(out.stdout).toMatch(/ connection-saturation=\d+(\.\d+)?%;80( |\n)/);
    expect(out.stdout.trimEnd().split('\n')).toHaveLength(1);
    expect(out.exitCode).toBe(0);
    expect(out.stderr).toBe('');
  });

  it('the whole catalogue on a just-started cluster warns about the restart: exit 1', { timeout: 30_000 }, async () => {
    const out = await alertsCheck(configFor(cluster.dsn()), { json: false });
    expect(out.stdout).toMatch(/^PGWARDEN WARNING - 0 critical, 1 warning, 0 unknown \| /);
    expect(out.stdout).toMatch(/^WARNING restart uptime: the server restarted .* ago/m);
    expect(out.exitCode).toBe(1);
  });

  it('connection saturation is CRITICAL: exit 2, the line names the check', { timeout: 30_000 }, async () => {
    // 6 idle sessions plus pgwarden's own connection fill the 7 usable slots.
    for (let i = 0; i < 6; i += 1) await openSession(cluster.dsn(), `alerts-check-idle-${i}`);
    const out = await alertsCheck(configFor(cluster.dsn()), { json: false, checks: allButRestart });
    expect(out.stdout).toMatch(/^PGWARDEN CRITICAL - 1 critical, 0 warning, 0 unknown \| /);
    expect(out.stdout).toMatch(/^CRITICAL connection-saturation cluster: 7 of 7 usable connection slots in use \(100/m);
    expect(out.exitCode).toBe(2);

    const json = await alertsCheck(configFor(cluster.dsn()), { json: true, checks: allButRestart });
    expect(json.exitCode).toBe(2);
    const findings = JSON.parse(json.stdout) as Record<string, unknown>[];
    expect(Array.isArray(findings)).toBe(true);
    const saturation = findings.find((finding) => finding['check_id'] === 'connection-saturation');
    expect(saturation).toMatchObject({ severity: 'critical', subject: 'cluster', unit: 'fraction', warning_threshold: 0.8, runbook: 'docs/alerts.md#connection-saturation' });
    expect(saturation?.['value']).toBe(1);
    // Every finding is snake_case, OK ones included (the text shows only the others).
    expect(findings.find((finding) => finding['check_id'] === 'connectivity')).toMatchObject({ severity: 'ok' });
    expect(findings.every((finding) => !('checkId' in finding) && typeof finding['severity'] === 'string')).toBe(true);
    await closeAll();
  });

  it('an unreachable server is CRITICAL connectivity, not a crash: exit 2, other checks muted', { timeout: 30_000 }, async () => {
    const port = await freePort();
    const out = await alertsCheck(configFor(`postgresql://postgres@127.0.0.1:${port}/test`), { json: false });
    expect(out.stdout).toMatch(/^PGWARDEN CRITICAL - 1 critical, 0 warning, 0 unknown\n/);
    expect(out.stdout).toContain(`CRITICAL connectivity cluster: the server does not answer: postgres@127.0.0.1:${port}/test: connection refused`);
    // The application checks do not need the server: they are measured, not muted.
    expect(out.stdout).toContain(`${checks.length - 1 - applicationCheckIds.size} other checks not evaluated: the server does not answer`);
    expect(out.exitCode).toBe(2);

    const json = await alertsCheck(configFor(`postgresql://postgres@127.0.0.1:${port}/test`), { json: true });
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stdout)).toEqual([expect.objectContaining({ check_id: 'connectivity', severity: 'critical', value: null })]);
  });

  it('an unknown check or cluster is UNKNOWN (exit 3) with the known names', async () => {
    const config = configFor(cluster.dsn());
    const badCheck = await alertsCheck(config, { json: false, checks: ['lock-waits', 'lcok-waits'] });
    expect(badCheck.exitCode).toBe(3);
    expect(badCheck.stdout).toMatch(/^PGWARDEN UNKNOWN - 0 critical, 0 warning, 1 unknown\nUNKNOWN pgwarden usage: unknown check "lcok-waits"; known: connectivity, /);
    const badCluster = await alertsCheck(config, { json: false, cluster: 'nope' });
    expect(badCluster.exitCode).toBe(3);
    expect(badCluster.stdout).toContain('UNKNOWN pgwarden usage: no cluster named "nope"');
  });

  it('the worst state wins as in max_state_alt (CRITICAL > WARNING > UNKNOWN > OK); lines worst first; labels quoted', () => {
    const findings = [fake('slow-queries', 'unknown', 'cluster', null), fake('idle-in-transaction', 'warning', "pid 7 (o'brien)", 400), fake('connectivity', 'ok', 'cluster', 0.01)];
    expect(overallState(findings)).toBe('WARNING');
    expect(overallState([fake('a', 'unknown', 'cluster', null), fake('b', 'ok', 'cluster', 1)])).toBe('UNKNOWN');
    expect(overallState([fake('a', 'warning', 'cluster', 1), fake('b', 'critical', 'cluster', 1)])).toBe('CRITICAL');
    expect(overallState([fake('a', 'info', 'cluster', 1)])).toBe('OK');
    expect(renderNagios(findings)).toBe([
      "PGWARDEN WARNING - 0 critical, 1 warning, 1 unknown | 'idle-in-transaction pid 7 (o''brien)'=400s;300 connectivity=0.01s;300",
      "WARNING idle-in-transaction pid 7 (o'brien): idle-in-transaction is warning",
      'UNKNOWN slow-queries cluster: slow-queries is unknown',
      '',
    ].join('\n'));
  });
});
