/**
 * The `backups` section of the config file (issue 5 items 1, 5, 7): the repositories, the master
 * keys, and per cluster (or "*" for every cluster) which repositories it uses, the compression,
 * the cron schedules of full backups, logical dumps and drills, the retention, the drill's tables
 * and directory, and the margin of the backups check. Validated with the loader's Validator, so
 * every error names the file, the key, the problem and the fix. resolveBackupPlan() gives the
 * effective settings of one cluster: defaults, then "*", then the cluster's own entry.
 */
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { CronError, nextRun, parseCron } from '../backup/cron.js';
import { parseKeySources, type KeySource } from '../backup/keys.js';
import { parseRepositories, type RepositoryConfig } from '../backup/repository/config.js';
import type { Json, JsonObject, Validator } from './load.js';

export type BackupCompression = 'zstd' | 'gzip' | 'none';

/** Cron expressions (src/backup/cron.ts); null turns that job off. */
export interface BackupSchedules {
  readonly full: string | null;
  readonly logical: string | null;
  readonly drill: string | null;
  /** The IANA zone the expressions are read in. */
  readonly timeZone: string;
}

export interface RetentionPolicy {
  /** Backups younger than this are kept. */
  readonly days: number;
  /** At least this many restorable backups are kept whatever their age (at least 1: rule 8). */
  readonly minCount: number;
  /** At most this many are kept (never fewer than minCount); null: no limit by count. */
  readonly maxCount: number | null;
}

export interface DrillSettings {
  /** "schema.table" names whose row counts a drill compares with the source. */
  readonly tables: readonly string[];
  /** Where drills restore to (a fresh directory under it each time). */
  readonly targetDir: string;
}

/** Continuous WAL streaming with pg_receivewal under `--watch` (docs/wal-streaming.md); off unless enabled. */
export interface StreamingSettings {
  readonly enabled: boolean;
  /** Where the segments land before they are pushed; undefined: <alerting.state_dir>/wal-spool/<cluster>. */
  readonly spoolDir: string | undefined;
  /** The replication slot; undefined: pgwarden_<cluster>. */
  readonly slot: string | undefined;
}

/** One entry of `backups.clusters`, as written: undefined fields fall back to "*", then to the defaults. */
export interface ClusterBackupSettings {
  readonly repositories: readonly string[] | undefined;
  readonly compression: BackupCompression | undefined;
  readonly schedule: Partial<BackupSchedules>;
  readonly retention: Partial<RetentionPolicy>;
  readonly drill: Partial<DrillSettings>;
  readonly marginMinutes: number | undefined;
  readonly streaming: Partial<StreamingSettings>;
}

/** The validated `backups` section. */
export interface BackupsConfig {
  readonly repositories: readonly RepositoryConfig[];
  /** The first key encrypts; every key decrypts. Empty: backups and WAL are not encrypted. */
  readonly keys: readonly KeySource[];
  /** Cluster name or "*" → its settings. A file without `clusters` backs up every cluster with the defaults. */
  readonly clusters: Readonly<Record<string, ClusterBackupSettings>>;
}

/** The effective backup settings of one cluster. */
export interface BackupPlan {
  readonly cluster: string;
  /** The cluster's repositories in the order listed: WAL is pushed to all, fetched from the first that has it. */
  readonly repositories: readonly RepositoryConfig[];
  /** Empty: not encrypted. */
  readonly keys: readonly KeySource[];
  readonly encrypted: boolean;
  readonly compression: BackupCompression;
  readonly schedule: BackupSchedules;
  readonly retention: RetentionPolicy;
  readonly drill: DrillSettings;
  /** The backups check warns when the last good full backup is older than its schedule plus this. */
  readonly marginMinutes: number;
  readonly streaming: StreamingSettings;
}

