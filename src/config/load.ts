/**
 * Loading and validating the config file. Every error names the file, the key and the fix, and a
 * bad file is never rewritten: pgwarden only reads it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import envPaths from 'env-paths';
import { UserError, messageOf } from '../errors.js';
import { resolveConnection } from './conninfo.js';
import { commands } from '../keymap.js';
import { parseAlerting } from './alerting.js';
import { parseBackups } from './backups.js';
import { defaultFailover, parseFailover } from './failover.js';
import { parseHealth } from './health.js';
import type { ClusterConfig, Config, NodeConfig, ProbeSettings } from './types.js';

export const defaultRefreshMs = 2000;
export const defaultStatementTimeoutMs = 5000;
export const defaultLockTimeoutMs = 1000;

/** A parsed JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A parsed JSON object. */
export type JsonObject = { [key: string]: Json };

/**
 * Where pgwarden looks for its config when --config is not given: config.json in the user's config
 * directory, by conf's convention (env-paths: $XDG_CONFIG_HOME/pgwarden on Linux). conf itself is
 * not loaded: through atomically and when-exit it re-raises SIGINT and SIGTERM to the process,
 * which breaks a graceful shutdown of the console, the demo and the watcher.
 */
export function defaultConfigPath(): string {
  return join(envPaths('pgwarden', { suffix: '' }).config, 'config.json');
}

/** Type checks that fail with `file: key: problem` and a hint naming the fix. */
export class Validator {
  constructor(private readonly file: string) {}

  fail(key: string, problem: string, fix: string): never {
    throw new UserError(`${this.file}: ${key}: ${problem}`, fix);
  }

  object(value: Json | undefined, key: string, allowed: readonly string[]): JsonObject {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      this.fail(key, `expected an object, found ${describe(value)}`, `write ${key} as { … }`);
    }
    for (const name of Object.keys(value)) {
      if (!allowed.includes(name)) {
        const near = allowed.find((candidate) => candidate.replace(/_/g, '') === name.replace(/[_-]/g, '').toLowerCase());
        this.fail(
          `${key}.${name}`,
          'unknown key',
          near === undefined ? `remove it; known keys here: ${allowed.join(', ')}` : `did you mean "${near}"?`,
        );
      }
    }
    return value;
  }

  array(value: Json | undefined, key: string): Json[] {
    if (!Array.isArray(value)) this.fail(key, `expected a list, found ${describe(value)}`, `write ${key} as [ … ]`);
    return value;
  }

  string(value: Json | undefined, key: string, example: string): string {
    if (typeof value !== 'string' || value.trim() === '') {
      this.fail(key, `expected a non-empty string, found ${describe(value)}`, `for example "${example}"`);
    }
    return value;
  }

  integer(value: Json | undefined, key: string, min: number, max: number): number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, `expected a whole number from ${min} to ${max}, found ${describe(value)}`, `set ${key} to a value in that range`);
    }
    return value;
  }

  boolean(value: Json | undefined, key: string): boolean {
    if (typeof value !== 'boolean') this.fail(key, `expected true or false, found ${describe(value)}`, `set ${key} to true or false`);
    return value;
  }
}

