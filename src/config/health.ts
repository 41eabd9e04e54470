/**
 * The `health` section of the config file: the application's own health, as HTTP endpoints to
 * request and custom SQL checks to run (DESIGN §5 "application health"). Validated with the
 * loader's Validator, so every error names the file, the key and the fix. A URL is never echoed
 * in an error: it may carry a password or a token.
 */
import type { ThresholdDirection } from '../probes/application.js';
import type { Json, Validator } from './load.js';
import type { ClusterConfig } from './types.js';

export const defaultHttpTimeoutMs = 5000;
export const defaultSqlTimeoutMs = 5000;

export interface HttpEndpointConfig {
  /** Unique among the endpoints; the alert subject is "endpoint <name>". */
  readonly name: string;
  /** http or https; a password in it is sent as basic authentication and never shown. */
  readonly url: string;
  /** The cluster the application belongs to; undefined: the first cluster. */
  readonly cluster: string | undefined;
  readonly timeoutMs: number;
  /** The statuses that count as healthy; undefined: any 2xx. */
  readonly expectStatus: readonly number[] | undefined;
  /** undefined: the http-endpoint check's warningLatencyMs (1000 unless overridden). */
  readonly warningLatencyMs: number | undefined;
  /** undefined: a slow answer is never critical by itself. */
  readonly criticalLatencyMs: number | undefined;
}

export interface SqlHealthCheckConfig {
  /** Unique among the SQL checks; the alert subject is "check <name>". */
  readonly name: string;
  /** undefined: the first cluster. */
  readonly cluster: string | undefined;
  /** undefined: the cluster's first node. */
  readonly node: string | undefined;
  /** undefined: the database of the node's DSN. */
  readonly database: string | undefined;
  /** One statement, without a trailing semicolon; its first column of the first row is the value. */
  readonly query: string;
  readonly warning: number;
  readonly critical: number;
  readonly direction: ThresholdDirection;
  readonly timeoutMs: number;
}

export interface HealthConfig {
  readonly http: readonly HttpEndpointConfig[];
  readonly sql: readonly SqlHealthCheckConfig[];
}

/** No endpoints, no SQL checks. */
export const noHealthChecks: HealthConfig = { http: [], sql: [] };

/**
 * Where the first ';' that ends a statement is, skipping string literals, quoted identifiers,
 * dollar quotes and comments; -1 when there is none. The server refuses several statements too
 * (the query is sent with the extended protocol): this catches it with a clear message first.
 */
export function statementEnd(sql: string): number {
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === ';') return i;
    if (c === "'" || c === '"') {
      const close = sql.indexOf(c, i + 1);
      // Doubled quotes ('it''s') are two literals back to back: the loop handles them.
      i = close === -1 ? sql.length : close + 1;
    } else if (c === '-' && next === '-') {
      const close = sql.indexOf('\n', i);
      i = close === -1 ? sql.length : close + 1;
    } else if (c === '/' && next === '*') {
      const close = sql.indexOf('*/', i + 2);
      i = close === -1 ? sql.length : close + 2;
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
      if (tag === null) {
        i += 1;
      } else {
        const close = sql.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? sql.length : close + tag[0].length;
      }
    } else {
      i += 1;
    }
  }
  return -1;
}

/** The query as it will run: trimmed, one trailing ';' allowed and removed; a ';' inside is refused. */
function singleStatement(v: Validator, value: Json | undefined, key: string): string {
  const text = v.string(value, key, "select count(*) from orders where created_at > now() - interval '10 minutes'").trim();
  const end = statementEnd(text);
  if (end === -1) return text;
  // After the statement, only more semicolons, blanks and comments may follow.
  const rest = text.slice(end + 1).replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
  if (!/^[;\s]*$/.test(rest)) {
    v.fail(key, `more than one statement (a ";" at character ${end + 1})`, 'keep a single query: it runs alone in a READ ONLY transaction');
  }
  const statement = text.slice(0, end).trim();
  if (statement === '') v.fail(key, 'no statement before the ";"', 'write a query whose first column is a number, e.g. "select count(*) from orders"');
  return statement;
}