/** The defaults of issue 5: a full backup daily, a logical dump hourly, a drill daily, 14 days kept. */
export const defaultSchedules: BackupSchedules = { full: '0 3 * * *', logical: '0 * * * *', drill: '30 4 * * *', timeZone: 'UTC' };
export const defaultRetention: RetentionPolicy = { days: 14, minCount: 1, maxCount: null };
export const defaultMarginMinutes = 60;
export const defaultCompression: BackupCompression = 'zstd';
export function defaultDrill(): DrillSettings {
  return { tables: [], targetDir: join(tmpdir(), 'pgwarden-drill') };
}

/** Edit distance of two short names (for "did you mean"). */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_value, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * v.object, but an unknown key close to a known one (a typo, a plural, a case slip) gets
 * "did you mean" even where the loader's own check only catches "_" and case differences.
 */
function objectAt(v: Validator, value: Json | undefined, key: string, allowed: readonly string[]): JsonObject {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const name of Object.keys(value)) {
      if (allowed.includes(name)) continue;
      const lower = name.toLowerCase().replace(/-/g, '_');
      const near = allowed.find((candidate) => distance(lower, candidate) <= Math.min(2, Math.floor(candidate.length / 3)));
      if (near !== undefined) v.fail(`${key}.${name}`, 'unknown key', `did you mean "${near}"?`);
    }
  }
  return v.object(value, key, allowed);
}

const compressions: readonly BackupCompression[] = ['zstd', 'gzip', 'none'];
const tablePattern = /^[A-Za-z_][A-Za-z0-9_$]*\.[A-Za-z_][A-Za-z0-9_$]*$/;

function parseSchedule(v: Validator, value: Json | undefined, key: string): Partial<BackupSchedules> {
  const raw = objectAt(v, value, key, ['full', 'logical', 'drill', 'time_zone']);
  const out: { -readonly [K in keyof BackupSchedules]?: BackupSchedules[K] } = {};
  for (const job of ['full', 'logical', 'drill'] as const) {
    const text = raw[job];
    if (text === undefined) continue;
    if (text === null) {
      out[job] = null;
      continue;
    }
    const expression = v.string(text, `${key}.${job}`, defaultSchedules[job] ?? '0 3 * * *');
    try {
      parseCron(expression);
    } catch (error) {
      if (error instanceof CronError) v.fail(`${key}.${job}`, error.message, `${error.fix}; or null to turn the ${job} job off`);
      throw error;
    }
    out[job] = expression;
  }
  if (raw['time_zone'] !== undefined) {
    const timeZone = v.string(raw['time_zone'], `${key}.time_zone`, 'Europe/Paris');
    try {
      new Intl.DateTimeFormat('en-GB', { timeZone });
    } catch {
      v.fail(`${key}.time_zone`, `unknown time zone "${timeZone}"`, 'use an IANA zone name such as "Europe/Paris", "America/New_York" or "UTC"');
    }
    out.timeZone = timeZone;
  }
  return out;
}

function parseRetention(v: Validator, value: Json | undefined, key: string): Partial<RetentionPolicy> {
  const raw = objectAt(v, value, key, ['days', 'min_count', 'max_count']);
  const out: { -readonly [K in keyof RetentionPolicy]?: RetentionPolicy[K] } = {};
  if (raw['days'] !== undefined) out.days = v.integer(raw['days'], `${key}.days`, 1, 36_500);
  if (raw['min_count'] !== undefined) {
    if (raw['min_count'] === 0) v.fail(`${key}.min_count`, 'the newest restorable backup is always kept', 'set min_count to 1 or more');
    out.minCount = v.integer(raw['min_count'], `${key}.min_count`, 1, 10_000);
  }
  if (raw['max_count'] !== undefined) out.maxCount = raw['max_count'] === null ? null : v.integer(raw['max_count'], `${key}.max_count`, 1, 10_000);
  if (out.maxCount !== undefined && out.maxCount !== null && out.minCount !== undefined && out.maxCount < out.minCount) {
    v.fail(`${key}.max_count`, `max_count ${out.maxCount} is below min_count ${out.minCount}`, 'raise max_count to at least min_count, or lower min_count');
  }
  return out;
}