/** A value as an error message shows it. */
export function describe(value: Json | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function connectionAt(v: Validator, file: string, value: Json | undefined, key: string): NodeConfig['connection'] {
  const dsn = v.string(value, key, 'postgresql://monitor@db1.example.com:5432/postgres');
  try {
    return resolveConnection(dsn, `${file}: ${key}`);
  } catch (error) {
    if (error instanceof UserError) throw error;
    return v.fail(key, messageOf(error), 'use a URI or key=value conninfo');
  }
}

function absolutePath(v: Validator, value: Json | undefined, key: string, example: string): string {
  const path = v.string(value, key, example);
  if (!path.startsWith('/')) v.fail(key, `expected an absolute path, found "${path}"`, `write the full path, for example "${example}"`);
  return path;
}

function parseCluster(v: Validator, file: string, value: Json | undefined, key: string, names: Set<string>): ClusterConfig {
  const raw = v.object(value, key, ['name', 'nodes', 'pgbouncer', 'failover']);
  const name = v.string(raw['name'], `${key}.name`, 'prod');
  if (names.has(name)) v.fail(`${key}.name`, `duplicate cluster name "${name}"`, 'give each cluster its own name');
  names.add(name);
  const nodeNames = new Set<string>();
  const nodes = v.array(raw['nodes'], `${key}.nodes`).map((nodeValue, index): NodeConfig => {
    const nodeKey = `${key}.nodes[${index}]`;
    const node = v.object(nodeValue, nodeKey, ['name', 'dsn', 'dataDir']);
    const nodeName = v.string(node['name'], `${nodeKey}.name`, 'db1');
    if (nodeNames.has(nodeName)) v.fail(`${nodeKey}.name`, `duplicate node name "${nodeName}"`, 'give each node of a cluster its own name');
    nodeNames.add(nodeName);
    const dataDir = node['dataDir'] === undefined ? undefined : absolutePath(v, node['dataDir'], `${nodeKey}.dataDir`, '/var/lib/postgresql/15/main');
    return { name: nodeName, connection: connectionAt(v, file, node['dsn'], `${nodeKey}.dsn`), dataDir };
  });
  if (nodes.length === 0) v.fail(`${key}.nodes`, 'a cluster needs at least one node', 'add { "name": "db1", "dsn": "postgresql://…" }');
  let pgbouncer: ClusterConfig['pgbouncer'];
  if (raw['pgbouncer'] !== undefined) {
    const bouncer = v.object(raw['pgbouncer'], `${key}.pgbouncer`, ['dsn', 'ini']);
    const ini = bouncer['ini'] === undefined ? undefined : absolutePath(v, bouncer['ini'], `${key}.pgbouncer.ini`, '/etc/pgbouncer/pgbouncer.ini');
    pgbouncer = { connection: connectionAt(v, file, bouncer['dsn'], `${key}.pgbouncer.dsn`), ini };
  }
  return { name, nodes, pgbouncer, failover: parseFailover(v, raw['failover'], `${key}.failover`) };
}

function parseProbes(v: Validator, value: Json | undefined, knownProbes: readonly string[]): Record<string, ProbeSettings> {
  const out: Record<string, ProbeSettings> = {};
  if (value === undefined) return out;
  const raw = v.object(value, 'probes', knownProbes);
  for (const [id, settingsValue] of Object.entries(raw)) {
    const key = `probes.${id}`;
    const settings = v.object(settingsValue, key, ['enabled', 'cadence_ms', 'timeout_ms']);
    out[id] = {
      enabled: settings['enabled'] === undefined ? true : v.boolean(settings['enabled'], `${key}.enabled`),
      cadenceMs: settings['cadence_ms'] === undefined ? undefined : v.integer(settings['cadence_ms'], `${key}.cadence_ms`, 250, 86_400_000),
      timeoutMs: settings['timeout_ms'] === undefined ? undefined : v.integer(settings['timeout_ms'], `${key}.timeout_ms`, 100, 600_000),
    };
  }
  return out;
}

function parseKeys(v: Validator, value: Json | undefined): Record<string, readonly string[]> {
  const out: Record<string, readonly string[]> = {};
  if (value === undefined) return out;
  const raw = v.object(value, 'keys', commands.map((command) => command.id));
  for (const [id, keysValue] of Object.entries(raw)) {
    const keys = v.array(keysValue, `keys.${id}`).map((key, index) => v.string(key, `keys.${id}[${index}]`, 'ctrl+k'));
    if (keys.length === 0) v.fail(`keys.${id}`, 'no key given', 'list at least one key, e.g. ["X"]');
    out[id] = keys;
  }
  // A remapped key must not take one that another command of the same scope still uses.
  const effective = commands.map((command) => ({ ...command, keys: out[command.id] ?? command.keys }));
  for (const command of effective) {
    for (const key of command.keys) {
      const other = effective.find((candidate) => candidate !== command && candidate.scope === command.scope && candidate.keys.includes(key));
      if (other !== undefined && out[command.id] !== undefined) {
        v.fail(`keys.${command.id}`, `"${key}" is already bound to ${other.id} in the same scope`, `choose another key, or remap ${other.id} too`);
      }
    }
  }
  return out;
}

/** Validates parsed JSON as a pgwarden config. `file` is used in every error message. */
export function parseConfig(json: Json, file: string, knownProbes: readonly string[]): Config {
  const v = new Validator(file);
  const raw = v.object(json, '(top level)', ['clusters', 'refresh_ms', 'statement_timeout_ms', 'lock_timeout_ms', 'probes', 'keys', 'audit_log', 'alerting', 'health', 'backups']);
  const names = new Set<string>();
  const clusters = raw['clusters'] === undefined
    ? []
    : v.array(raw['clusters'], 'clusters').map((cluster, index) => parseCluster(v, file, cluster, `clusters[${index}]`, names));
  return {
    source: file,
    clusters,
    refreshMs: raw['refresh_ms'] === undefined ? defaultRefreshMs : v.integer(raw['refresh_ms'], 'refresh_ms', 250, 3_600_000),
    statementTimeoutMs: raw['statement_timeout_ms'] === undefined
      ? defaultStatementTimeoutMs
      : v.integer(raw['statement_timeout_ms'], 'statement_timeout_ms', 100, 600_000),
    lockTimeoutMs: raw['lock_timeout_ms'] === undefined ? defaultLockTimeoutMs : v.integer(raw['lock_timeout_ms'], 'lock_timeout_ms', 10, 600_000),
    probes: parseProbes(v, raw['probes'], knownProbes),
    keys: parseKeys(v, raw['keys']),
    auditLog: raw['audit_log'] === undefined ? undefined : v.string(raw['audit_log'], 'audit_log', '/var/log/pgwarden/audit.log'),
    alerting: parseAlerting(v, raw['alerting'], file, clusters.map((cluster) => cluster.name)),
    health: parseHealth(v, raw['health'], clusters),
    backups: parseBackups(v, raw['backups'], clusters.map((cluster) => cluster.name)),
  };
}

function readJson(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${file}: no such config file`, 'check the path given to --config');
    throw new UserError(`${file}: cannot read the config file (${code ?? messageOf(error)})`, 'check its permissions');
  }
  try {
    return JSON.parse(text) as Json;
  } catch (error) {
    throw new UserError(`${file}: not valid JSON: ${messageOf(error)}`, 'fix the syntax; the file was left untouched');
  }
}

export interface LoadOptions {
  /** --config FILE; when absent the default location is used if the file exists. */
  readonly configFile: string | undefined;
  /** --dsn URI: replaces the configured clusters by one target. */
  readonly dsn: string | undefined;
  readonly knownProbes: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Overrides the default config location (tests). */
  readonly defaultPath?: string;
}

/**
 * Loads the effective config: the file (explicit or default), then --dsn if given, and with no
 * clusters at all a single target resolved as psql would (PG* variables, socket, OS user).
 */
export function loadConfig(options: LoadOptions): Config {
  const env = options.env ?? process.env;
  let config: Config;
  if (options.configFile !== undefined) {
    config = parseConfig(readJson(options.configFile), options.configFile, options.knownProbes);
  } else {
    const path = options.defaultPath ?? defaultConfigPath();
    let exists = true;
    try {
      readFileSync(path);
    } catch {
      exists = false;
    }
    config = exists
      ? parseConfig(readJson(path), path, options.knownProbes)
      : parseConfig({}, 'defaults (no config file)', options.knownProbes);
  }
  if (options.dsn !== undefined) {
    const connection = resolveConnection(options.dsn, '--dsn', env);
    return { ...config, clusters: [{ name: 'cli', nodes: [{ name: connection.host, connection, dataDir: undefined }], pgbouncer: undefined, failover: defaultFailover }] };
  }
  if (config.clusters.length === 0) {
    const connection = resolveConnection(undefined, 'the environment', env);
    return { ...config, clusters: [{ name: 'default', nodes: [{ name: connection.host, connection, dataDir: undefined }], pgbouncer: undefined, failover: defaultFailover }] };
  }
  return config;
}
