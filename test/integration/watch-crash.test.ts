/**
 * `pgwarden --watch` killed with SIGKILL mid-incident, twice: once while its firing notice waits in
 * the outbox (SMTP down), once after the notice was sent. Each restart resumes from the state
 * directory: the firing mail is delivered exactly once, and the resolved mail is still sent, once,
 * in the same thread.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { MailSink } from '../support/smtp.js';
import { alertEvents, parseEvents, spawnWatch, type WatchProcess } from '../support/watch.js';

const sink = new MailSink();
const processes: WatchProcess[] = [];
let cluster: TestCluster;
let dir: string;
let configFile: string;
let heartbeat: Server;
let pings = 0;

beforeAll(async () => {
  cluster = await createPrimary({ name: 'crash' });
  await sink.start();
  heartbeat = createServer((_request, response) => {
    pings += 1;
    response.end('OK');
  });
  await new Promise<void>((resolve) => heartbeat.listen(0, '127.0.0.1', () => resolve()));
  dir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-crash-'));
  configFile = join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify({
    clusters: [{ name: 'crash', nodes: [{ name: 'db1', dsn: cluster.dsn() }] }],
    refresh_ms: 250,
    alerting: {
      state_dir: join(dir, 'state'),
      email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
      teams: [{ name: 'dba', email: ['dba@example.com'], checks: ['idle-in-transaction'] }],
      timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 },
      thresholds: { crash: { 'idle-in-transaction': { warning_seconds: 1, critical_seconds: 3600 } } },
      // A ping after every good round: the test counts rounds of a real process by it.
      heartbeat: { url: `http://127.0.0.1:${(heartbeat.address() as AddressInfo).port}/ping`, every_s: 1 },
    },
  }));
}, 120_000);

afterAll(async () => {
  for (const watch of processes) if (watch.child.exitCode === null && watch.child.signalCode === null) watch.child.kill('SIGKILL');
  await closeAll();
  await destroyAll();
  await sink.stop();
  await new Promise<void>((resolve) => heartbeat.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<WatchProcess> {
  // retry=500: a notice that failed is tried again half a second later (30 s by default).
  const watch = spawnWatch(configFile, { PGWARDEN_WATCH_INTERVALS_MS: 'tick=250,fast=500,retry=500' });
  processes.push(watch);
  await waitFor('the watcher to start', async () => watch.stderr.some((line) => line.startsWith('pgwarden watch: 1 node(s)')));
  return watch;
}

async function kill(watch: WatchProcess): Promise<void> {
  watch.child.kill('SIGKILL');
  expect(await watch.exited).toBeNull();
}

/** Waits for `rounds` more good rounds of the running watcher (one heartbeat ping each, at most one per second). */
async function rounds(count: number): Promise<void> {
  const target = pings + count;
  await waitFor(`${count} more rounds`, async () => pings >= target, { timeoutMs: 20_000 });
}

const subjects = (): (string | undefined)[] => sink.mails.map((mail) => mail.subject);

describe('pgwarden --watch killed mid-incident', () => {
  it('SIGKILL with the firing notice in the outbox, and again after it was sent: one firing mail, one resolved mail, one thread', { timeout: 90_000 }, async () => {
    const port = sink.port;
    await sink.stop();
    const session = await openSession(cluster.dsn(), 'crash-idle');
    await session.query('begin');
    await session.query('select 1');
    const pid = await backendPid(session);

    // SMTP is down: the firing notice is stored and its delivery fails.
    const first = await start();
    await waitFor('a failed delivery of the firing notice', async () => parseEvents(first.stdout).some((event) => event['type'] === 'notice-failed'));
    await kill(first);

    // SMTP is back; the restarted watcher delivers the stored notice, once.
    await sink.start(port);
    const second = await start();
    await waitFor('the firing mail', async () => subjects().includes('[WARNING] crash: idle-in-transaction'));
    await rounds(3);
    await kill(second);

    // A second restart must not notify again, and must still see the end of the incident.
    const third = await start();
    await rounds(3);
    expect(subjects()).toEqual(['[WARNING] crash: idle-in-transaction']);
    await session.query('rollback');
    await waitFor('the resolved mail', async () => subjects().includes('[RESOLVED] crash: idle-in-transaction'));
    await rounds(2);

    expect(subjects()).toEqual(['[WARNING] crash: idle-in-transaction', '[RESOLVED] crash: idle-in-transaction']);
    const [firing, resolved] = sink.mails;
    expect(firing?.text).toContain(`pid ${pid}`);
    expect(resolved?.inReplyTo).toBe(firing?.messageId);
    // No alert event of the first episode is repeated by a restart: it fired once, in the first process.
    expect(alertEvents([...first.stdout, ...second.stdout, ...third.stdout], { check: 'idle-in-transaction', kind: 'firing' })).toHaveLength(1);
    third.child.kill('SIGTERM');
    expect(await third.exited).toBe(0);
  });
});