function parseDrill(v: Validator, value: Json | undefined, key: string): Partial<DrillSettings> {
  const raw = objectAt(v, value, key, ['tables', 'target_dir']);
  const out: { -readonly [K in keyof DrillSettings]?: DrillSettings[K] } = {};
  if (raw['tables'] !== undefined) {
    out.tables = v.array(raw['tables'], `${key}.tables`).map((item, index) => {
      const name = v.string(item, `${key}.tables[${index}]`, 'public.orders');
      if (!tablePattern.test(name)) v.fail(`${key}.tables[${index}]`, `"${name}" is not a schema-qualified table name`, 'write it as schema.table, e.g. "public.orders"');
      return name;
    });
  }
  if (raw['target_dir'] !== undefined) {
    const dir = v.string(raw['target_dir'], `${key}.target_dir`, '/var/tmp/pgwarden-drill');
    if (!isAbsolute(dir)) v.fail(`${key}.target_dir`, `"${dir}" is a relative path`, 'give an absolute path, e.g. "/var/tmp/pgwarden-drill"');
    out.targetDir = dir;
  }
  return out;
}

function parseStreaming(v: Validator, value: Json | undefined, key: string): Partial<StreamingSettings> {
  const raw = objectAt(v, value, key, ['enabled', 'spool_dir', 'slot']);
  const out: { -readonly [K in keyof StreamingSettings]?: StreamingSettings[K] } = {};
  if (raw['enabled'] !== undefined) out.enabled = v.boolean(raw['enabled'], `${key}.enabled`);
  if (raw['spool_dir'] !== undefined) {
    const dir = v.string(raw['spool_dir'], `${key}.spool_dir`, '/var/lib/pgwarden/wal-spool');
    if (!isAbsolute(dir)) v.fail(`${key}.spool_dir`, `"${dir}" is a relative path`, 'give an absolute path, e.g. "/var/lib/pgwarden/wal-spool"');
    out.spoolDir = dir;
  }
  if (raw['slot'] !== undefined) {
    const slot = v.string(raw['slot'], `${key}.slot`, 'pgwarden_prod');
    if (!/^[a-z0-9_]{1,63}$/.test(slot)) v.fail(`${key}.slot`, `"${slot}" is not a valid replication slot name`, 'use lower-case letters, digits and "_" (at most 63), e.g. "pgwarden_prod"');
    out.slot = slot;
  }
  return out;
}

function parseClusterSettings(v: Validator, value: Json | undefined, key: string, repositoryNames: readonly string[]): ClusterBackupSettings {
  const raw = objectAt(v, value, key, ['repositories', 'compression', 'schedule', 'retention', 'drill', 'margin_minutes', 'streaming']);
  let repositories: string[] | undefined;
  if (raw['repositories'] !== undefined) {
    repositories = v.array(raw['repositories'], `${key}.repositories`).map((item, index) => {
      const at = `${key}.repositories[${index}]`;
      const name = v.string(item, at, repositoryNames[0] ?? 'local');
      if (!repositoryNames.includes(name)) v.fail(at, `no repository named "${name}"`, `use one of ${repositoryNames.join(', ')}, or define it under backups.repositories`);
      return name;
    });
    if (repositories.length === 0) v.fail(`${key}.repositories`, 'the list is empty', `list at least one of ${repositoryNames.join(', ')}, or remove the key to use them all`);
    const seen = new Set<string>();
    repositories.forEach((name, index) => {
      if (seen.has(name)) v.fail(`${key}.repositories[${index}]`, `"${name}" is listed twice`, 'list each repository once');
      seen.add(name);
    });
  }
  let compression: BackupCompression | undefined;
  if (raw['compression'] !== undefined) {
    const text = raw['compression'];
    if (typeof text !== 'string' || !(compressions as readonly string[]).includes(text)) {
      v.fail(`${key}.compression`, `expected one of ${compressions.join(', ')}, found ${JSON.stringify(text)}`, `set ${key}.compression to "zstd", "gzip" or "none"`);
    }
    compression = text as BackupCompression;
  }
  return {
    repositories,
    compression,
    schedule: raw['schedule'] === undefined ? {} : parseSchedule(v, raw['schedule'], `${key}.schedule`),
    retention: raw['retention'] === undefined ? {} : parseRetention(v, raw['retention'], `${key}.retention`),
    drill: raw['drill'] === undefined ? {} : parseDrill(v, raw['drill'], `${key}.drill`),
    marginMinutes: raw['margin_minutes'] === undefined ? undefined : v.integer(raw['margin_minutes'], `${key}.margin_minutes`, 0, 10_080),
    streaming: raw['streaming'] === undefined ? {} : parseStreaming(v, raw['streaming'], `${key}.streaming`),
  };
}

