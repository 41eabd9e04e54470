import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsCheck } from '../../src/cli/alerts-check.js';
import type { Finding } from '../../src/checks/types.js';
import type { Json } from '../../src/config/load.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { runReadOnlyQuery } from '../../src/db/custom-query.js';
import { evaluateApplication, type ApplicationState } from '../../src/health/application.js';
import { customSqlApplication } from '../../src/health/custom-sql.js';
import { probeEndpoint } from '../../src/health/http.js';
import { probeIds } from '../../src/probes/index.js';
import { pgwarden } from '../support/cli.js';
import { freePort, waitFor } from '../support/cluster.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const table = `app_health_${process.pid}_${Date.now()}`;
const dir = mkdtempSync(join(tmpdir(), 'pgwarden-app-health-'));

type Mode = 'ok' | 'error' | 'slow' | 'stuck';

/** A real HTTP server whose answer the test switches; it records the headers of each request. */
class AppServer {
  mode: Mode = 'ok';
  readonly requests: IncomingHttpHeaders[] = [];
  private readonly server: Server;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor() {
    this.server = createServer((request, response) => {
      this.requests.push(request.headers);
      const answer = (status: number): void => {
        response.writeHead(status, { 'content-type': 'text/plain' });
        response.end(status === 200 ? 'ok' : 'database unavailable');
      };
      const later = (ms: number, status: number): void => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          answer(status);
        }, ms);
        this.timers.add(timer);
      };
      if (this.mode === 'ok') answer(200);
      else if (this.mode === 'error') answer(500);
      else if (this.mode === 'slow') later(300, 200);
      else later(3000, 200);
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }

  /** Stops listening: the next request is refused. */
  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function configFile(name: string, health: Json, clusterDsn = dsn): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ clusters: [{ name: 'shop', nodes: [{ name: 'db1', dsn: clusterDsn }] }], health }));
  return file;
}

function configWith(name: string, health: Json): Config {
  return loadConfig({ configFile: configFile(name, health), dsn: undefined, knownProbes: probeIds, env: {} });
}

function bySubject(findings: readonly Finding[]): Record<string, Finding> {
  return Object.fromEntries(findings.map((finding) => [finding.subject, finding]));
}

let admin: pg.Client;

beforeAll(async () => {
  admin = new pg.Client({ connectionString: dsn });
  await admin.connect();
  await admin.query(`create table ${table} (id serial primary key, note text)`);
  await admin.query(`insert into ${table} (note) select 'row ' || n from generate_series(1, 5) n`);
});

afterAll(async () => {
  await admin.query(`drop table if exists ${table}`);
  await admin.end();
  rmSync(dir, { recursive: true, force: true });
});