/** A JSON value as an error message shows it. */
function shown(value: Json | undefined): string {
  if (value === undefined) return 'nothing';
  if (value === null || typeof value === 'object') return JSON.stringify(value).slice(0, 40);
  return `${typeof value} ${JSON.stringify(value)}`;
}

function finiteNumber(v: Validator, value: Json | undefined, key: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    v.fail(key, `expected a number, found ${shown(value)}`, `set ${key} to the level the query's value is compared with, e.g. 10`);
  }
  return value;
}

function direction(v: Validator, value: Json | undefined, key: string): ThresholdDirection {
  if (value === undefined) return 'above';
  if (value !== 'above' && value !== 'below') {
    v.fail(key, `expected "above" or "below", found ${JSON.stringify(value)}`, 'use "above" when higher values are worse (the default), "below" when lower values are worse');
  }
  return value;
}

function clusterFor(v: Validator, value: Json | undefined, key: string, clusters: readonly ClusterConfig[]): string | undefined {
  if (value === undefined) return undefined;
  const name = v.string(value, key, 'prod');
  // Without clusters in the file (--dsn or the environment give the target), any name is taken on trust.
  if (clusters.length > 0 && !clusters.some((cluster) => cluster.name === name)) {
    v.fail(key, `no cluster named "${name}"`, `use one of ${clusters.map((cluster) => cluster.name).join(', ')}, or leave it out for the first cluster`);
  }
  return name;
}

function uniqueName(v: Validator, value: Json | undefined, key: string, names: Set<string>, kind: string, example: string): string {
  const name = v.string(value, key, example);
  if (names.has(name)) v.fail(key, `duplicate ${kind} name "${name}"`, `give each ${kind} its own name`);
  names.add(name);
  return name;
}

function parseEndpoint(v: Validator, value: Json | undefined, key: string, names: Set<string>, clusters: readonly ClusterConfig[]): HttpEndpointConfig {
  const raw = v.object(value, key, ['name', 'url', 'cluster', 'timeout_ms', 'expect_status', 'warning_latency_ms', 'critical_latency_ms']);
  const name = uniqueName(v, raw['name'], `${key}.name`, names, 'endpoint', 'api');
  const url = v.string(raw['url'], `${key}.url`, 'https://api.example.com/healthz').trim();
  let protocol: string | undefined;
  try {
    protocol = new URL(url).protocol;
  } catch {
    protocol = undefined;
  }
  if (protocol !== 'http:' && protocol !== 'https:') v.fail(`${key}.url`, 'not an http or https URL', 'write the full URL, e.g. "https://api.example.com/healthz"');
  const cluster = clusterFor(v, raw['cluster'], `${key}.cluster`, clusters);
  const timeoutMs = raw['timeout_ms'] === undefined ? defaultHttpTimeoutMs : v.integer(raw['timeout_ms'], `${key}.timeout_ms`, 100, 600_000);
  let expectStatus: number[] | undefined;
  if (raw['expect_status'] !== undefined) {
    expectStatus = v.array(raw['expect_status'], `${key}.expect_status`).map((status, index) => v.integer(status, `${key}.expect_status[${index}]`, 100, 599));
    if (expectStatus.length === 0) v.fail(`${key}.expect_status`, 'an empty list accepts no answer at all', 'list the healthy statuses, e.g. [200, 204], or leave it out for any 2xx');
  }
  const latency = (name: 'warning_latency_ms' | 'critical_latency_ms'): number | undefined => {
    if (raw[name] === undefined) return undefined;
    const ms = v.integer(raw[name], `${key}.${name}`, 1, 600_000);
    if (ms >= timeoutMs) {
      v.fail(`${key}.${name}`, `${ms} ms is not below timeout_ms (${timeoutMs} ms): the request is abandoned before it could be seen`, `lower it, or raise ${key}.timeout_ms above it`);
    }
    return ms;
  };
  const warningLatencyMs = latency('warning_latency_ms');
  const criticalLatencyMs = latency('critical_latency_ms');
  if (warningLatencyMs !== undefined && criticalLatencyMs !== undefined && criticalLatencyMs <= warningLatencyMs) {
    v.fail(`${key}.critical_latency_ms`, `${criticalLatencyMs} ms is not above warning_latency_ms (${warningLatencyMs} ms)`, 'make the critical latency the larger one');
  }
  return { name, url, cluster, timeoutMs, expectStatus, warningLatencyMs, criticalLatencyMs };
}