const emptySettings: ClusterBackupSettings = { repositories: undefined, compression: undefined, schedule: {}, retention: {}, drill: {}, marginMinutes: undefined, streaming: {} };

/**
 * Validates the `backups` section (undefined: no backups configured). `clusterNames` are the
 * clusters the file declares; when there are some, an entry for any other name is an error.
 */
export function parseBackups(v: Validator, value: Json | undefined, clusterNames: readonly string[] = []): BackupsConfig | undefined {
  if (value === undefined) return undefined;
  const raw = objectAt(v, value, 'backups', ['repositories', 'keys', 'clusters']);
  if (raw['repositories'] === undefined) {
    v.fail('backups.repositories', 'no repository is configured', 'add "repositories": [{ "name": "local", "type": "local", "path": "/var/lib/pgwarden/repo" }]');
  }
  const repositories = parseRepositories(v, raw['repositories'], 'backups.repositories');
  const repositoryNames = repositories.map((repository) => repository.name);
  const keys = raw['keys'] === undefined ? [] : parseKeySources(v, raw['keys'], 'backups.keys');
  const clusters: Record<string, ClusterBackupSettings> = {};
  if (raw['clusters'] === undefined) {
    clusters['*'] = emptySettings;
  } else {
    const entries = v.object(raw['clusters'], 'backups.clusters', Object.keys(raw['clusters'] !== null && typeof raw['clusters'] === 'object' ? raw['clusters'] : {}));
    for (const [name, settings] of Object.entries(entries)) {
      const key = `backups.clusters.${name}`;
      if (name !== '*' && clusterNames.length > 0 && !clusterNames.includes(name)) {
        v.fail(key, `no cluster named "${name}"`, `use "*" for every cluster or one of ${clusterNames.join(', ')}`);
      }
      clusters[name] = parseClusterSettings(v, settings, key, repositoryNames);
    }
    if (Object.keys(clusters).length === 0) {
      v.fail('backups.clusters', 'no cluster is listed, so nothing would be backed up', 'add "*": {} to back up every cluster with the defaults, or remove backups.clusters');
    }
  }
  return { repositories, keys, clusters };
}

/**
 * The effective backup settings of `cluster`: its own entry over "*" over the defaults, or
 * undefined when the config has no `backups` section or neither entry covers that cluster.
 */
