/**
 * The `alerting` section of the config file: channels (email, webhooks, NDJSON), teams and their
 * routing preferences, engine timings, rate limits and per-cluster threshold overrides. Validated
 * with the loader's Validator, so every error names the file, the key and the fix; a password is
 * never accepted in the file itself.
 */
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { defaultTiming } from '../alerts/grouping.js';
import { defaultStateOptions } from '../alerts/state.js';
import type { EmailConfig, SmtpSecurity } from '../alerts/notifiers/email.js';
import type { WebhookConfig } from '../alerts/notifiers/webhook.js';
import type { AlertSeverity, Delivery, EngineConfig, GroupTiming, QuietHours, RateLimit, Team } from '../alerts/types.js';
import { checkById, resolveThresholds } from '../checks/catalogue.js';
import type { Json, JsonObject, Validator } from './load.js';

/** A webhook channel with the name teams refer to it by. */
export interface NamedWebhook extends WebhookConfig {
  readonly name: string;
}

/** Threshold overrides: cluster name (or "*" for every cluster) → check id → threshold name → value. */
export type ThresholdOverrides = Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, number>>>>>>;

/** `alerting.heartbeat`: a dead-man's-switch URL pinged after each good round, and an optional "alive" notice. */
export interface HeartbeatConfig {
  /** GET after each successful round, at most every `everyMs` (e.g. https://hc-ping.com/<uuid>). */
  readonly url: string;
  readonly everyMs: number;
  /** A "pgwarden is alive" notice to every team's channels this often; undefined: none. */
  readonly digestEveryMs: number | undefined;
}

/** The validated alerting section. */
export interface AlertingConfig {
  /** Where the watcher keeps the engine state and the outbox. */
  readonly stateDir: string;
  readonly email: EmailConfig | undefined;
  readonly webhooks: readonly NamedWebhook[];
  /** Also write every notice as one NDJSON line on stdout. */
  readonly ndjson: boolean;
  /** In the engine's own shape; channel ids are emailChannel and webhookChannel(name). */
  readonly teams: readonly Team[];
  readonly timing: GroupTiming;
  /** Failing evaluations in a row before an alert fires. */
  readonly failingEvaluations: number;
  /** Minimum time between two notices about the same alert (0: off); held notices are counted. */
  readonly cooldownMs: number;
  /** Applied to each channel separately; undefined: no limit. */
  readonly rateLimit: RateLimit | undefined;
  readonly thresholds: ThresholdOverrides;
  /** undefined: no heartbeat. */
  readonly heartbeat: HeartbeatConfig | undefined;
}

/** The channel id of the email channel in Team.channels. */
export const emailChannel = 'email';

/** The channel id of a named webhook in Team.channels. */
export function webhookChannel(name: string): string {
  return `webhook:${name}`;
}

/** $XDG_STATE_HOME/pgwarden, or ~/.local/state/pgwarden (a relative XDG_STATE_HOME is ignored, per the spec). */
export function defaultStateDir(env: Readonly<Record<string, string | undefined>> = process.env, home: string = homedir()): string {
  const state = env['XDG_STATE_HOME'];
  const base = state !== undefined && state !== '' && isAbsolute(state) ? state : join(home, '.local', 'state');
  return join(base, 'pgwarden');
}

/** The section as it is when the file has none: no channels, no teams, the engine's default timings. */
export function defaultAlerting(): AlertingConfig {
  return {
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
    heartbeat: undefined,
  };
}

/** The engine's configuration for these teams, timings and rate limits. */
export function engineConfigFrom(alerting: AlertingConfig): EngineConfig {
  const channels = [
    ...(alerting.email === undefined ? [] : [emailChannel]),
    ...alerting.webhooks.map((hook) => webhookChannel(hook.name)),
  ];
  const rateLimits: Record<string, RateLimit> = {};
  if (alerting.rateLimit !== undefined) for (const channel of channels) rateLimits[channel] = alerting.rateLimit;
  return {
    state: { ...defaultStateOptions, failuresToFire: alerting.failingEvaluations },
    timing: alerting.timing,
    teams: alerting.teams,
    rateLimits,
    cooldownMs: alerting.cooldownMs,
  };
}

/** The overrides for one check on one cluster ("*" first, then the cluster's own), for resolveThresholds. */
export function thresholdOverridesFor(alerting: AlertingConfig, cluster: string, checkId: string): Readonly<Record<string, number>> {
  return { ...alerting.thresholds['*']?.[checkId], ...alerting.thresholds[cluster]?.[checkId] };
}

