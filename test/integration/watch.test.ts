import { mkdtemp, rm } from 'node:fs/promises';
import type { ParsedMail } from 'mailparser';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { probeIds } from '../../src/probes/index.js';
import { Watcher } from '../../src/watch/watcher.js';
import { createPrimary, destroyAll, freePort, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { MailSink } from '../support/smtp.js';

interface Run {
  readonly watcher: Watcher;
  readonly lines: string[];
  readonly logs: string[];
}

const sink = new MailSink();
const dirs: string[] = [];
const running: Watcher[] = [];
let cluster: TestCluster;
let brokenPort: number;

beforeAll(async () => {
  await sink.start();
  cluster = await createPrimary({ name: 'watch' });
  // A port nobody listens on: the broken cluster entry.
  brokenPort = await freePort();
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(running.map((watcher) => watcher.stop()));
  await closeAll();
  await destroyAll();
  await sink.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function configFor(stateDir: string, brokenName: string): Config {
  return parseConfig(
    {
      clusters: [
        { name: 'watched', nodes: [{ name: 'db1', dsn: cluster.dsn() }] },
        { name: brokenName, nodes: [{ name: 'gone', dsn: `postgresql://postgres@127.0.0.1:${brokenPort}/postgres?connect_timeout=2` }] },
      ],
      refresh_ms: 250,
      alerting: {
        state_dir: stateDir,
        email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
        // Only the checks this test provokes, so the "restarted recently" warning of a fresh cluster stays out of the mailbox.
        teams: [{ name: 'dba', email: ['dba@example.com'], checks: ['idle-in-transaction', 'connectivity'] }],
        timing: { group_wait_s: 1, group_interval_s: 1, failing_evaluations: 2 },
        thresholds: { watched: { 'idle-in-transaction': { warning_seconds: 2, critical_seconds: 600 } } },
      },
    },
    'watch.test.json',
    probeIds,
  );
}

async function startWatcher(config: Config): Promise<Run> {
  const lines: string[] = [];
  const logs: string[] = [];
  const events = new PassThrough();
  events.setEncoding('utf8');
  let buffered = '';
  events.on('data', (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts);
  });
  const watcher = new Watcher(config, {
    events,
    log: (line) => logs.push(line),
    cadenceMs: { fast: 500, normal: 60_000, slow: 3_600_000 },
    tickMs: 250,
    outbox: { initialBackoffMs: 500, maxBackoffMs: 2000 },
  });
  running.push(watcher);
  await watcher.start();
  return { watcher, lines, logs };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-'));
  dirs.push(dir);
  return dir;
}

function mailsAbout(checkId: string, cluster: string, kind: 'WARNING' | 'CRITICAL' | 'RESOLVED'): ParsedMail[] {
  return sink.mails.filter((mail) => mail.subject === `[${kind}] ${cluster}: ${checkId}`);
}

function events(run: Run): Record<string, unknown>[] {
  return run.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function idleInTransaction(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(cluster.dsn(), name);
  await client.query('begin');
  await client.query('select 1');
  return { client, pid: await backendPid(client) };
}

describe('pgwarden --watch (Watcher)', () => {
  it('mails an idle-in-transaction firing notice naming the pid, then the resolved notice in the same thread; a broken cluster is a connectivity alert', { timeout: 60_000 }, async () => {
    const run = await startWatcher(configFor(await tempDir(), 'broken-a'));
    const { client, pid } = await idleInTransaction('watch-idle-a');

    const firing = await waitFor('the firing mail', async () => mailsAbout('idle-in-transaction', 'watched', 'WARNING').find((mail) => (mail.text ?? '').includes(`pid ${pid}`)), { timeoutMs: 30_000 });
    expect(firing.to === undefined ? '' : JSON.stringify(firing.to)).toContain('dba@example.com');
    expect(firing.messageId).toBeDefined();

    await client.query('rollback');
    const resolved = await waitFor('the resolved mail', async () => mailsAbout('idle-in-transaction', 'watched', 'RESOLVED').find((mail) => mail.inReplyTo === firing.messageId), { timeoutMs: 30_000 });
    expect(resolved.text ?? '').toContain(`pid ${pid}`);

    // The unreachable entry did not crash anything: it is a critical connectivity alert with its own mail.
    const down = await waitFor('the connectivity mail of the broken cluster', async () => mailsAbout('connectivity', 'broken-a', 'CRITICAL')[0]);
    expect(down.text ?? '').toMatch(/does not answer/);

    const kinds = events(run).filter((event) => event['type'] === 'alert' && event['check_id'] === 'idle-in-transaction' && event['subject'] === `pid ${pid}`).map((event) => event['kind']);
    expect(kinds).toEqual(['firing', 'resolved']);
    // The SMTP server has the mail a moment before the watcher records it as sent.
    await waitFor('three notice-sent events', async () => events(run).filter((event) => event['type'] === 'notice-sent' && event['channel'] === 'email').length >= 3);
    await run.watcher.stop();
  });

  it('a watcher restarted mid-incident sends no second firing mail and still sends exactly one resolved mail', { timeout: 60_000 }, async () => {
    const stateDir = await tempDir();
    const first = await startWatcher(configFor(stateDir, 'broken-b'));
    const { client, pid } = await idleInTransaction('watch-idle-b');
    const isOurs = (mail: ParsedMail): boolean => (mail.text ?? '').includes(`pid ${pid}`);
    const firing = await waitFor('the firing mail', async () => mailsAbout('idle-in-transaction', 'watched', 'WARNING').find(isOurs), { timeoutMs: 30_000 });
    await first.watcher.stop();

    const second = await startWatcher(configFor(stateDir, 'broken-b'));
    // With a blank state, two evaluations of the still-open session would fire it again: let the
    // new watcher's engine take in three first.
    await waitFor('the restarted watcher to evaluate', async () => second.watcher.evaluationsStepped('watched') >= 3);
    expect(events(second).filter((event) => event['type'] === 'alert' && event['kind'] === 'firing' && event['subject'] === `pid ${pid}`)).toHaveLength(0);
    await client.query('rollback');
    const resolved = await waitFor('the resolved mail', async () => mailsAbout('idle-in-transaction', 'watched', 'RESOLVED').find(isOurs), { timeoutMs: 30_000 });
    expect(resolved.inReplyTo).toBe(firing.messageId);
    await second.watcher.stop();

    expect(mailsAbout('idle-in-transaction', 'watched', 'WARNING').filter(isOurs)).toHaveLength(1);
    expect(mailsAbout('idle-in-transaction', 'watched', 'RESOLVED').filter(isOurs)).toHaveLength(1);
    // The broken cluster's alert also crossed the restart: its mail was sent once, by the first watcher.
    expect(mailsAbout('connectivity', 'broken-b', 'CRITICAL')).toHaveLength(1);
    expect(events(second).filter((event) => event['type'] === 'alert' && event['kind'] === 'firing' && event['subject'] === `pid ${pid}`)).toHaveLength(0);
  });
});
