import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import type { ParsedMail } from 'mailparser';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig, type Json } from '../../src/config/load.js';
import { probeIds } from '../../src/probes/index.js';
import { pgwarden } from '../support/cli.js';
import { createPrimary, destroyAll, waitFor, type TestCluster } from '../support/cluster.js';
import { backendPid, closeAll, openSession } from '../support/sessions.js';
import { MailSink } from '../support/smtp.js';
import { alertEvents, startWatcher, type WatcherRun } from '../support/watch.js';

const sink = new MailSink();
let cluster: TestCluster;
let dir: string;
let configFile: string;
let run: WatcherRun;
/** Added to the watcher's clock to reach the escalation delay without waiting for it. */
let offsetMs = 0;
const env = { PGWARDEN_USER: 'alice' };

function configJson(stateDir: string): Json {
  return {
    clusters: [{ name: 'managed', nodes: [{ name: 'db1', dsn: cluster.dsn() }] }],
    refresh_ms: 250,
    alerting: {
      state_dir: stateDir,
      email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
      teams: [
        { name: 'dba', email: ['dba@example.com'], checks: ['idle-in-transaction'], escalate_to: 'oncall', escalate_after_minutes: 1 },
        // Receives nothing of its own: only what dba leaves unacknowledged.
        { name: 'oncall', email: ['oncall@example.com'], checks: ['none'] },
      ],
      timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 },
      thresholds: { managed: { 'idle-in-transaction': { warning_seconds: 1, critical_seconds: 2 } } },
    },
  };
}

async function idleInTransaction(name: string): Promise<{ client: pg.Client; pid: number }> {
  const client = await openSession(cluster.dsn(), name);
  await client.query('begin');
  await client.query('select 1');
  return { client, pid: await backendPid(client) };
}

function mailsFor(pid: number, to: string): ParsedMail[] {
  return sink.mails.filter((mail) => (mail.text ?? '').includes(`pid ${pid}`) && JSON.stringify(mail.to ?? '').includes(to));
}

async function listed(): Promise<Record<string, unknown>[]> {
  const out = await pgwarden(['alerts', 'list', '--json', '--config', configFile], env);
  expect(out.code).toBe(0);
  return (JSON.parse(out.stdout) as { alerts: Record<string, unknown>[] }).alerts;
}

async function alertOf(pid: number): Promise<Record<string, unknown>> {
  return waitFor(`pid ${pid} in alerts list`, async () => (await listed()).find((alert) => alert['subject'] === `pid ${pid}` && alert['status'] === 'firing'));
}

beforeAll(async () => {
  await sink.start();
  cluster = await createPrimary({ name: 'watchmanage' });
  dir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-manage-'));
  configFile = join(dir, 'config.json');
  await writeFile(configFile, JSON.stringify(configJson(join(dir, 'state'))));
  run = await startWatcher(parseConfig(configJson(join(dir, 'state')), configFile, probeIds), { now: () => new Date(Date.now() + offsetMs) });
}, 120_000);