const severities: readonly AlertSeverity[] = ['info', 'warning', 'critical'];
const securities: readonly SmtpSecurity[] = ['tls', 'starttls', 'none'];
// Rough on purpose: one @, no spaces, a dot in the domain; the SMTP server has the last word.
const addressPattern = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
const clockPattern = /^([01]\d|2[0-3]):([0-5]\d)$/;

function oneOf<T extends string>(v: Validator, value: Json | undefined, key: string, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    v.fail(key, `expected one of ${allowed.join(', ')}, found ${JSON.stringify(value ?? null)}`, `set ${key} to ${allowed.map((a) => `"${a}"`).join(' or ')}`);
  }
  return value as T;
}

function address(v: Validator, value: Json | undefined, key: string): string {
  const text = v.string(value, key, 'dba@example.com');
  if (!addressPattern.test(text.trim())) v.fail(key, `"${text}" does not look like an email address`, 'write it as name@example.com');
  return text.trim();
}

function strings(v: Validator, value: Json | undefined, key: string, example: string): string[] {
  return v.array(value, key).map((item, index) => v.string(item, `${key}[${index}]`, example));
}

function stateDirAt(v: Validator, value: Json | undefined): string {
  const text = v.string(value, 'alerting.state_dir', '/var/lib/pgwarden');
  if (text.startsWith('~/')) return join(homedir(), text.slice(2));
  if (!isAbsolute(text)) v.fail('alerting.state_dir', `"${text}" is a relative path`, 'give an absolute path (or one starting with ~/), e.g. "/var/lib/pgwarden"');
  return text;
}

function parseEmail(v: Validator, value: Json | undefined): EmailConfig {
  const key = 'alerting.email';
  // Checked before the generic unknown-key error so that the message says why, not just "unknown".
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'password' in value) {
    v.fail(
      `${key}.password`,
      'a password is never read from the config file',
      `remove it and set ${key}.password_env to the name of an environment variable holding it, or ${key}.password_file to a file only pgwarden can read`,
    );
  }
  const raw = v.object(value, key, ['host', 'port', 'security', 'user', 'password_env', 'password_file', 'from', 'reply_to']);
  const host = v.string(raw['host'], `${key}.host`, 'smtp.example.com');
  const port = v.integer(raw['port'], `${key}.port`, 1, 65_535);
  const security = oneOf(v, raw['security'], `${key}.security`, securities);
  const from = address(v, raw['from'], `${key}.from`);
  const replyTo = raw['reply_to'] === undefined ? undefined : address(v, raw['reply_to'], `${key}.reply_to`);
  const user = raw['user'] === undefined ? undefined : v.string(raw['user'], `${key}.user`, 'pgwarden');
  const passwordEnv = raw['password_env'] === undefined ? undefined : v.string(raw['password_env'], `${key}.password_env`, 'PGWARDEN_SMTP_PASSWORD');
  const passwordFile = raw['password_file'] === undefined ? undefined : v.string(raw['password_file'], `${key}.password_file`, '/etc/pgwarden/smtp-password');
  if (passwordEnv !== undefined && passwordFile !== undefined) {
    v.fail(`${key}.password_file`, 'both password_env and password_file are set', 'keep only one of them');
  }
  if (user === undefined && (passwordEnv !== undefined || passwordFile !== undefined)) {
    v.fail(`${key}.user`, 'a password source is given but no user', `set ${key}.user to the SMTP login`);
  }
  if (user !== undefined && passwordEnv === undefined && passwordFile === undefined) {
    v.fail(`${key}.user`, 'a user is given but no password source', `set ${key}.password_env or ${key}.password_file (or remove user for a relay without authentication)`);
  }
  const auth = user === undefined
    ? undefined
    : { user, ...(passwordEnv === undefined ? {} : { passwordEnv }), ...(passwordFile === undefined ? {} : { passwordFile }) };
  return { host, port, security, from, ...(auth === undefined ? {} : { auth }), ...(replyTo === undefined ? {} : { replyTo }) };
}

