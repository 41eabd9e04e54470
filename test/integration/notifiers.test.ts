import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createEmailNotifier } from '../../src/alerts/notifiers/email.js';
import type { EmailConfig } from '../../src/alerts/notifiers/email.js';
import { createNdjsonNotifier } from '../../src/alerts/notifiers/ndjson.js';
import { createWebhookNotifier } from '../../src/alerts/notifiers/webhook.js';
import { Outbox } from '../../src/alerts/outbox.js';
import { blockedQuery, lockTreeLine, notice } from '../support/notices.js';
import { MailSink } from '../support/smtp.js';

const user = 'pgwarden';
const password = 'S3cret-smtp-Pa55';
const env = { PGWARDEN_TEST_SMTP_PASSWORD: password };
const secretForms = [password, Buffer.from(password).toString('base64'), Buffer.from(`\u0000${user}\u0000${password}`).toString('base64')];

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgwarden-notifiers-'));
  dirs.push(dir);
  return dir;
}

const sink = new MailSink({ auth: { user, password } });
const logged: string[] = [];

function emailConfig(port: number): EmailConfig {
  return {
    host: '127.0.0.1',
    port,
    security: 'none',
    auth: { user, passwordEnv: 'PGWARDEN_TEST_SMTP_PASSWORD' },
    from: 'pgwarden <pgwarden@example.com>',
    replyTo: 'dba-team@example.com',
    timeoutMs: 5_000,
    runbookBaseUrl: 'https://runbooks.example.com/pgwarden',
  };
}

beforeAll(async () => {
  for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      logged.push(args.map(String).join(' '));
    });
  }
  await sink.start();
});

