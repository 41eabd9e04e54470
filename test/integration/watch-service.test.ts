import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { MailSink } from '../support/smtp.js';
import { alertEvents, spawnWatch, type WatchProcess } from '../support/watch.js';

// The shared server: this test only reads from it and holds one idle transaction of its own.
const sharedDsn = (database: string): string => `postgresql://postgres@127.0.0.1:5432/${database}`;
const token = 's3cret-token-4711';

const sink = new MailSink();
let dir: string;
let configFile: string;
let http: Server;
let httpPort: number;
let pingStatus = 200;
const pings: string[] = [];
let watch: WatchProcess;
let idle: { client: pg.Client; pid: number };

function baseConfig(): Record<string, unknown> {
  return {
    clusters: [{ name: 'alpha', nodes: [{ name: 'db1', dsn: sharedDsn('postgres') }] }],
    refresh_ms: 250,
    alerting: {
      state_dir: join(dir, 'state'),
      email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
      teams: [{ name: 'dba', email: ['dba@example.com'], checks: ['monitor'] }],
      timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 },
      heartbeat: { url: `http://127.0.0.1:${httpPort}/ping/${token}`, every_s: 1, digest_every_h: 24 },
      // A stall of 2 s is 8 ticks of 250 ms: the test's suspension must count as one.
      thresholds: { '*': { monitor: { late_ticks: 3 } } },
    },
  };
}