function parseWebhooks(v: Validator, value: Json | undefined): NamedWebhook[] {
  const names = new Set<string>();
  return v.array(value, 'alerting.webhooks').map((item, index) => {
    const key = `alerting.webhooks[${index}]`;
    const raw = v.object(item, key, ['name', 'url', 'format', 'timeout_ms']);
    const name = v.string(raw['name'], `${key}.name`, 'ops-slack');
    if (names.has(name)) v.fail(`${key}.name`, `duplicate webhook name "${name}"`, 'give each webhook its own name');
    names.add(name);
    const url = v.string(raw['url'], `${key}.url`, 'https://hooks.example.com/pgwarden');
    let protocol: string | undefined;
    try {
      protocol = new URL(url).protocol;
    } catch {
      protocol = undefined;
    }
    // The URL is not echoed: webhook URLs often carry their secret.
    if (protocol !== 'http:' && protocol !== 'https:') v.fail(`${key}.url`, 'not an http or https URL', 'write the full URL, e.g. "https://hooks.example.com/pgwarden"');
    const format = raw['format'] === undefined ? undefined : oneOf(v, raw['format'], `${key}.format`, ['json', 'slack'] as const);
    const timeoutMs = raw['timeout_ms'] === undefined ? undefined : v.integer(raw['timeout_ms'], `${key}.timeout_ms`, 100, 600_000);
    return { name, url, ...(format === undefined ? {} : { format }), ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  });
}

function parseQuietHours(v: Validator, value: Json | undefined, key: string): QuietHours {
  const raw = v.object(value, key, ['start', 'end', 'time_zone', 'critical_overrides']);
  const clock = (name: string): string => {
    const text = v.string(raw[name], `${key}.${name}`, '22:00');
    if (!clockPattern.test(text)) v.fail(`${key}.${name}`, `"${text}" is not a time of day`, 'write it as HH:MM on a 24-hour clock, e.g. "07:30"');
    return text;
  };
  const from = clock('start');
  const to = clock('end');
  const timeZone = v.string(raw['time_zone'], `${key}.time_zone`, 'Europe/Paris');
  try {
    new Intl.DateTimeFormat('en-GB', { timeZone });
  } catch {
    v.fail(`${key}.time_zone`, `unknown time zone "${timeZone}"`, 'use an IANA zone name such as "Europe/Paris", "America/New_York" or "UTC"');
  }
  const criticalOverrides = raw['critical_overrides'] === undefined ? true : v.boolean(raw['critical_overrides'], `${key}.critical_overrides`);
  return { from, to, timeZone, criticalOverrides };
}

interface TeamDraft {
  readonly team: Team;
  readonly key: string;
  readonly escalateTo: string | undefined;
}

function parseTeam(v: Validator, value: Json | undefined, key: string, email: EmailConfig | undefined, webhooks: ReadonlySet<string>): TeamDraft {
  const raw = v.object(value, key, [
    'name', 'email', 'webhooks', 'min_severity', 'checks', 'clusters', 'quiet_hours', 'delivery', 'digest_minutes', 'escalate_to', 'escalate_after_minutes',
  ]);
  const id = v.string(raw['name'], `${key}.name`, 'dba');
  const members = raw['email'] === undefined ? [] : v.array(raw['email'], `${key}.email`).map((item, index) => address(v, item, `${key}.email[${index}]`));
  if (members.length > 0 && email === undefined) {
    v.fail(`${key}.email`, 'addresses are given but no email channel is configured', 'add alerting.email (host, port, security, from), or remove these addresses');
  }
  const hooks = raw['webhooks'] === undefined ? [] : strings(v, raw['webhooks'], `${key}.webhooks`, 'ops-slack');
  hooks.forEach((name, index) => {
    if (!webhooks.has(name)) {
      v.fail(
        `${key}.webhooks[${index}]`,
        `no webhook named "${name}"`,
        webhooks.size === 0 ? 'define it under alerting.webhooks first' : `use one of ${[...webhooks].join(', ')}, or define it under alerting.webhooks`,
      );
    }
  });
  const channels = [...(members.length > 0 ? [emailChannel] : []), ...hooks.map(webhookChannel)];
  if (channels.length === 0) v.fail(key, `team "${id}" has no email addresses and no webhooks`, `add ${key}.email or ${key}.webhooks, or remove the team`);
  const minSeverity = raw['min_severity'] === undefined ? 'warning' : oneOf(v, raw['min_severity'], `${key}.min_severity`, severities);
  const checks = raw['checks'] === undefined ? undefined : strings(v, raw['checks'], `${key}.checks`, 'replication-*');
  const clusters = raw['clusters'] === undefined ? undefined : strings(v, raw['clusters'], `${key}.clusters`, 'prod-*');
  const quietHours = raw['quiet_hours'] === undefined ? undefined : parseQuietHours(v, raw['quiet_hours'], `${key}.quiet_hours`);
  const mode = raw['delivery'] === undefined ? 'immediate' : oneOf(v, raw['delivery'], `${key}.delivery`, ['immediate', 'digest'] as const);
  if (mode === 'immediate' && raw['digest_minutes'] !== undefined) {
    v.fail(`${key}.digest_minutes`, 'only used with "delivery": "digest"', `set ${key}.delivery to "digest", or remove digest_minutes`);
  }
  const delivery: Delivery = mode === 'immediate'
    ? { mode }
    : { mode, everyMs: (raw['digest_minutes'] === undefined ? 60 : v.integer(raw['digest_minutes'], `${key}.digest_minutes`, 1, 10_080)) * 60_000 };
  const escalateTo = raw['escalate_to'] === undefined ? undefined : v.string(raw['escalate_to'], `${key}.escalate_to`, 'oncall');
  if (escalateTo === undefined && raw['escalate_after_minutes'] !== undefined) {
    v.fail(`${key}.escalate_after_minutes`, 'no escalate_to team', `set ${key}.escalate_to to the team that takes unacknowledged criticals`);
  }
  if (escalateTo === id) v.fail(`${key}.escalate_to`, `team "${id}" escalates to itself`, 'name another team');
  const afterMinutes = raw['escalate_after_minutes'] === undefined ? 30 : v.integer(raw['escalate_after_minutes'], `${key}.escalate_after_minutes`, 1, 10_080);
  const team: Team = {
    id,
    members,
    channels,
    minSeverity,
    delivery,
    ...(checks === undefined ? {} : { checks }),
    ...(clusters === undefined ? {} : { clusters }),
    ...(quietHours === undefined ? {} : { quietHours }),
    ...(escalateTo === undefined ? {} : { escalation: { toTeam: escalateTo, afterMs: afterMinutes * 60_000 } }),
  };
  return { team, key, escalateTo };
}

function snakeToCamel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}