afterAll(async () => {
  await run.watcher.stop();
  await closeAll();
  await destroyAll();
  await sink.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('alerts silence / ack through the spool of a running watcher', () => {
  let silenced: { client: pg.Client; pid: number };

  it('a silence is applied by the watcher: the alert fires but sends no mail and is listed as silenced; unsilence lets the mail out', { timeout: 60_000 }, async () => {
    const out = await pgwarden(['alerts', 'silence', '--config', configFile, '--check', 'idle-in-transaction', '--cluster', 'managed', '--for', '10m', '--comment', 'planned maintenance'], env);
    expect(out.stderr).toBe('');
    expect(out.stdout).toMatch(/^silence s-[0-9a-f]{8} \(cluster=managed check=idle-in-transaction\) until \S+, covering 0 current alerts: applied by the watcher\n$/);
    const silenceId = /silence (s-[0-9a-f]{8})/.exec(out.stdout)?.[1] ?? '';
    expect(run.logs.some((line) => line.includes(`silence ${silenceId} by alice`))).toBe(true);

    silenced = await idleInTransaction('watch-manage-silenced');
    await waitFor('the firing event', async () => alertEvents(run.lines, { check: 'idle-in-transaction', subject: `pid ${silenced.pid}`, kind: 'firing' }).length > 0);
    // Let the engine take in more evaluations than group wait and interval need (0 s and 1 s at 500 ms a round).
    const seen = run.watcher.evaluationsStepped('managed');
    await waitFor('six more evaluations', async () => run.watcher.evaluationsStepped('managed') >= seen + 6);
    expect(mailsFor(silenced.pid, 'dba@example.com')).toEqual([]);

    const alert = await alertOf(silenced.pid);
    expect(alert['silenced_by']).toBe(silenceId);
    const text = await pgwarden(['alerts', 'list', '--config', configFile], env);
    expect(text.stdout).toMatch(new RegExp(`${String(alert['id'])}\\s+firing\\s+critical\\s+managed/db1\\s+idle-in-transaction\\s+pid ${silenced.pid}\\s.*silenced by ${silenceId}`));
    expect(text.stdout).toMatch(new RegExp(`${silenceId}\\s+cluster=managed check=idle-in-transaction\\s+\\S+ \\(in \\d+m\\d+s\\)\\s+alice\\s+planned maintenance`));

    const unsilence = await pgwarden(['alerts', 'unsilence', silenceId, '--config', configFile], env);
    expect(unsilence.stdout).toBe(`unsilence ${silenceId}: applied by the watcher\n`);
    await waitFor('the mail once unsilenced', async () => mailsFor(silenced.pid, 'dba@example.com')[0]);
  });

  it('ack stops the escalation of that alert; an unacknowledged critical still escalates', { timeout: 60_000 }, async () => {
    const other = await idleInTransaction('watch-manage-unacked');
    await waitFor('the second alert critical', async () => alertEvents(run.lines, { check: 'idle-in-transaction', subject: `pid ${other.pid}`, kind: 'firing' }).length > 0);
    await waitFor('the second alert mailed to dba', async () => mailsFor(other.pid, 'dba@example.com')[0]);
    const target = await alertOf(silenced.pid);
    expect(target['severity']).toBe('critical');
    const ack = await pgwarden(['alerts', 'ack', String(target['id']).slice(0, 6), '--comment', 'on it', '--config', configFile], env);
    expect(ack.stdout).toBe(`acknowledge ${String(target['id'])} managed/db1/idle-in-transaction/pid ${silenced.pid}: applied by the watcher\n`);
    expect((await alertOf(silenced.pid))['acknowledged']).toMatchObject({ by: 'alice', comment: 'on it' });

    // Past the escalation delay of 1 min.
    offsetMs = 2 * 60_000;
    const escalated = await waitFor('the escalation mail to oncall', async () => mailsFor(other.pid, 'oncall@example.com')[0]);
    expect(escalated.text ?? '').not.toContain(`pid ${silenced.pid}`);
    const seen = run.watcher.evaluationsStepped('managed');
    await waitFor('six more evaluations', async () => run.watcher.evaluationsStepped('managed') >= seen + 6);
    expect(mailsFor(silenced.pid, 'oncall@example.com')).toEqual([]);

    const unack = await pgwarden(['alerts', 'unack', `managed/db1/idle-in-transaction/pid ${silenced.pid}`, '--config', configFile], env);
    expect(unack.stdout).toContain('unacknowledge');
    expect(unack.stdout).toContain('applied by the watcher');
    expect((await alertOf(silenced.pid))['acknowledged']).toBeNull();
  });

  it('bad input is refused with the reason and exit 2, nothing is queued', async () => {
    const noMatcher = await pgwarden(['alerts', 'silence', '--for', '1h', '--config', configFile], env);
    expect(noMatcher.code).toBe(2);
    expect(noMatcher.stderr).toContain('needs at least one matcher');
    const unknownCheck = await pgwarden(['alerts', 'silence', '--check', 'idle-in-transation', '--for', '1h', '--config', configFile], env);
    expect(unknownCheck.code).toBe(2);
    expect(unknownCheck.stderr).toMatch(/unknown check "idle-in-transation"; known: connectivity, restart, .*idle-in-transaction.*monitor/);
    const badDuration = await pgwarden(['alerts', 'silence', '--check', 'restart', '--for', '2 hours', '--config', configFile], env);
    expect(badDuration.code).toBe(2);
    expect(badDuration.stderr).toContain('--for "2 hours" is not a duration; write it as 30m, 2h, 1d or 1h30m');
    const unknownAlert = await pgwarden(['alerts', 'ack', 'nothing-like-this', '--config', configFile], env);
    expect(unknownAlert.code).toBe(2);
    expect(unknownAlert.stderr).toMatch(/no unacknowledged firing or unknown alert matches "nothing-like-this"; candidates:\n {2}[0-9a-f]{8} {2}managed\/db1\//);
    const ambiguous = await pgwarden(['alerts', 'ack', 'managed/db1/', '--config', configFile], env);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/"managed\/db1\/" matches \d+ alerts; give more of the id or name:/);
    const unknownSilence = await pgwarden(['alerts', 'unsilence', 's-00000000', '--config', configFile], env);
    expect(unknownSilence.code).toBe(2);
    expect(unknownSilence.stderr).toContain('no active silence "s-00000000"');
    expect((await readdir(join(dir, 'state', 'commands'))).filter((name) => name.endsWith('.json'))).toEqual([]);
  });

  it('a malformed spool file is moved aside with a log line; without a watcher a command stays queued', async () => {
    await writeFile(join(dir, 'state', 'commands', '000-bad.json'), '{"kind":"silence"}');
    await waitFor('the rejected file', async () => (await readdir(join(dir, 'state', 'commands', 'rejected')).catch((): string[] => [])).includes('000-bad.json'));
    expect(run.logs.find((line) => line.includes('000-bad.json'))).toContain('rejected (moved to commands/rejected/): "silence" must be an object');

    const idleConfig = join(dir, 'idle.json');
    await writeFile(idleConfig, JSON.stringify(configJson(join(dir, 'no-watcher'))));
    const queued = await pgwarden(['alerts', 'silence', '--check', 'restart', '--for', '1h', '--wait', '1', '--config', idleConfig], env);
    expect(queued.code).toBe(0);
    expect(queued.stdout).toMatch(/: queued \(\S+\): no watcher took it within 1 s; it applies when the watcher runs\n$/);
    expect((await readdir(join(dir, 'no-watcher', 'commands'))).filter((name) => name.endsWith('.json'))).toHaveLength(1);
  });
});