export function resolveBackupPlan(config: { readonly backups: BackupsConfig | undefined }, cluster: string): BackupPlan | undefined {
  const backups = config.backups;
  if (backups === undefined) return undefined;
  const star = backups.clusters['*'];
  const own = backups.clusters[cluster];
  if (star === undefined && own === undefined) return undefined;
  const layers = [star ?? emptySettings, own ?? emptySettings];
  const pick = <T>(get: (settings: ClusterBackupSettings) => T | undefined, fallback: T): T => {
    let value = fallback;
    for (const layer of layers) {
      const candidate = get(layer);
      if (candidate !== undefined) value = candidate;
    }
    return value;
  };
  const names = pick((settings) => settings.repositories, backups.repositories.map((repository) => repository.name));
  const repositories = names.map((name) => backups.repositories.find((repository) => repository.name === name)).filter((repository) => repository !== undefined);
  const drillDefaults = defaultDrill();
  const retention: RetentionPolicy = {
    days: pick((settings) => settings.retention.days, defaultRetention.days),
    minCount: pick((settings) => settings.retention.minCount, defaultRetention.minCount),
    maxCount: pick((settings) => settings.retention.maxCount, defaultRetention.maxCount),
  };
  return {
    cluster,
    repositories,
    keys: backups.keys,
    encrypted: backups.keys.length > 0,
    compression: pick((settings) => settings.compression, defaultCompression),
    schedule: {
      full: pick((settings) => settings.schedule.full, defaultSchedules.full),
      logical: pick((settings) => settings.schedule.logical, defaultSchedules.logical),
      drill: pick((settings) => settings.schedule.drill, defaultSchedules.drill),
      timeZone: pick((settings) => settings.schedule.timeZone, defaultSchedules.timeZone),
    },
    // "*" may set a min_count above the cluster's max_count: the larger bound wins, so nothing kept is dropped.
    retention: retention.maxCount !== null && retention.maxCount < retention.minCount ? { ...retention, maxCount: retention.minCount } : retention,
    drill: {
      tables: pick((settings) => settings.drill.tables, drillDefaults.tables),
      targetDir: pick((settings) => settings.drill.targetDir, drillDefaults.targetDir),
    },
    marginMinutes: pick((settings) => settings.marginMinutes, defaultMarginMinutes),
    streaming: {
      enabled: pick((settings) => settings.streaming.enabled, false),
      spoolDir: pick<string | undefined>((settings) => settings.streaming.spoolDir, undefined),
      slot: pick<string | undefined>((settings) => settings.streaming.slot, undefined),
    },
  };
}

/**
 * When the backups check starts to warn: the full backup scheduled after `lastGood` should have
 * run, plus the margin. undefined when full backups are off (or never scheduled in five years).
 */
export function fullBackupOverdueAt(plan: BackupPlan, lastGood: Date): Date | undefined {
  if (plan.schedule.full === null) return undefined;
  const due = nextRun(plan.schedule.full, lastGood, plan.schedule.timeZone);
  return due === undefined ? undefined : new Date(due.getTime() + plan.marginMinutes * 60_000);
}

/** Lines for `pgwarden config`: the cluster's repositories, encryption, schedules and retention. Names, never secrets. */
export function describeBackupPlan(plan: BackupPlan): string[] {
  const repositories = plan.repositories.map((repository) => {
    const spec = repository.spec;
    return spec.type === 'local' ? `${repository.name} (local ${spec.path})` : `${repository.name} (s3://${spec.bucket}${spec.prefix === '' ? '' : `/${spec.prefix}`})`;
  });
  const schedule = (expression: string | null): string => expression ?? 'off';
  const retention = plan.retention;
  return [
    `  backups: repositories ${repositories.join(', ')}; compression ${plan.compression}`,
    plan.encrypted
      ? `  encryption: on, current key ${plan.keys[0]?.id ?? ''} (${plan.keys.length} key${plan.keys.length === 1 ? '' : 's'})`
      : '  encryption: OFF: no backups.keys, so backups and WAL are stored unencrypted',
    `  schedule (${plan.schedule.timeZone}): full ${schedule(plan.schedule.full)}, logical ${schedule(plan.schedule.logical)}, drill ${schedule(plan.schedule.drill)}; overdue after schedule + ${plan.marginMinutes} min`,
    `  retention: ${retention.days} days, at least ${retention.minCount}${retention.maxCount === null ? '' : `, at most ${retention.maxCount}`} backups`,
  ];
}