function parseThresholds(v: Validator, value: Json | undefined, clusterNames: readonly string[]): ThresholdOverrides {
  const out: Record<string, Record<string, Record<string, number>>> = {};
  const raw = v.object(value, 'alerting.thresholds', Object.keys(value !== null && typeof value === 'object' ? value : {}));
  for (const [cluster, perCluster] of Object.entries(raw)) {
    const clusterKey = `alerting.thresholds.${cluster}`;
    if (cluster !== '*' && clusterNames.length > 0 && !clusterNames.includes(cluster)) {
      v.fail(clusterKey, `no cluster named "${cluster}"`, `use "*" for every cluster or one of ${clusterNames.join(', ')}`);
    }
    const checks: Record<string, Record<string, number>> = {};
    const checksRaw: JsonObject = v.object(perCluster, clusterKey, Object.keys(perCluster !== null && typeof perCluster === 'object' ? perCluster : {}));
    for (const [checkId, perCheck] of Object.entries(checksRaw)) {
      const checkKey = `${clusterKey}.${checkId}`;
      const check = checkById(checkId);
      if (check === undefined) v.fail(checkKey, `no check "${checkId}"`, 'use a check id from docs/alerts.md, e.g. "idle-in-transaction"');
      const namesRaw: JsonObject = v.object(perCheck, checkKey, Object.keys(perCheck !== null && typeof perCheck === 'object' ? perCheck : {}));
      const values: Record<string, number> = {};
      for (const [name, number] of Object.entries(namesRaw)) {
        const camel = snakeToCamel(name);
        try {
          resolveThresholds(check, { [camel]: number });
        } catch (error) {
          const known = Object.keys(check.defaults);
          v.fail(
            `${checkKey}.${name}`,
            error instanceof Error ? error.message : String(error),
            known.length === 0 ? 'remove it: this check has no thresholds' : `use one of ${known.join(', ')} with a number`,
          );
        }
        values[camel] = number as number;
      }
      checks[checkId] = values;
    }
    out[cluster] = checks;
  }
  return out;
}

function parseHeartbeat(v: Validator, value: Json | undefined): HeartbeatConfig {
  const key = 'alerting.heartbeat';
  const raw = v.object(value, key, ['url', 'every_s', 'digest_every_h']);
  const url = v.string(raw['url'], `${key}.url`, 'https://hc-ping.com/<your-check-uuid>');
  let protocol: string | undefined;
  try {
    protocol = new URL(url).protocol;
  } catch {
    protocol = undefined;
  }
  // The URL is not echoed: a heartbeat URL carries its token.
  if (protocol !== 'http:' && protocol !== 'https:') v.fail(`${key}.url`, 'not an http or https URL', 'write the full URL, e.g. "https://hc-ping.com/<your-check-uuid>"');
  const everyS = raw['every_s'] === undefined ? 60 : v.integer(raw['every_s'], `${key}.every_s`, 1, 86_400);
  const digestH = raw['digest_every_h'] === undefined ? undefined : v.integer(raw['digest_every_h'], `${key}.digest_every_h`, 1, 720);
  return { url, everyMs: everyS * 1000, digestEveryMs: digestH === undefined ? undefined : digestH * 3_600_000 };
}