function parseSqlCheck(v: Validator, value: Json | undefined, key: string, names: Set<string>, clusters: readonly ClusterConfig[]): SqlHealthCheckConfig {
  const raw = v.object(value, key, ['name', 'cluster', 'node', 'database', 'query', 'warning', 'critical', 'direction', 'timeout_ms']);
  const name = uniqueName(v, raw['name'], `${key}.name`, names, 'SQL check', 'orders-flowing');
  const cluster = clusterFor(v, raw['cluster'], `${key}.cluster`, clusters);
  const node = raw['node'] === undefined ? undefined : v.string(raw['node'], `${key}.node`, 'db1');
  const owner = cluster === undefined ? clusters[0] : clusters.find((candidate) => candidate.name === cluster);
  if (node !== undefined && owner !== undefined && !owner.nodes.some((candidate) => candidate.name === node)) {
    v.fail(`${key}.node`, `no node named "${node}" in cluster "${owner.name}"`, `use one of ${owner.nodes.map((candidate) => candidate.name).join(', ')}, or leave it out for the first node`);
  }
  const database = raw['database'] === undefined ? undefined : v.string(raw['database'], `${key}.database`, 'orders');
  const query = singleStatement(v, raw['query'], `${key}.query`);
  const warning = finiteNumber(v, raw['warning'], `${key}.warning`);
  const critical = finiteNumber(v, raw['critical'], `${key}.critical`);
  const towards = direction(v, raw['direction'], `${key}.direction`);
  if (towards === 'above' && critical <= warning) {
    v.fail(`${key}.critical`, `with direction "above" (higher is worse) the critical level must be above the warning level (warning ${warning}, critical ${critical})`, `swap them, or set ${key}.direction to "below" when lower values are worse`);
  }
  if (towards === 'below' && critical >= warning) {
    v.fail(`${key}.critical`, `with direction "below" (lower is worse) the critical level must be below the warning level (warning ${warning}, critical ${critical})`, `swap them, or set ${key}.direction to "above" when higher values are worse`);
  }
  const timeoutMs = raw['timeout_ms'] === undefined ? defaultSqlTimeoutMs : v.integer(raw['timeout_ms'], `${key}.timeout_ms`, 100, 600_000);
  return { name, cluster, node, database, query, warning, critical, direction: towards, timeoutMs };
}

/** Validates the `health` section (undefined: no application checks) against the file's clusters. */
export function parseHealth(v: Validator, value: Json | undefined, clusters: readonly ClusterConfig[]): HealthConfig {
  if (value === undefined) return noHealthChecks;
  const raw = v.object(value, 'health', ['http', 'sql']);
  const endpointNames = new Set<string>();
  const sqlNames = new Set<string>();
  const http = raw['http'] === undefined
    ? []
    : v.array(raw['http'], 'health.http').map((item, index) => parseEndpoint(v, item, `health.http[${index}]`, endpointNames, clusters));
  const sql = raw['sql'] === undefined
    ? []
    : v.array(raw['sql'], 'health.sql').map((item, index) => parseSqlCheck(v, item, `health.sql[${index}]`, sqlNames, clusters));
  return { http, sql };
}
