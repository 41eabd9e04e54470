/**
 * Connection strings resolved as libpq resolves them: a URI (postgresql://…) or key=value conninfo,
 * then the PG* environment variables, then libpq's defaults (the Unix socket directory, the OS user,
 * a database named after the user). Passwords not given explicitly come from ~/.pgpass at connect
 * time (the pg driver reads PGPASSFILE or ~/.pgpass).
 */
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { UserError } from '../errors.js';
import type { ConnectionSpec, SslMode } from './types.js';
import { redact } from './redact.js';

const sslModes: readonly SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const socketDirs = ['/var/run/postgresql', '/run/postgresql', '/tmp'];

type Env = Readonly<Record<string, string | undefined>>;

/** Parses "key=value key='quoted value'" conninfo into its pairs. */
function parseKeyValue(conninfo: string, from: string): Map<string, string> {
  const pairs = new Map<string, string>();
  const pattern = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S*))/gy;
  let match: RegExpExecArray | null;
  let end = 0;
  while ((match = pattern.exec(conninfo)) !== null) {
    const key = match[1] ?? '';
    const value = match[2] !== undefined ? match[2].replace(/\\(.)/g, '$1') : (match[3] ?? '');
    pairs.set(key.toLowerCase(), value);
    end = pattern.lastIndex;
  }
  if (conninfo.slice(end).trim() !== '') {
    throw new UserError(
      `cannot parse connection string "${redact(conninfo)}" near "${redact(conninfo.slice(end).trim())}" in ${from}`,
      'use a URI (postgresql://user@host:5432/db) or key=value pairs (host=… dbname=…)',
    );
  }
  return pairs;
}

/** Parses a postgresql:// URI into libpq keyword pairs. */
function parseUri(uri: string, from: string): Map<string, string> {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new UserError(`cannot parse connection URI "${redact(uri)}" in ${from}`, 'the form is postgresql://user:password@host:port/dbname?sslmode=require');
  }
  const pairs = new Map<string, string>();
  if (url.username) pairs.set('user', decodeURIComponent(url.username));
  if (url.password) pairs.set('password', decodeURIComponent(url.password));
  if (url.hostname) pairs.set('host', decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1'));
  if (url.port) pairs.set('port', url.port);
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database) pairs.set('dbname', database);
  for (const [key, value] of url.searchParams) pairs.set(key.toLowerCase(), value);
  return pairs;
}

/** Splits any DSN form into libpq keyword pairs. */
export function parseDsn(dsn: string, from = 'the DSN'): Map<string, string> {
  const trimmed = dsn.trim();
  if (/^postgres(ql)?:\/\//i.test(trimmed)) return parseUri(trimmed, from);
  if (trimmed === '') return new Map();
  return parseKeyValue(trimmed, from);
}

function defaultHost(): string {
  return socketDirs.find((dir) => existsSync(dir)) ?? 'localhost';
}

function parsePort(value: string, from: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UserError(`invalid port "${value}" in ${from}`, 'a port is a whole number from 1 to 65535');
  }
  return port;
}

function parseSslMode(value: string, from: string): SslMode {
  const mode = sslModes.find((candidate) => candidate === value);
  if (mode === undefined) {
    throw new UserError(`invalid sslmode "${value}" in ${from}`, `use one of ${sslModes.join(', ')}`);
  }
  return mode;
}

/**
 * Resolves a DSN (possibly empty) into a full connection spec, filling gaps from the PG*
 * environment variables and libpq's defaults. `from` names the DSN's origin for error messages.
 */
export function resolveConnection(dsn: string | undefined, from: string, env: Env = process.env): ConnectionSpec {
  const pairs = parseDsn(dsn ?? '', from);
  const pick = (key: string, envName: string): string | undefined => {
    const value = pairs.get(key) ?? env[envName];
    return value === '' ? undefined : value;
  };
  const known = new Set(['host', 'hostaddr', 'port', 'user', 'dbname', 'password', 'sslmode', 'sslrootcert', 'connect_timeout', 'application_name']);
  for (const key of pairs.keys()) {
    if (!known.has(key)) {
      throw new UserError(`unsupported connection parameter "${key}" in ${from}`, `pgwarden understands ${[...known].join(', ')}`);
    }
  }
  const host = pairs.get('hostaddr') ?? pick('host', 'PGHOST') ?? defaultHost();
  if (host.includes(',')) {
    throw new UserError(`several hosts in one DSN (${host}) in ${from}`, 'declare each host as its own node of the cluster in the config file');
  }
  const user = pick('user', 'PGUSER') ?? userInfo().username;
  const timeout = pick('connect_timeout', 'PGCONNECT_TIMEOUT');
  return {
    host,
    port: parsePort(pick('port', 'PGPORT') ?? '5432', from),
    user,
    database: pick('dbname', 'PGDATABASE') ?? user,
    password: pick('password', 'PGPASSWORD'),
    sslmode: parseSslMode(pick('sslmode', 'PGSSLMODE') ?? 'prefer', from),
    sslrootcert: pick('sslrootcert', 'PGSSLROOTCERT'),
    connectTimeoutMs: timeout === undefined ? 5000 : Math.max(2, Number(timeout)) * 1000,
  };
}

/** A short, password-free label such as "postgres@127.0.0.1:5432/test". */
export function describeConnection(spec: ConnectionSpec): string {
  return `${spec.user}@${spec.host}:${spec.port}/${spec.database}`;
}