describe('HTTP endpoints', () => {
  it('up, answering 500, slow, then gone: ok, warning, latency warning, warning, critical', { timeout: 20_000 }, async () => {
    const app = new AppServer();
    const port = await app.listen();
    const config = configWith('http', {
      http: [{ name: 'api', url: `http://monitor:s3cret@127.0.0.1:${port}/healthz`, timeout_ms: 2000, warning_latency_ms: 150 }],
    });
    let state: ApplicationState | undefined;
    let minute = 0;
    const evaluate = async (): Promise<Finding> => {
      minute += 1;
      const outcome = await evaluateApplication(config, 'shop', new Date(Date.UTC(2024, 4, 1, 12, minute)), { previous: state });
      state = outcome.state;
      expect(outcome.evaluation).toMatchObject({ cluster: 'shop', node: 'app', checks: ['http-endpoint', 'custom-sql'] });
      const [only] = outcome.findings;
      expect(outcome.findings).toHaveLength(1);
      return only!;
    };

    const up = await evaluate();
    expect(up).toMatchObject({ checkId: 'http-endpoint', severity: 'ok', subject: 'endpoint api', unit: 'ms', warningThreshold: 150 });
    expect(up.message).toMatch(new RegExp(`^http://monitor:\\*\\*\\*@127\\.0\\.0\\.1:${port}/healthz answered HTTP 200 in \\d+ms \\(warning ≥ 150ms\\)$`));
    // The password went as basic authentication, and never into the finding.
    expect(app.requests[0]?.authorization).toBe(`Basic ${Buffer.from('monitor:s3cret').toString('base64')}`);
    expect(JSON.stringify(up)).not.toContain('s3cret');

    app.mode = 'error';
    const failing = await evaluate();
    expect(failing.severity).toBe('warning');
    expect(failing.message).toContain('failed once: HTTP 500 Internal Server Error (expected 2xx) (critical after 2 in a row)');
    expect(failing.context.details).toMatchObject({ status: 500, failures: 1 });

    app.mode = 'slow';
    const slow = await evaluate();
    // It answered: the failure count is reset, and the latency is what the server really took.
    expect(slow.severity).toBe('warning');
    expect(slow.value).toBeGreaterThanOrEqual(300);
    expect(slow.message).toMatch(/answered HTTP 200 in \d+ms \(warning ≥ 150ms\)$/);
    expect(slow.context.details).toMatchObject({ failures: 0 });

    await app.close();
    const refused = await evaluate();
    expect(refused.severity).toBe('warning');
    expect(refused.message).toContain('failed once: connection refused (is the service running and listening there?)');
    expect(refused.value).toBeNull();
    const again = await evaluate();
    expect(again.severity).toBe('critical');
    expect(again.message).toContain('failed 2 times in a row: connection refused');
    expect(JSON.stringify(state)).not.toContain('s3cret');
  });

  it('a request that takes longer than timeout_ms is abandoned and fails; expect_status decides what is healthy', { timeout: 20_000 }, async () => {
    const app = new AppServer();
    const port = await app.listen();
    try {
      app.mode = 'stuck';
      const started = performance.now();
      const stuck = await probeEndpoint({ name: 'api', url: `http://127.0.0.1:${port}/`, cluster: undefined, timeoutMs: 400, expectStatus: undefined, warningLatencyMs: undefined, criticalLatencyMs: undefined });
      expect(performance.now() - started).toBeLessThan(2500);
      expect(stuck).toMatchObject({ ok: false, status: null, latencyMs: null, error: 'no answer within 400 ms (timeout_ms)' });

      app.mode = 'error';
      const accepted = await probeEndpoint({ name: 'api', url: `http://127.0.0.1:${port}/`, cluster: undefined, timeoutMs: 2000, expectStatus: [200, 500], warningLatencyMs: undefined, criticalLatencyMs: undefined });
      expect(accepted).toMatchObject({ ok: true, status: 500, error: null });
      app.mode = 'ok';
      const refusedOk = await probeEndpoint({ name: 'api', url: `http://127.0.0.1:${port}/`, cluster: undefined, timeoutMs: 2000, expectStatus: [204], warningLatencyMs: undefined, criticalLatencyMs: undefined });
      expect(refusedOk).toMatchObject({ ok: false, status: 200, error: 'HTTP 200 OK (expected 204)' });
    } finally {
      await app.close();
    }
  });

  it('a state that is not one (a damaged state file) counts as no previous state', async () => {
    const app = new AppServer();
    const port = await app.listen();
    try {
      app.mode = 'error';
      const config = configWith('damaged', { http: [{ name: 'api', url: `http://127.0.0.1:${port}/` }] });
      for (const previous of ['garbage', { checks: 5 }, { checks: { 'http-endpoint': { api: { failures: 'x' } } } }, null]) {
        const outcome = await evaluateApplication(config, 'shop', new Date(), { previous });
        expect(outcome.findings.map((finding) => finding.severity)).toEqual(['warning']);
      }
    } finally {
      await app.close();
    }
  });
});

