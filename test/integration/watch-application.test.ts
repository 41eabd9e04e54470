/**
 * Application health under the watcher: an HTTP endpoint of the cluster's application that goes
 * down is mailed (critical after two failures in a row) with its URL and error, and resolved when
 * it answers again; a custom SQL check runs on the real server beside it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { probeIds } from '../../src/probes/index.js';
import type { Watcher } from '../../src/watch/watcher.js';
import { waitFor } from '../support/cluster.js';
import { MailSink } from '../support/smtp.js';
import { alertEvents, startWatcher } from '../support/watch.js';

const dsn = process.env['PGWARDEN_TEST_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const sink = new MailSink();
const running: Watcher[] = [];
let stateDir: string;
let app: Server;
let appPort: number;
let healthy = true;

beforeAll(async () => {
  await sink.start();
  stateDir = await mkdtemp(join(tmpdir(), 'pgwarden-watch-app-'));
  app = createServer((_request, response) => {
    response.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' });
    response.end(healthy ? 'ok' : 'database unavailable');
  });
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
});

afterAll(async () => {
  await Promise.allSettled(running.map((watcher) => watcher.stop()));
  await new Promise((resolve) => app.close(resolve));
  await sink.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe('application health under pgwarden --watch', () => {
  it('an endpoint that goes down is a critical mail naming the URL and status; it resolves when it answers again', { timeout: 60_000 }, async () => {
    const config = parseConfig(
      {
        clusters: [{ name: 'shop', nodes: [{ name: 'db1', dsn }] }],
        health: {
          http: [{ name: 'api', url: `http://127.0.0.1:${appPort}/healthz` }],
          sql: [{ name: 'one-row', query: 'select 5', warning: 1, critical: 0, direction: 'below' }],
        },
        alerting: {
          state_dir: stateDir,
          email: { host: '127.0.0.1', port: sink.port, security: 'none', from: 'pgwarden@example.com' },
          teams: [{ name: 'web', email: ['web@example.com'], checks: ['http-endpoint', 'custom-sql'] }],
          timing: { group_wait_s: 0, group_interval_s: 1, failing_evaluations: 2 },
        },
      },
      'watch-application.test.json',
      probeIds,
    );
    const run = await startWatcher(config);
    running.push(run.watcher);

    // Healthy first: the custom SQL check and the endpoint are evaluated, nothing fires.
    await waitFor('several evaluations of the cluster', () => Promise.resolve(run.watcher.evaluationsStepped('shop') >= 6), { timeoutMs: 20_000 });
    expect(alertEvents(run.lines, { check: 'http-endpoint' })).toEqual([]);
    expect(alertEvents(run.lines, { check: 'custom-sql' })).toEqual([]);

    healthy = false;
    await waitFor('the critical http-endpoint mail', () => Promise.resolve(sink.mails.some((mail) => mail.subject === '[CRITICAL] shop: http-endpoint')), { timeoutMs: 20_000 });
    const critical = sink.mails.find((mail) => mail.subject === '[CRITICAL] shop: http-endpoint');
    expect(critical?.text).toContain(`http://127.0.0.1:${appPort}/healthz`);
    expect(critical?.text).toContain('503');
    const firing = alertEvents(run.lines, { check: 'http-endpoint', kind: 'firing' })[0];
    expect(firing?.['node']).toBe('app');
    expect(firing?.['subject']).toBe('endpoint api');

    healthy = true;
    await waitFor('the resolved mail', () => Promise.resolve(sink.mails.some((mail) => mail.subject === '[RESOLVED] shop: http-endpoint')), { timeoutMs: 20_000 });
    expect(sink.mails.filter((mail) => mail.subject === '[CRITICAL] shop: http-endpoint')).toHaveLength(1);
    expect(alertEvents(run.lines, { check: 'custom-sql' })).toEqual([]);
  });
});
