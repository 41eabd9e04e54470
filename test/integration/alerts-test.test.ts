import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertsTest } from '../../src/cli/alerts-test.js';
import { parseConfig, type Json } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { probeIds } from '../../src/probes/index.js';
import { MailSink } from '../support/smtp.js';

const smtp = new MailSink();
const mails = smtp.mails;
let smtpPort = 0;
let hook: Server;
let hookPort = 0;
const hookBodies: string[] = [];
// A token in the webhook path stands for the secret the report must not show.
const hookToken = 'T0ken-alerts-test-9f3e';

beforeAll(async () => {
  await smtp.start();
  smtpPort = smtp.port;
  hook = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    request.on('end', () => {
      hookBodies.push(body);
      response.writeHead(500, { 'content-type': 'text/plain' });
      response.end('receiver exploded');
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', () => resolve()));
  hookPort = (hook.address() as AddressInfo).port;
});

afterAll(async () => {
  await smtp.stop();
  hook.closeAllConnections();
  await new Promise<void>((resolve) => hook.close(() => resolve()));
});

function configWith(alerting: Json): Config {
  return parseConfig({ clusters: [{ name: 'c1', nodes: [{ name: 'n1', dsn: 'postgresql://postgres@127.0.0.1:5432/test' }] }], alerting }, 'alerts-test.json', probeIds);
}

describe('pgwarden alerts test', () => {
  it('sends the test notice by email and reports a failing webhook with exit 1', async () => {
    const config = configWith({
      email: { host: '127.0.0.1', port: smtpPort, security: 'none', from: 'pgwarden@example.com' },
      webhooks: [{ name: 'ops', url: `http://127.0.0.1:${hookPort}/hooks/${hookToken}` }],
      teams: [{ name: 'dba', email: ['alice@example.com', 'bob@example.com'], webhooks: ['ops'] }],
    });
    const before = mails.length;
    const out = await alertsTest(config);
    expect(out.exitCode).toBe(1);
    expect(out.stderr).toBe('');
    const lines = out.stdout.trimEnd().split('\n');
    expect(lines).toEqual([
      `ok   email → alice@example.com, bob@example.com (team dba, accepted by 127.0.0.1:${smtpPort})`,
      `FAIL webhook:ops → http://127.0.0.1:${hookPort} (team dba): HTTP 500 Internal Server Error: receiver exploded`,
      '1 of 2 test notice(s) failed',
    ]);
    expect(out.stdout).not.toContain(hookToken);
    const received = mails.slice(before);
    expect(received).toHaveLength(1);
    expect(received[0]?.subject).toBe('[TEST] pgwarden notice for team dba');
    const to = received[0]?.to;
    const addresses = (Array.isArray(to) ? to : to === undefined ? [] : [to]).flatMap((entry) => entry.value.map((item) => item.address));
    expect(addresses).toEqual(['alice@example.com', 'bob@example.com']);
    // The webhook was really called with the test notice, not skipped.
    expect(hookBodies.some((body) => body.includes('[TEST] pgwarden notice for team dba'))).toBe(true);
  });

  it('exits 0 when every channel accepts the notice', async () => {
    const config = configWith({
      email: { host: '127.0.0.1', port: smtpPort, security: 'none', from: 'pgwarden@example.com' },
      teams: [{ name: 'night', email: ['carol@example.com'] }],
    });
    const before = mails.length;
    const out = await alertsTest(config);
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toBe(`ok   email → carol@example.com (team night, accepted by 127.0.0.1:${smtpPort})\n1 test notice(s) sent\n`);
    expect(mails.slice(before).map((mail) => mail.subject)).toEqual(['[TEST] pgwarden notice for team night']);
  });

  it('reports an unreachable SMTP server as a failure', async () => {
    // A port that was just free: nothing answers there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
    const deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const config = configWith({
      email: { host: '127.0.0.1', port: deadPort, security: 'none', from: 'pgwarden@example.com' },
      teams: [{ name: 'dba', email: ['alice@example.com'] }],
    });
    const out = await alertsTest(config);
    expect(out.exitCode).toBe(1);
    expect(out.stdout).toMatch(/^FAIL email → alice@example\.com \(team dba\): email via 127\.0\.0\.1:\d+: cannot connect/);
  });

  it('exits 2 with a clear message when no channel is configured', async () => {
    const out = await alertsTest(configWith({}));
    expect(out.exitCode).toBe(2);
    expect(out.stdout).toBe('');
    expect(out.stderr).toContain('no alerting channel is configured');
  });

  it('exits 2 when channels exist but no team uses them', async () => {
    const out = await alertsTest(configWith({ webhooks: [{ name: 'ops', url: `http://127.0.0.1:${hookPort}/x` }] }));
    expect(out.exitCode).toBe(2);
    expect(out.stderr).toContain('no team uses a channel');
  });
});
