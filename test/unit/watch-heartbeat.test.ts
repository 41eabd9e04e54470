import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { probeIds } from '../../src/probes/index.js';
import { aliveNotices, redactUrl } from '../../src/watch/heartbeat.js';
import { intervalsFromEnv } from '../../src/watch/watcher.js';
import { team } from '../support/alerts-clock.js';

const file = 'heartbeat.json';
const parse = (heartbeat: unknown): unknown => parseConfig({ alerting: { heartbeat } } as never, file, probeIds).alerting.heartbeat;

describe('alerting.heartbeat', () => {
  it('is validated: url, every_s (default 60), digest_every_h (optional)', () => {
    expect(parse({ url: 'https://hc-ping.com/abc' })).toEqual({ url: 'https://hc-ping.com/abc', everyMs: 60_000, digestEveryMs: undefined });
    expect(parse({ url: 'https://hc-ping.com/abc', every_s: 30, digest_every_h: 24 })).toEqual({ url: 'https://hc-ping.com/abc', everyMs: 30_000, digestEveryMs: 86_400_000 });
    expect(() => parse({ url: 'hc-ping.com/secret-uuid' })).toThrow(`${file}: alerting.heartbeat.url: not an http or https URL`);
    expect(() => parse({ url: 'hc-ping.com/secret-uuid' })).not.toThrow(/secret-uuid/);
    expect(() => parse({ url: 'https://x.example.com/', every_s: 0 })).toThrow('alerting.heartbeat.every_s: expected a whole number from 1 to 86400');
    expect(() => parse({ url: 'https://x.example.com/', every: 5 })).toThrow('alerting.heartbeat.every: unknown key');
  });

  it('hides the token of the URL in logs', () => {
    expect(redactUrl('https://hc-ping.com/0f1e2d3c-aaaa-bbbb')).toBe('https://hc-ping.com/***');
    expect(redactUrl('https://push.example.com/?token=abc')).toBe('https://push.example.com/***');
    expect(redactUrl('https://push.example.com/')).toBe('https://push.example.com/');
  });

  it('the alive notice goes to every channel of every team, with one id per period', () => {
    const teams = [team(), team({ id: 'ops', channels: ['email', 'webhook:chat'] })];
    const figures = { clusters: 3, nodes: 5, firing: 1, host: 'watch1' };
    const now = new Date('2026-03-02T10:00:00Z');
    const notices = aliveNotices(teams, figures, 86_400_000, now);
    expect(notices.map((item) => [item.team, item.channel])).toEqual([['dba', 'email'], ['ops', 'email'], ['ops', 'webhook:chat']]);
    expect(notices[0]).toMatchObject({ kind: 'digest', severity: 'ok', subject: '[ALIVE] pgwarden is alive: 3 clusters, 1 alert firing', alerts: [] });
    expect(notices[0]?.body[1]).toBe('The watcher on watch1 checks 5 nodes; this notice comes every 24 hours (alerting.heartbeat.digest_every_h).');
    expect(aliveNotices(teams, figures, 86_400_000, new Date('2026-03-02T23:00:00Z')).map((item) => item.id)).toEqual(notices.map((item) => item.id));
    expect(aliveNotices(teams, figures, 86_400_000, new Date('2026-03-03T00:00:01Z'))[0]?.id).not.toBe(notices[0]?.id);
  });

  it('PGWARDEN_WATCH_INTERVALS_MS shortens the tick and the cadences; a bad value is a user error', () => {
    expect(intervalsFromEnv({})).toEqual({});
    expect(intervalsFromEnv({ PGWARDEN_WATCH_INTERVALS_MS: 'tick=250,fast=500' })).toEqual({ tickMs: 250, cadenceMs: { fast: 500 } });
    expect(() => intervalsFromEnv({ PGWARDEN_WATCH_INTERVALS_MS: 'tick=fast' })).toThrow('PGWARDEN_WATCH_INTERVALS_MS: "tick=fast" is not name=milliseconds');
    expect(() => intervalsFromEnv({ PGWARDEN_WATCH_INTERVALS_MS: 'often=500' })).toThrow('unknown interval "often"');
  });
});