/**
 * Validates the `alerting` section (undefined: the defaults). Cluster names, when the file
 * declares clusters, are used to catch a misspelt cluster in `thresholds`. `file` is not read:
 * the Validator already puts it in every message, but callers pass it as for the other sections.
 */
export function parseAlerting(v: Validator, value: Json | undefined, file: string, clusterNames: readonly string[] = []): AlertingConfig {
  const defaults = defaultAlerting();
  if (value === undefined) return defaults;
  const raw = v.object(value, 'alerting', ['state_dir', 'email', 'webhooks', 'ndjson', 'teams', 'timing', 'rate_limit', 'thresholds', 'heartbeat']);
  const email = raw['email'] === undefined ? undefined : parseEmail(v, raw['email']);
  const webhooks = raw['webhooks'] === undefined ? [] : parseWebhooks(v, raw['webhooks']);
  const hookNames = new Set(webhooks.map((hook) => hook.name));
  const drafts = raw['teams'] === undefined
    ? []
    : v.array(raw['teams'], 'alerting.teams').map((item, index) => parseTeam(v, item, `alerting.teams[${index}]`, email, hookNames));
  const teamNames = new Set<string>();
  for (const draft of drafts) {
    if (teamNames.has(draft.team.id)) v.fail(`${draft.key}.name`, `duplicate team name "${draft.team.id}"`, 'give each team its own name');
    teamNames.add(draft.team.id);
  }
  for (const draft of drafts) {
    if (draft.escalateTo !== undefined && !teamNames.has(draft.escalateTo)) {
      v.fail(`${draft.key}.escalate_to`, `no team named "${draft.escalateTo}"`, `use one of ${[...teamNames].join(', ')}, or define that team under alerting.teams`);
    }
  }
  let timing = defaults.timing;
  let failingEvaluations = defaults.failingEvaluations;
  let cooldownMs = defaults.cooldownMs;
  if (raw['timing'] !== undefined) {
    const t = v.object(raw['timing'], 'alerting.timing', ['group_wait_s', 'group_interval_s', 'repeat_interval_h', 'failing_evaluations', 'cooldown_minutes']);
    timing = {
      groupWaitMs: t['group_wait_s'] === undefined ? timing.groupWaitMs : v.integer(t['group_wait_s'], 'alerting.timing.group_wait_s', 0, 3600) * 1000,
      groupIntervalMs: t['group_interval_s'] === undefined ? timing.groupIntervalMs : v.integer(t['group_interval_s'], 'alerting.timing.group_interval_s', 1, 86_400) * 1000,
      repeatIntervalMs: t['repeat_interval_h'] === undefined ? timing.repeatIntervalMs : v.integer(t['repeat_interval_h'], 'alerting.timing.repeat_interval_h', 1, 720) * 3_600_000,
    };
    if (t['failing_evaluations'] !== undefined) failingEvaluations = v.integer(t['failing_evaluations'], 'alerting.timing.failing_evaluations', 1, 100);
    if (t['cooldown_minutes'] !== undefined) cooldownMs = v.integer(t['cooldown_minutes'], 'alerting.timing.cooldown_minutes', 0, 10_080) * 60_000;
  }
  let rateLimit: RateLimit | undefined;
  if (raw['rate_limit'] !== undefined) {
    const r = v.object(raw['rate_limit'], 'alerting.rate_limit', ['notices', 'per_minutes']);
    rateLimit = {
      limit: r['notices'] === undefined ? 10 : v.integer(r['notices'], 'alerting.rate_limit.notices', 1, 100_000),
      windowMs: (r['per_minutes'] === undefined ? 60 : v.integer(r['per_minutes'], 'alerting.rate_limit.per_minutes', 1, 10_080)) * 60_000,
    };
  }
  return {
    stateDir: raw['state_dir'] === undefined ? defaults.stateDir : stateDirAt(v, raw['state_dir']),
    email,
    webhooks,
    ndjson: raw['ndjson'] === undefined ? false : v.boolean(raw['ndjson'], 'alerting.ndjson'),
    teams: drafts.map((draft) => draft.team),
    timing,
    failingEvaluations,
    cooldownMs,
    rateLimit,
    thresholds: raw['thresholds'] === undefined ? {} : parseThresholds(v, raw['thresholds'], clusterNames),
    heartbeat: raw['heartbeat'] === undefined ? undefined : parseHeartbeat(v, raw['heartbeat']),
  };
}