/** Replaces the config file the way an editor or a deployment tool should: a complete new file, renamed into place. */
async function writeConfig(config: unknown): Promise<void> {
  const temp = `${configFile}.tmp`;
  await writeFile(temp, typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  await rename(temp, configFile);
}

function stderrLine(pattern: RegExp): Promise<string> {
  return waitFor(`a log line matching ${String(pattern)}`, async () => watch.stderr.find((line) => pattern.test(line)));
}

beforeAll(async () => {
  await sink.start();
  http = createServer((request, response) => {
    pings.push(`${request.method ?? ''} ${request.url ?? ''}`);
    response.writeHead(pingStatus).end('OK');
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  httpPort = (http.address() as AddressInfo).port;
  dir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-service-'));
  configFile = join(dir, 'config.json');
  await writeConfig(baseConfig());
  const client = await openSession(sharedDsn('postgres'), 'watch-service-idle');
  await client.query('begin');
  await client.query('select 1');
  idle = { client, pid: await backendPid(client) };
  watch = spawnWatch(configFile);
  await stderrLine(/^pgwarden watch: 1 node\(s\), 1 channel\(s\)/);
}, 60_000);

afterAll(async () => {
  if (watch.child.exitCode === null) watch.child.kill('SIGKILL');
  await closeAll();
  await sink.stop();
  await new Promise<void>((resolve) => http.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

describe('pgwarden --watch as a service (a real process)', () => {
  it('pings the heartbeat URL after good rounds without logging its token, and mails the alive notice', async () => {
    await waitFor('two heartbeat pings', async () => pings.length >= 2);
    expect(pings[0]).toBe(`GET /ping/${token}`);
    const alive = await waitFor('the alive mail', async () => sink.mails.find((mail) => (mail.subject ?? '').startsWith('[ALIVE]')));
    expect(alive.subject).toBe('[ALIVE] pgwarden is alive: 1 cluster, 0 alerts firing');
    expect(watch.stderr.join('\n')).toContain(`heartbeat http://127.0.0.1:${httpPort}/*** every 1 s`);
    expect(watch.stderr.join('\n')).not.toContain(token);
    // The idle transaction is below the default 5 min: nothing fires for it.
    expect(alertEvents(watch.stdout, { check: 'idle-in-transaction', subject: `pid ${idle.pid}` })).toEqual([]);
  });

  it('SIGHUP with a new threshold and a new cluster: both take effect, one log line says what changed', async () => {
    const config = baseConfig();
    const alerting = config['alerting'] as Record<string, unknown>;
    config['clusters'] = [...(config['clusters'] as unknown[]), { name: 'beta', nodes: [{ name: 'db1', dsn: sharedDsn('test') }] }];
    alerting['thresholds'] = { '*': { monitor: { late_ticks: 3 }, 'idle-in-transaction': { warning_seconds: 1, critical_seconds: 600 } } };
    await writeConfig(config);
    watch.child.kill('SIGHUP');
    const line = await stderrLine(/^config reloaded from /);
    expect(line).toBe(`config reloaded from ${configFile}: nodes added: beta/db1; thresholds changed`);
    // The lowered threshold fires the idle transaction on the old cluster, and the new cluster sees it too.
    await waitFor('the idle transaction firing on alpha and beta', async () =>
      alertEvents(watch.stdout, { check: 'idle-in-transaction', subject: `pid ${idle.pid}`, kind: 'firing', cluster: 'alpha' }).length === 1 &&
      alertEvents(watch.stdout, { check: 'idle-in-transaction', subject: `pid ${idle.pid}`, kind: 'firing', cluster: 'beta' }).length === 1);
  });

  it('SIGHUP with a broken file: the error names file and key, the old config keeps running, a monitor alert fires', async () => {
    const config = baseConfig();
    (config['alerting'] as { teams: { name: string }[] }).teams[0]!.name = '';
    await writeConfig(config);
    watch.child.kill('SIGHUP');
    const line = await stderrLine(/^config reload failed/);
    expect(line).toContain(`config reload failed, keeping the previous config: ${configFile}: alerting.teams[0].name: expected a non-empty string`);
    const [firing] = await waitFor('the monitor alert', async () => {
      const found = alertEvents(watch.stdout, { check: 'monitor', subject: 'config reload', kind: 'firing' });
      return found.length > 0 ? found : undefined;
    });
    expect(firing).toMatchObject({ cluster: 'pgwarden', severity: 'warning' });
    expect(String((firing!['finding'] as Record<string, unknown>)['message'])).toContain('alerting.teams[0].name');
    // The team of the previous config gets it by mail (its checks include monitor).
    await waitFor('the monitor mail', async () => sink.mails.find((mail) => mail.subject === '[WARNING] pgwarden: monitor'));
    // Still the previous config: beta is still watched, so ending the transaction resolves it on both clusters.
    await idle.client.query('rollback');
    await waitFor('the idle transaction resolved on alpha and beta', async () =>
      alertEvents(watch.stdout, { check: 'idle-in-transaction', subject: `pid ${idle.pid}`, kind: 'resolved' }).length === 2);
  });

  it('a heartbeat URL that fails is a monitor warning, and a suspended process is a critical heartbeat', async () => {
    pingStatus = 503;
    await waitFor('the heartbeat ping warning', async () => alertEvents(watch.stdout, { check: 'monitor', subject: 'heartbeat ping', kind: 'firing' }).length > 0);
    expect(watch.stderr.find((line) => line.startsWith('heartbeat ping failed'))).toBe(`heartbeat ping failed: http://127.0.0.1:${httpPort}/***: HTTP 503 Service Unavailable`);
    pingStatus = 200;
    // The suspension itself is what is under test: 2 s is 8 ticks of 250 ms.
    watch.child.kill('SIGSTOP');
    await delay(2000);
    watch.child.kill('SIGCONT');
    const [critical] = await waitFor('the heartbeat critical', async () => {
      const found = alertEvents(watch.stdout, { check: 'monitor', subject: 'heartbeat', kind: 'firing' });
      return found.length > 0 ? found : undefined;
    });
    expect(critical).toMatchObject({ cluster: 'pgwarden', severity: 'critical' });
    expect(watch.stderr.some((line) => /^pgwarden watch: the loop stalled: a clock tick came \d+ ms late/.test(line))).toBe(true);
  });

  it('SIGTERM stops it cleanly with exit 0', async () => {
    watch.child.kill('SIGTERM');
    expect(await watch.exited).toBe(0);
    expect(watch.stderr).toContain('pgwarden watch: stopped');
    expect(watch.stderr.join('\n')).not.toContain(token);
  });
});
