import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultTiming } from '../../src/alerts/grouping.js';
import { defaultStateOptions } from '../../src/alerts/state.js';
import { defaultStateDir, engineConfigFrom, thresholdOverridesFor } from '../../src/config/alerting.js';
import type { Json } from '../../src/config/load.js';
import { parseConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const probes = ['server', 'activity'];
const file = '/etc/pgwarden.json';
const clusters = [{ name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://monitor@db1/postgres' }] }];

function parse(alerting: Json): ReturnType<typeof parseConfig> {
  return parseConfig({ clusters, alerting }, file, probes);
}

function errorOf(alerting: Json): UserError {
  try {
    parse(alerting);
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

const email = { host: 'smtp.example.com', port: 587, security: 'starttls', from: 'pgwarden@example.com' };

const full: Json = {
  state_dir: '/var/lib/pgwarden',
  email: { ...email, user: 'pgwarden', password_env: 'PGWARDEN_SMTP_PASSWORD', reply_to: 'dba@example.com' },
  webhooks: [
    { name: 'ops-slack', url: 'https://hooks.slack.com/services/T0/B0/xyz', format: 'slack', timeout_ms: 5000 },
    { name: 'pager', url: 'http://pager.internal:8080/hook' },
  ],
  ndjson: true,
  teams: [
    {
      name: 'dba',
      email: ['dba@example.com', 'alice@example.com'],
      webhooks: ['ops-slack'],
      min_severity: 'warning',
      checks: ['replication-*', 'lock-waits'],
      clusters: ['prod'],
      quiet_hours: { start: '22:00', end: '07:00', time_zone: 'Europe/Paris', critical_overrides: true },
      delivery: 'immediate',
      escalate_to: 'oncall',
      escalate_after_minutes: 15,
    },
    { name: 'oncall', webhooks: ['pager'], min_severity: 'critical', delivery: 'digest', digest_minutes: 30 },
  ],
  timing: { group_wait_s: 10, group_interval_s: 120, repeat_interval_h: 2, failing_evaluations: 3, cooldown_minutes: 20 },
  rate_limit: { notices: 5, per_minutes: 10 },
  thresholds: {
    '*': { 'idle-in-transaction': { warning_seconds: 120 } },
    prod: { 'idle-in-transaction': { criticalSeconds: 600 }, 'long-running-query': { warning_seconds: 60 } },
  },
};

describe('alerting config', () => {
  it('parses a full example into the engine-ready form', () => {
    const { alerting } = parse(full);
    expect(alerting).toEqual({
      stateDir: '/var/lib/pgwarden',
      email: {
        host: 'smtp.example.com',
        port: 587,
        security: 'starttls',
        from: 'pgwarden@example.com',
        replyTo: 'dba@example.com',
        auth: { user: 'pgwarden', passwordEnv: 'PGWARDEN_SMTP_PASSWORD' },
      },
      webhooks: [
        { name: 'ops-slack', url: 'https://hooks.slack.com/services/T0/B0/xyz', format: 'slack', timeoutMs: 5000 },
        { name: 'pager', url: 'http://pager.internal:8080/hook' },
      ],
      ndjson: true,
      teams: [
        {
          id: 'dba',
          members: ['dba@example.com', 'alice@example.com'],
          channels: ['email', 'webhook:ops-slack'],
          minSeverity: 'warning',
          checks: ['replication-*', 'lock-waits'],
          clusters: ['prod'],
          quietHours: { from: '22:00', to: '07:00', timeZone: 'Europe/Paris', criticalOverrides: true },
          delivery: { mode: 'immediate' },
          escalation: { toTeam: 'oncall', afterMs: 15 * 60_000 },
        },
        { id: 'oncall', members: [], channels: ['webhook:pager'], minSeverity: 'critical', delivery: { mode: 'digest', everyMs: 30 * 60_000 } },
      ],
      timing: { groupWaitMs: 10_000, groupIntervalMs: 120_000, repeatIntervalMs: 2 * 3_600_000 },
      failingEvaluations: 3,
      cooldownMs: 20 * 60_000,
      rateLimit: { limit: 5, windowMs: 10 * 60_000 },
      thresholds: {
        '*': { 'idle-in-transaction': { warningSeconds: 120 } },
        prod: { 'idle-in-transaction': { criticalSeconds: 600 }, 'long-running-query': { warningSeconds: 60 } },
      },
    });
  });

  it('maps to the engine config and merges threshold overrides per cluster', () => {
    const { alerting } = parse(full);
    const engine = engineConfigFrom(alerting);
    expect(engine.state).toEqual({ ...defaultStateOptions, failuresToFire: 3 });
    expect(engine.timing).toEqual(alerting.timing);
    expect(engine.teams).toBe(alerting.teams);
    expect(engine.cooldownMs).toBe(20 * 60_000);
    expect(engine.rateLimits).toEqual({
      email: { limit: 5, windowMs: 600_000 },
      'webhook:ops-slack': { limit: 5, windowMs: 600_000 },
      'webhook:pager': { limit: 5, windowMs: 600_000 },
    });
    expect(thresholdOverridesFor(alerting, 'prod', 'idle-in-transaction')).toEqual({ warningSeconds: 120, criticalSeconds: 600 });
    expect(thresholdOverridesFor(alerting, 'staging', 'idle-in-transaction')).toEqual({ warningSeconds: 120 });
    expect(thresholdOverridesFor(alerting, 'staging', 'bloat')).toEqual({});
  });

  it('defaults to no channels, no teams and the engine timings', () => {
    const config = parseConfig({}, file, probes);
    expect(config.alerting).toEqual({
      stateDir: defaultStateDir(),
      email: undefined,
      webhooks: [],
      ndjson: false,
      teams: [],
      timing: defaultTiming,
      failingEvaluations: defaultStateOptions.failuresToFire,
      cooldownMs: 0,
      rateLimit: undefined,
      thresholds: {},
    });
    expect(engineConfigFrom(config.alerting).rateLimits).toEqual({});
    expect(parse({ teams: [{ name: 'ops', webhooks: ['w'] }], webhooks: [{ name: 'w', url: 'https://x.example.com/' }] }).alerting.teams[0])
      .toEqual({ id: 'ops', members: [], channels: ['webhook:w'], minSeverity: 'warning', delivery: { mode: 'immediate' } });
  });

  it('puts the default state directory under XDG_STATE_HOME, else ~/.local/state', () => {
    expect(defaultStateDir({ XDG_STATE_HOME: '/srv/state' }, '/home/a')).toBe('/srv/state/pgwarden');
    expect(defaultStateDir({ XDG_STATE_HOME: 'relative' }, '/home/a')).toBe('/home/a/.local/state/pgwarden');
    expect(defaultStateDir({}, '/home/a')).toBe('/home/a/.local/state/pgwarden');
  });

  const cases: readonly { name: string; alerting: Json; message: string; hint: RegExp }[] = [
    { name: 'an unknown key', alerting: { teamz: [] }, message: 'alerting.teamz: unknown key', hint: /known keys here/ },
    { name: 'a password in the file', alerting: { email: { ...email, user: 'u', password: 'hunter2' } }, message: 'alerting.email.password: a password is never read from the config file', hint: /password_env.*password_file/ },
    { name: 'both password sources', alerting: { email: { ...email, user: 'u', password_env: 'P', password_file: '/p' } }, message: 'alerting.email.password_file: both password_env and password_file are set', hint: /only one/ },
    { name: 'a user without a password source', alerting: { email: { ...email, user: 'u' } }, message: 'alerting.email.user: a user is given but no password source', hint: /password_env/ },
    { name: 'a bad security', alerting: { email: { ...email, security: 'ssl' } }, message: 'alerting.email.security: expected one of tls, starttls, none, found "ssl"', hint: /"tls" or "starttls" or "none"/ },
    { name: 'a bad from address', alerting: { email: { ...email, from: 'pgwarden' } }, message: 'alerting.email.from: "pgwarden" does not look like an email address', hint: /name@example.com/ },
    { name: 'a bad port', alerting: { email: { ...email, port: 70000 } }, message: 'alerting.email.port: expected a whole number from 1 to 65535', hint: /range/ },
    { name: 'a webhook URL that is not http', alerting: { webhooks: [{ name: 'w', url: 'ftp://secret@x/' }] }, message: 'alerting.webhooks[0].url: not an http or https URL', hint: /https:/ },
    { name: 'a duplicate webhook', alerting: { webhooks: [{ name: 'w', url: 'https://a.example.com' }, { name: 'w', url: 'https://b.example.com' }] }, message: 'alerting.webhooks[1].name: duplicate webhook name "w"', hint: /own name/ },
    { name: 'a bad webhook format', alerting: { webhooks: [{ name: 'w', url: 'https://a.example.com', format: 'teams' }] }, message: 'alerting.webhooks[0].format: expected one of json, slack', hint: /"json" or "slack"/ },
    { name: 'a team referencing an undefined webhook', alerting: { webhooks: [{ name: 'w', url: 'https://a.example.com' }], teams: [{ name: 'dba', webhooks: ['slack'] }] }, message: 'alerting.teams[0].webhooks[0]: no webhook named "slack"', hint: /use one of w/ },
    { name: 'addresses without an email channel', alerting: { teams: [{ name: 'dba', email: ['dba@example.com'] }] }, message: 'alerting.teams[0].email: addresses are given but no email channel is configured', hint: /add alerting.email/ },
    { name: 'a rough bad address', alerting: { email, teams: [{ name: 'dba', email: ['dba at example.com'] }] }, message: 'alerting.teams[0].email[0]: "dba at example.com" does not look like an email address', hint: /name@example.com/ },
    { name: 'a team with no channel', alerting: { email, teams: [{ name: 'dba' }] }, message: 'alerting.teams[0]: team "dba" has no email addresses and no webhooks', hint: /add alerting.teams\[0\].email/ },
    { name: 'an undefined escalation team', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], escalate_to: 'oncall' }] }, message: 'alerting.teams[0].escalate_to: no team named "oncall"', hint: /use one of dba/ },
    { name: 'an escalation delay without a team', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], escalate_after_minutes: 5 }] }, message: 'alerting.teams[0].escalate_after_minutes: no escalate_to team', hint: /escalate_to/ },
    { name: 'a duplicate team', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'] }, { name: 'dba', email: ['b@example.com'] }] }, message: 'alerting.teams[1].name: duplicate team name "dba"', hint: /own name/ },
    { name: 'a bad severity', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], min_severity: 'error' }] }, message: 'alerting.teams[0].min_severity: expected one of info, warning, critical', hint: /"critical"/ },
    { name: 'digest minutes with immediate delivery', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], digest_minutes: 10 }] }, message: 'alerting.teams[0].digest_minutes: only used with "delivery": "digest"', hint: /"digest"/ },
    { name: 'a bad quiet-hours time', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], quiet_hours: { start: '24:00', end: '07:00', time_zone: 'UTC' } }] }, message: 'alerting.teams[0].quiet_hours.start: "24:00" is not a time of day', hint: /HH:MM/ },
    { name: 'an unknown time zone', alerting: { email, teams: [{ name: 'dba', email: ['a@example.com'], quiet_hours: { start: '22:00', end: '07:00', time_zone: 'Europe/Pariss' } }] }, message: 'alerting.teams[0].quiet_hours.time_zone: unknown time zone "Europe/Pariss"', hint: /IANA/ },
    { name: 'a relative state_dir', alerting: { state_dir: 'state' }, message: 'alerting.state_dir: "state" is a relative path', hint: /absolute/ },
    { name: 'a bad timing', alerting: { timing: { repeat_interval_h: 0 } }, message: 'alerting.timing.repeat_interval_h: expected a whole number from 1 to 720', hint: /range/ },
    { name: 'a bad rate limit', alerting: { rate_limit: { notices: 0 } }, message: 'alerting.rate_limit.notices: expected a whole number from 1 to 100000', hint: /range/ },
    { name: 'an unknown check id', alerting: { thresholds: { '*': { 'idle-in-trans': { warning_seconds: 1 } } } }, message: 'alerting.thresholds.*.idle-in-trans: no check "idle-in-trans"', hint: /docs\/alerts.md/ },
    { name: 'an unknown threshold name', alerting: { thresholds: { prod: { 'idle-in-transaction': { warn_seconds: 1 } } } }, message: 'alerting.thresholds.prod.idle-in-transaction.warn_seconds: check idle-in-transaction has no threshold "warnSeconds"', hint: /warningSeconds, criticalSeconds/ },
    { name: 'a threshold that is not a number', alerting: { thresholds: { prod: { 'idle-in-transaction': { warning_seconds: '5m' } } } }, message: 'alerting.thresholds.prod.idle-in-transaction.warning_seconds: check idle-in-transaction: threshold "warningSeconds" must be a number', hint: /with a number/ },
    { name: 'an unknown cluster in thresholds', alerting: { thresholds: { staging: {} } }, message: 'alerting.thresholds.staging: no cluster named "staging"', hint: /"\*" for every cluster or one of prod/ },
  ];

  for (const testCase of cases) {
    it(`refuses ${testCase.name} with file: key: problem and a hint`, () => {
      const error = errorOf(testCase.alerting);
      expect(error.message.startsWith(`${file}: ${testCase.message}`)).toBe(true);
      expect(error.hint).toMatch(testCase.hint);
    });
  }

  it('never echoes a webhook URL or a password in an error', () => {
    expect(errorOf({ webhooks: [{ name: 'w', url: 'ftp://token-123@x/' }] }).message).not.toContain('token-123');
    const error = errorOf({ email: { ...email, user: 'u', password: 'hunter2' } });
    expect(`${error.message} ${error.hint ?? ''}`).not.toContain('hunter2');
  });

  it('parses the example of docs/configuration.md', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const example = /## Example\s+```json\n([\s\S]*?)```/.exec(doc);
    expect(example).not.toBeNull();
    const config = parseConfig(JSON.parse(example?.[1] ?? 'null') as Json, 'docs/configuration.md', ['tables', 'statements']);
    expect(config.alerting.teams.map((team) => [team.id, team.channels])).toEqual([['dba', ['email', 'webhook:ops-slack']], ['oncall', ['email']]]);
    expect(config.alerting.thresholds).toEqual({ prod: { 'idle-in-transaction': { warningSeconds: 120 } } });
  });

  it('accepts the top-level alerting key next to the other settings', () => {
    expect(parseConfig({ refresh_ms: 1000, alerting: { ndjson: true } }, file, probes).alerting.ndjson).toBe(true);
  });
});
