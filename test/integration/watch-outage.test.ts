import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { probeIds } from '../../src/probes/index.js';
import { createPrimary, createStandby, destroyAll, freePort, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { MailSink } from '../support/smtp.js';
import { alertEvents, parseEvents, startWatcher, type WatcherRun } from '../support/watch.js';

const sink = new MailSink();
let primary: TestCluster;
let standby: TestCluster;
const dirs: string[] = [];
const runs: WatcherRun[] = [];

beforeAll(async () => {
  await sink.start();
  primary = await createPrimary({ name: 'watchoutage' });
  standby = await createStandby(primary, { name: 'watchoutage-standby' });
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(runs.map((run) => run.watcher.stop()));
  await closeAll();
  await destroyAll();
  await sink.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-outage-'));
  dirs.push(dir);
  return dir;
}

async function watch(config: Config): Promise<WatcherRun> {
  const run = await startWatcher(config);
  runs.push(run);
  return run;
}

async function idleInTransaction(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(primary.dsn(), name);
  await client.query('begin');
  await client.query('select 1');
  return { client, pid: await backendPid(client) };
}

describe('the watcher through outages', () => {
  let run: WatcherRun;
  let stateDir: string;

  it('SMTP down while alerts fire and resolve: notices fail, are retried, and each is delivered exactly once when it is back', { timeout: 60_000 }, async () => {
    stateDir = await tempDir();
    run = await watch(parseConfig({
      clusters: [{ name: 'outage', nodes: [{ name: 'db1', dsn: primary.dsn() }] }],
      refresh_ms: 250,
      alerting: {
        state_dir: stateDir,
        email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
        teams: [{ name: 'dba', email: ['dba@example.com'], checks: ['idle-in-transaction'] }],
        timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 },
        thresholds: {
          outage: { 'idle-in-transaction': { warning_seconds: 1, critical_seconds: 600 } },
          // An outbox failing for a second is already a monitor warning here (15 min by default).
          '*': { monitor: { outbox_failing_seconds: 1 } },
        },
      },
    }, 'watch-outage.json', probeIds));
    const port = sink.port;
    await sink.stop();
    const { client, pid } = await idleInTransaction('watch-outage-smtp');
    const isOurs = (text: string | undefined): boolean => (text ?? '').includes(`pid ${pid}`);
    await waitFor('two failed attempts', async () => parseEvents(run.lines).filter((event) => event['type'] === 'notice-failed' && event['channel'] === 'email').length >= 2);
    await waitFor('the monitor warning about the email outbox', async () => alertEvents(run.lines, { check: 'monitor', subject: 'outbox email', kind: 'firing' }).length > 0);
    await client.query('rollback');
    await waitFor('the alert resolved', async () => alertEvents(run.lines, { check: 'idle-in-transaction', subject: `pid ${pid}`, kind: 'resolved' }).length > 0);

    await sink.start(port);
    await waitFor('the firing and the resolved mail', async () => sink.mails.filter((mail) => isOurs(mail.text)).length >= 2, { timeoutMs: 20_000 });
    await waitFor('the email outbox to be empty', async () => (await readdir(join(stateDir, 'outbox', 'email'))).filter((name) => name.endsWith('.json')).length === 0);
    await waitFor('the monitor warning resolved', async () => alertEvents(run.lines, { check: 'monitor', subject: 'outbox email', kind: 'resolved' }).length > 0);

    const ours = sink.mails.filter((mail) => isOurs(mail.text));
    expect(ours.map((mail) => mail.subject)).toEqual(['[WARNING] outage: idle-in-transaction', '[RESOLVED] outage: idle-in-transaction']);
    const sent = parseEvents(run.lines).filter((event) => event['type'] === 'notice-sent').map((event) => event['id']);
    expect(new Set(sent).size).toBe(sent.length);
    const messageIds = sink.mails.map((mail) => mail.messageId);
    expect(new Set(messageIds).size).toBe(messageIds.length);
    expect(run.logs.some((line) => /^email: notice \S+ failed \(attempt 1\)/.test(line))).toBe(true);
  });

  it('a database restart: the connectivity alert fires and resolves, and the watcher still sees a new idle transaction', { timeout: 60_000 }, async () => {
    await primary.stop('fast');
    await waitFor('the connectivity alert', async () => alertEvents(run.lines, { check: 'connectivity', cluster: 'outage', kind: 'firing' }).length > 0);
    await primary.start();
    await waitFor('the connectivity alert resolved', async () => alertEvents(run.lines, { check: 'connectivity', cluster: 'outage', kind: 'resolved' }).length > 0);
    const { pid } = await idleInTransaction('watch-outage-after-restart');
    await waitFor('the new idle transaction firing', async () => alertEvents(run.lines, { check: 'idle-in-transaction', subject: `pid ${pid}`, kind: 'firing' }).length > 0);
    await waitFor('its mail', async () => sink.mails.find((mail) => (mail.text ?? '').includes(`pid ${pid}`)));
  });

  it('no primary reachable: a cluster whose only reachable node is a standby is a critical restart alert on "cluster"', { timeout: 60_000 }, async () => {
    const gone = await freePort();
    const replicasState = await tempDir();
    const replicas = await watch(parseConfig({
      clusters: [{
        name: 'replicas',
        nodes: [
          { name: 'standby', dsn: standby.dsn() },
          { name: 'gone', dsn: `postgresql://postgres@127.0.0.1:${gone}/postgres?connect_timeout=2` },
        ],
      }],
      refresh_ms: 250,
      alerting: { state_dir: replicasState, timing: { failing_evaluations: 2 } },
    }, 'watch-replicas.json', probeIds));
    const [firing] = await waitFor('the no-primary alert', async () => {
      const found = alertEvents(replicas.lines, { check: 'restart', subject: 'cluster', kind: 'firing' });
      return found.length > 0 ? found : undefined;
    });
    expect(firing).toMatchObject({ cluster: 'replicas', node: '*', severity: 'critical' });
    expect(String((firing!['finding'] as Record<string, unknown>)['message'])).toMatch(/^no primary reachable: 1 of 2 nodes answer and none is a primary \(standby: standby; gone: unreachable/);

    // A reload that removes the unreachable node and changes the standby's DSN: the removed node's
    // alerts and the cluster-wide one resolve (one node left), the changed node is reopened.
    await waitFor('the connectivity alert of the gone node', async () => alertEvents(replicas.lines, { check: 'connectivity', cluster: 'replicas', kind: 'firing' }).length > 0);
    const reloaded = await replicas.watcher.reload(() => parseConfig({
      clusters: [{ name: 'replicas', nodes: [{ name: 'standby', dsn: `${standby.dsn()}?connect_timeout=7` }] }],
      refresh_ms: 250,
      alerting: { state_dir: replicasState, timing: { failing_evaluations: 2 } },
    }, 'watch-replicas.json', probeIds));
    expect(reloaded).toBe(true);
    expect(replicas.logs.filter((line) => line.startsWith('config reloaded'))).toEqual(['config reloaded from watch-replicas.json: nodes removed: replicas/gone; nodes reopened: replicas/standby']);
    expect(replicas.watcher.watchedNodes()).toEqual(['replicas/standby']);
    await waitFor('the removed node and the cluster-wide alert resolved', async () =>
      alertEvents(replicas.lines, { check: 'connectivity', cluster: 'replicas', kind: 'resolved' }).length > 0 &&
      alertEvents(replicas.lines, { check: 'restart', subject: 'cluster', kind: 'resolved' }).length > 0);
    const evaluated = replicas.watcher.evaluationsStepped('replicas');
    await waitFor('the reopened node evaluated', async () => replicas.watcher.evaluationsStepped('replicas') > evaluated);
  });
});