afterAll(async () => {
  vi.restoreAllMocks();
  await sink.stop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function expectNoSecret(text: string): void {
  for (const form of secretForms) expect(text).not.toContain(form);
}

describe('email notifier over a real SMTP server', () => {
  it('sends a firing notice and its resolved notice in one thread, with the context in text and HTML', async () => {
    const before = sink.mails.length;
    const mailer = createEmailNotifier(emailConfig(sink.port), { env });
    await mailer.send(notice('firing', 1, 'thread-one'));
    await mailer.send(notice('resolved', 2, 'thread-one'));
    mailer.close();

    const [firing, resolved] = sink.mails.slice(before);
    expect(sink.mails.length - before).toBe(2);
    expect(firing?.subject).toBe('[CRITICAL] prod: lock_wait');
    expect(resolved?.subject).toBe('[RESOLVED] prod: lock_wait');
    expect(firing?.messageId).toBe('<thread-one@pgwarden>');
    expect(firing?.inReplyTo).toBeUndefined();
    expect(resolved?.messageId).toBe('<thread-one.2@pgwarden>');
    expect(resolved?.inReplyTo).toBe(firing?.messageId);
    expect(resolved?.references).toBe(firing?.messageId);
    expect(firing?.replyTo?.text).toBe('dba-team@example.com');
    expect(firing?.to && !Array.isArray(firing.to) ? firing.to.value.map((entry) => entry.address) : []).toEqual(['dba@example.com', 'oncall@example.com']);

    const text = firing?.text ?? '';
    expect(text).toContain('pid 4343 · user app · application billing · client 10.0.0.7');
    expect(text).toContain(blockedQuery);
    expect(text).toContain(lockTreeLine);
    expect(text).toContain('312 s (threshold 300 s)');
    expect(text).toContain('2025-03-01T10:00:00.000Z');
    expect(text).toContain('https://runbooks.example.com/pgwarden/docs/alerts.md#lock_wait');

    const html = typeof firing?.html === 'string' ? firing.html : '';
    expect(html).toContain('pid 4343');
    // The query's markup arrives escaped, never as live HTML.
    expect(html).toContain("note = &#39;&lt;b&gt;&amp;&#39;");
    expect(html).not.toContain('<b>&');
    expect(html).toContain(lockTreeLine);
    expect(html).toContain('<a href="https://runbooks.example.com/pgwarden/docs/alerts.md#lock_wait">');
    expect(resolved?.text).toContain('RESOLVED critical: lock_wait on pid 4343');
  });

  it('maps a refused login to a clear message with the SMTP response and without the password', async () => {
    sink.refuseAuth = 1;
    const mailer = createEmailNotifier(emailConfig(sink.port), { env });
    const error = await mailer.send(notice('firing', 1, 'thread-auth')).then(
      () => null,
      (caught: unknown) => caught,
    );
    mailer.close();
    expect(error).toBeInstanceOf(Error);
    const message = error instanceof Error ? error.message : '';
    expect(message).toMatch(/^email via 127\.0\.0\.1:\d+: authentication refused: check the SMTP user and password \(535 .*Invalid username or password\)$/);
    expect(error).toMatchObject({ code: 'EAUTH', responseCode: 535 });
    expectNoSecret(message);
    expectNoSecret(JSON.stringify(error));
    expectNoSecret(String((error as Error).stack));
    expectNoSecret(logged.join('\n'));
    expect(sink.refuseAuth).toBe(0);
  });

  it('names a missing password variable without guessing a value', async () => {
    const mailer = createEmailNotifier(emailConfig(sink.port), { env: {} });
    await expect(mailer.send(notice('firing', 1, 'thread-env'))).rejects.toThrow('SMTP password: environment variable PGWARDEN_TEST_SMTP_PASSWORD is not set');
  });

  it('survives an SMTP outage through the outbox and delivers exactly once when the server is back', async () => {
    const dir = await tempDir();
    const outbox = await Outbox.open(dir);
    const port = sink.port;
    const mailer = createEmailNotifier(emailConfig(port), { env });
    const t0 = Date.parse('2025-03-01T12:00:00Z');
    await sink.stop();
    try {
      expect(await outbox.enqueue(notice('firing', 1, 'thread-outage'))).toBe('queued');
      const failed = await outbox.deliverDue(mailer.send, new Date(t0));
      expect(failed.sent).toEqual([]);
      expect(failed.failed).toHaveLength(1);
      expect(failed.failed[0]).toMatchObject({ id: 'thread-outage.1', attempts: 1, nextAttemptAt: new Date(t0 + 30_000) });
      expect(failed.failed[0]?.error).toMatch(/^email via 127\.0\.0\.1:\d+: cannot connect/);
      expectNoSecret(await readFile(join(dir, 'thread-outage.1.json'), 'utf8'));
    } finally {
      await sink.start(port);
    }
    const before = sink.mails.length;
    expect((await outbox.deliverDue(mailer.send, new Date(t0 + 29_000))).sent).toEqual([]);
    expect((await outbox.deliverDue(mailer.send, new Date(t0 + 30_000))).sent).toEqual(['thread-outage.1']);
    expect((await outbox.deliverDue(mailer.send, new Date(t0 + 60_000))).sent).toEqual([]);
    const restarted = await Outbox.open(dir);
    expect((await restarted.deliverDue(mailer.send, new Date(t0 + 3_600_000))).sent).toEqual([]);
    expect(await restarted.enqueue(notice('firing', 1, 'thread-outage'))).toBe('duplicate');
    mailer.close();
    const delivered = sink.mails.slice(before).filter((mail) => mail.messageId === '<thread-outage@pgwarden>');
    expect(delivered).toHaveLength(1);
    expect(sink.mails.length - before).toBe(1);
    expect(await readdir(join(dir, 'sent'))).toEqual(['thread-outage.1.json']);
  });
});

/** A local HTTP endpoint answering with the queued statuses (then 200) and keeping the bodies. */
async function webhookSink(statuses: number[]): Promise<{ url: string; bodies: unknown[]; close: () => Promise<void> }> {
  const bodies: unknown[] = [];
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      bodies.push({ contentType: request.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown });
      const status = statuses.shift() ?? 200;
      response.writeHead(status, { 'content-type': 'text/plain' });
      response.end(status === 200 ? 'ok' : 'boom');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/hooks/secret-token`, bodies, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('webhook notifier', () => {
  it('posts the notice as JSON; a 500 is a failure that the outbox retries', async () => {
    const hook = await webhookSink([500]);
    try {
      const outbox = await Outbox.open(await tempDir());
      const webhook = createWebhookNotifier({ url: hook.url, timeoutMs: 5_000 });
      const t0 = Date.parse('2025-03-01T12:00:00Z');
      await outbox.enqueue(notice('firing', 1, 'thread-hook'));
      const first = await outbox.deliverDue(webhook.send, new Date(t0));
      expect(first.failed[0]?.error).toBe(`webhook ${new URL(hook.url).origin}: HTTP 500 Internal Server Error: boom`);
      expect(first.failed[0]?.error).not.toContain('secret-token');
      expect((await outbox.deliverDue(webhook.send, new Date(t0 + 30_000))).sent).toEqual(['thread-hook.1']);
      expect((await outbox.deliverDue(webhook.send, new Date(t0 + 90_000))).sent).toEqual([]);
      expect(hook.bodies).toHaveLength(2);
      expect(hook.bodies[1]).toMatchObject({
        contentType: 'application/json',
        body: { id: 'thread-hook.1', threadId: 'thread-hook', kind: 'firing', createdAt: notice('firing', 1, 'thread-hook').createdAt.toISOString(), alerts: [{ checkId: 'lock_wait', context: { lockTree: [lockTreeLine, '  4343 app billing (waiting 312 s)'] } }] },
      });
    } finally {
      await hook.close();
    }
  });

  it('posts a Slack-compatible payload with the context', async () => {
    const hook = await webhookSink([]);
    try {
      await createWebhookNotifier({ url: hook.url, format: 'slack' }).send(notice('firing', 1, 'thread-slack'));
      const received = hook.bodies[0] as { body: { text: string; blocks: { type: string; text?: { text: string } }[] } };
      expect(received.body.text).toBe('[CRITICAL] prod: lock_wait');
      expect(received.body.blocks[0]).toEqual({ type: 'header', text: { type: 'plain_text', text: '[CRITICAL] prod: lock_wait' } });
      const section = received.body.blocks[1]?.text?.text ?? '';
      expect(section).toContain(lockTreeLine);
      expect(section).toContain('pid 4343');
      expect(section).toContain('&lt;b&gt;&amp;');
    } finally {
      await hook.close();
    }
  });

  it('fails with a clear message when nothing listens', async () => {
    const hook = await webhookSink([]);
    await hook.close();
    await expect(createWebhookNotifier({ url: hook.url, timeoutMs: 2_000 }).send(notice())).rejects.toThrow(/^webhook http:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });
});

describe('ndjson notifier', () => {
  it('writes one JSON line per notice', async () => {
    const stream = new PassThrough();
    const chunks: string[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
    const ndjson = createNdjsonNotifier(stream);
    await ndjson.send(notice('firing', 1, 'thread-nd'));
    await ndjson.send(notice('resolved', 2, 'thread-nd'));
    const lines = chunks.join('').split('\n');
    expect(lines.at(-1)).toBe('');
    const parsed = lines.slice(0, -1).map((line) => JSON.parse(line) as { id: string; kind: string });
    expect(parsed.map((item) => [item.id, item.kind])).toEqual([
      ['thread-nd.1', 'firing'],
      ['thread-nd.2', 'resolved'],
    ]);
  });
});