describe('custom SQL checks', () => {
  const count = `select count(*) from ${table}`;

  it('compares the value with its levels, above and below; refuses writes; times out; wants a number', { timeout: 20_000 }, async () => {
    const config = configWith('sql', {
      sql: [
        { name: 'rows-ok', query: count, warning: 100, critical: 1000 },
        { name: 'rows-above', query: count, warning: 3, critical: 10 },
        { name: 'rows-below', query: `${count};`, warning: 10, critical: 6, direction: 'below' },
        { name: 'numeric', query: 'select 2.5::numeric as ratio', warning: 2, critical: 3 },
        { name: 'writes', query: `delete from ${table} returning 1`, warning: 1, critical: 2 },
        { name: 'slow', query: 'select 1 from pg_sleep(3)', warning: 1, critical: 2, timeout_ms: 300 },
        { name: 'text', query: "select 'green' as status", warning: 1, critical: 2 },
        { name: 'nothing', query: `select id from ${table} where false`, warning: 1, critical: 2 },
        { name: 'elsewhere', database: 'postgres', query: 'select current_database() = \'postgres\' and current_setting(\'transaction_read_only\') = \'on\'', warning: 1, critical: 2 },
      ],
    });
    const started = performance.now();
    const outcome = await evaluateApplication(config, 'shop', new Date(), { previous: undefined });
    // Concurrent: the slow one's timeout, not the sum of all of them.
    expect(performance.now() - started).toBeLessThan(2500);
    expect(outcome.evaluation.node).toBe('app');
    const found = bySubject(outcome.findings);
    expect(found['check rows-ok']).toMatchObject({ checkId: 'custom-sql', severity: 'ok', value: 5, message: 'returned 5 on db1/test (warning ≥ 100)' });
    expect(found['check rows-above']).toMatchObject({ severity: 'warning', value: 5, threshold: 3, message: 'returned 5 on db1/test (warning ≥ 3)' });
    expect(found['check rows-below']).toMatchObject({ severity: 'critical', value: 5, threshold: 6, message: 'returned 5 on db1/test (critical ≤ 6)' });
    expect(found['check numeric']).toMatchObject({ severity: 'warning', value: 2.5 });

    expect(found['check writes']?.severity).toBe('warning');
    expect(found['check writes']?.message).toMatch(/^failed once on db1\/test: refused by READ ONLY: the query tries to write \(.*cannot execute DELETE in a read-only transaction.*\); custom checks may only read/);
    const rows = await admin.query(`select count(*)::int as n from ${table}`);
    expect(rows.rows[0]).toEqual({ n: 5 });

    expect(found['check slow']?.message).toBe('failed once on db1/test: cancelled after timeout_ms (300 ms): make the query faster or raise timeout_ms (critical after 2 in a row)');
    expect(found['check text']?.message).toContain('its first column "status" is "green", not a number');
    expect(found['check nothing']?.message).toContain('the query returned no row');
    // A boolean is not a number either; and it ran on the database named, read-only.
    expect(found['check elsewhere']?.message).toBe('failed once on db1/postgres: its first column "?column?" is boolean true, not a number (cast it: (…)::int) (critical after 2 in a row)');

    // The second failure in a row is critical; the sessions are all gone afterwards.
    const second = bySubject((await evaluateApplication(config, 'shop', new Date(Date.now() + 60_000), { previous: outcome.state, checks: ['custom-sql'] })).findings);
    expect(second['check writes']?.severity).toBe('critical');
    expect(second['check rows-ok']?.severity).toBe('ok');
    await waitFor('the check sessions to end', async () => {
      const left = await admin.query('select count(*)::int as n from pg_stat_activity where application_name = $1', [customSqlApplication]);
      return left.rows[0]?.n === 0;
    });
  });

  it('the server itself refuses a second statement, should one get past the config', async () => {
    const config = configWith('direct', {});
    const node = config.clusters[0]!.nodes[0]!;
    await expect(runReadOnlyQuery(node.connection, `select 1; delete from ${table}`, { timeoutMs: 2000 })).rejects.toThrow(/cannot insert multiple commands into a prepared statement/);
    expect((await admin.query(`select count(*)::int as n from ${table}`)).rows[0]).toEqual({ n: 5 });
  });

  it('a node that does not answer is a failure with the reason', { timeout: 20_000 }, async () => {
    const port = await freePort();
    const file = configFile('down', { sql: [{ name: 'rows', query: 'select 1', warning: 5, critical: 10 }] }, `postgresql://postgres@127.0.0.1:${port}/test`);
    const config = loadConfig({ configFile: file, dsn: undefined, knownProbes: probeIds, env: {} });
    const [only] = (await evaluateApplication(config, 'shop', new Date())).findings;
    expect(only?.severity).toBe('warning');
    expect(only?.message).toContain(`failed once on db1/test: postgres@127.0.0.1:${port}/test: connection refused`);
  });
});

describe('pgwarden alerts check', () => {
  it('the built command evaluates the endpoints: OK while up, WARNING (exit 1) on a one-shot failure', { timeout: 60_000 }, async () => {
    const app = new AppServer();
    const port = await app.listen();
    const file = configFile('cli', { http: [{ name: 'api', url: `http://127.0.0.1:${port}/healthz`, timeout_ms: 2000 }] });
    const up = await pgwarden(['alerts', 'check', '--config', file, '--checks', 'http-endpoint']);
    expect(up.stdout).toMatch(/^PGWARDEN OK - 0 critical, 0 warning, 0 unknown \| 'http-endpoint endpoint api'=\d+(\.\d+)?ms;1000\n$/);
    expect(up.code).toBe(0);
    await app.close();
    // One run is one evaluation: a failure is a warning; the watcher keeps the count to go critical.
    const down = await pgwarden(['alerts', 'check', '--config', file, '--checks', 'http-endpoint']);
    expect(down.stdout).toMatch(/^PGWARDEN WARNING - 0 critical, 1 warning, 0 unknown\n/);
    expect(down.stdout).toContain(`WARNING http-endpoint endpoint api: http://127.0.0.1:${port}/healthz failed once: connection refused`);
    expect(down.code).toBe(1);
  });

  it('in-process with the database checks too, and UNKNOWN when nothing is configured for the checks asked', { timeout: 30_000 }, async () => {
    const config = configWith('mixed', { sql: [{ name: 'rows', query: `select count(*) from ${table}`, warning: 3, critical: 10 }] });
    const mixed = await alertsCheck(config, { json: true, checks: ['connectivity', 'custom-sql'] });
    const findings = JSON.parse(mixed.stdout) as Record<string, unknown>[];
    expect(findings.map((finding) => [finding['check_id'], finding['subject'], finding['severity']])).toEqual([
      ['connectivity', 'cluster', 'ok'],
      ['custom-sql', 'check rows', 'warning'],
    ]);
    expect(mixed.exitCode).toBe(1);
    const none = await alertsCheck(config, { json: false, checks: ['http-endpoint'] });
    expect(none.exitCode).toBe(3);
    expect(none.stdout).toContain('UNKNOWN pgwarden usage: nothing to check: no health.http endpoint for cluster "shop"');
  });
});
