/**
 * The files `pgwarden pooler config` writes for a PgBouncer in front of a cluster's primary
 * (docs/pooling.md): pgbouncer.ini with every setting explained, the auth_file with a placeholder
 * where the auth user's password goes, and auth.sql, the psql script that creates the auth_query
 * role and function. Pure text; no password is ever written by pgwarden (DESIGN §7 rule 14).
 */
import { quoteIdent, quoteLiteral } from '../actions/sql.js';
import type { PoolAdvice } from './pool-advice.js';

/** What the DBA replaces in the auth_file with the auth user's password. */
export const passwordPlaceholder = 'REPLACE-WITH-PASSWORD';
/** The role PgBouncer logs in as to look up other users' SCRAM secrets. */
export const defaultAuthUser = 'pgbouncer_auth';
/** The schema of the lookup function, in every pooled database. */
export const authSchema = 'pgbouncer';
/** The lookup function, schema-qualified, as auth_query calls it. */
export const authFunction = `${authSchema}.get_auth`;

export type PoolMode = 'transaction' | 'session';

export interface PgBouncerConfigInput {
  readonly cluster: string;
  /** The configured node the [databases] entries point at: the primary, found live. */
  readonly node: string;
  readonly backendHost: string;
  readonly backendPort: number;
  /** Databases to list, read live; null: one wildcard entry instead (--wildcard). */
  readonly databases: readonly string[] | null;
  readonly listenAddr: string;
  readonly listenPort: number;
  readonly poolMode: PoolMode;
  readonly authUser: string;
  /** Users of the admin console (SHOW, PAUSE/RESUME); their passwords go in the auth_file too. */
  readonly adminUsers: readonly string[];
  /** Where the auth_file will be, as pgbouncer.ini names it. */
  readonly authFilePath: string;
  readonly advice: PoolAdvice;
  readonly queryTimeout: QueryTimeoutChoice;
}

/** query_timeout and why. */
export interface QueryTimeoutChoice {
  /** Seconds; 0 disables it. */
  readonly seconds: number;
  readonly reason: string;
}

const units: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A time setting as PostgreSQL writes it ("30s", "5min", "60000", "1.5h") in milliseconds, the unit
 * of statement_timeout; undefined when it is not one.
 */
export function timeSettingMs(text: string): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$/.exec(text);
  if (match === null) return undefined;
  return Number(match[1]) * (units[match[2] ?? 'ms'] ?? 1);
}

/**
 * query_timeout from the longest statement_timeout the server gives any role or database: a little
 * longer, so that the server cancels a slow query cleanly first and PgBouncer only cuts what the
 * server cannot (a lost network), as PgBouncer's documentation advises.
 */
export function chooseQueryTimeout(longestStatementTimeoutMs: number | null): QueryTimeoutChoice {
  if (longestStatementTimeoutMs === null || longestStatementTimeoutMs <= 0) {
    return {
      seconds: 0,
      reason: 'off: some sessions have no statement_timeout, and PgBouncer would cut their long queries; set statement_timeout per role (docs/timeouts.md), then set this a little above the longest',
    };
  }
  const seconds = Math.ceil(longestStatementTimeoutMs / 1000) + Math.max(5, Math.ceil(longestStatementTimeoutMs / 10_000));
  return { seconds, reason: `a little above the longest statement_timeout the server sets (${formatSeconds(longestStatementTimeoutMs / 1000)}), so the server cancels first` };
}

function formatSeconds(seconds: number): string {
  return Number.isInteger(seconds) ? `${seconds}s` : `${seconds.toFixed(3)}s`;
}

/** Whether PgBouncer's ini format can hold the name as a [databases] key (it has no quoting for keys). */
export function isPlainDatabaseName(name: string): boolean {
  return /^[A-Za-z0-9_.$-]+$/.test(name);
}

/** A libpq connection-string value, quoted when needed. */
function connValue(value: string): string {
  return /^[^\s'\\=]+$/.test(value) ? value : `'${value.replace(/['\\]/g, (c) => `\\${c}`)}'`;
}

/** pgbouncer.ini for the cluster, each setting with a comment saying why. */
export function renderPgBouncerIni(input: PgBouncerConfigInput): string {
  const { advice } = input;
  const backend = `host=${connValue(input.backendHost)} port=${input.backendPort}`;
  const lines: string[] = [
    `; pgbouncer.ini for cluster "${input.cluster}", written by pgwarden pooler config (docs/pooling.md).`,
    `; Every database points at node "${input.node}" (${input.backendHost}:${input.backendPort}), the primary;`,
    '; a switchover repoints these lines and RELOADs PgBouncer. No password is in this file.',
    '',
    '[databases]',
  ];
  if (input.databases === null) {
    lines.push('; Any database name a client asks for is forwarded to the primary (--wildcard).', `* = ${backend}`);
  } else {
    lines.push('; One line per database that accepts connections. Remove the ones that need no pooling: the others get their share.');
    for (const name of input.databases) {
      if (isPlainDatabaseName(name)) lines.push(`${name} = ${backend} dbname=${name}`);
      else lines.push(`; ${JSON.stringify(name)} is left out: PgBouncer's ini cannot hold that name as a key (rename the database, or use * = ${backend})`);
    }
  }
  const setting = (comment: readonly string[], key: string, value: string | number): void => {
    lines.push('', ...comment.map((text) => `; ${text}`), `${key} = ${value}`);
  };
  lines.push('', '[pgbouncer]');
  setting(['Where clients connect. 127.0.0.1 accepts local clients only; * accepts the network (then firewall it).'], 'listen_addr', input.listenAddr);
  setting([], 'listen_port', input.listenPort);
  setting(
    input.poolMode === 'transaction'
      ? ['transaction: a server connection serves a client for one transaction only. Session state does not survive',
        'between transactions (SET, temporary tables, advisory locks, LISTEN, WITH HOLD cursors, and named prepared',
        'statements before PgBouncer 1.21): see docs/pooling.md before switching an application over.']
      : ['session: a client keeps its server connection until it disconnects. Everything works, but the pool only helps',
        'with connection set-up cost, not with many idle clients.'],
    'pool_mode', input.poolMode,
  );
  setting(
    ['Clients prove their password with SCRAM. PgBouncer fetches each user\'s SCRAM secret from the server with',
      'auth_query, logged in as auth_user, so passwords are managed on the server only (ALTER ROLE … PASSWORD).'],
    'auth_type', 'scram-sha-256',
  );
  setting([`Created by auth.sql; its password goes in the auth_file (${passwordPlaceholder} until you fill it in).`], 'auth_user', input.authUser);
  setting(
    [`${authFunction} returns the SCRAM secret of a non-superuser login role (superusers cannot log in through PgBouncer).`,
      'It runs in the database the client asks for, so auth.sql creates it in every database listed above.'],
    'auth_query', `SELECT usename, passwd FROM ${authFunction}($1)`,
  );
  setting(['Holds the passwords of auth_user and the admin users only, in plain text (PgBouncer logs in with the auth',
    'user\'s; a SCRAM secret does not work there). Mode 0600, owned by the user PgBouncer runs as.'], 'auth_file', input.authFilePath);
  if (input.adminUsers.length > 0) {
    const users = input.adminUsers.join(',');
    setting(['The admin console (database "pgbouncer"): SHOW POOLS for pgwarden\'s Pool screen, PAUSE/RESUME/RELOAD for a',
      'switchover. These users authenticate against the auth_file, not auth_query.'], 'admin_users', users);
    setting([], 'stats_users', users);
  } else {
    lines.push('', '; admin_users / stats_users: add the user pgwarden connects to the admin console as (the cluster\'s "pgbouncer"',
      '; dsn in the config), and its password to the auth_file: the console does not use auth_query.');
  }
  lines.push('', `; Sizing (pgwarden pooler advice): PgBouncer may open ${advice.serverBudget} server connections in all.`);
  for (const reason of advice.reasoning) lines.push(`;   ${reason}`);
  for (const warning of advice.warnings) lines.push(`;   WARNING: ${warning}`);
  setting(['Server connections per (database, user) pool.'], 'default_pool_size', advice.defaultPoolSize);
  setting(['Extra server connections a pool may open once a client has waited reserve_pool_timeout seconds.'], 'reserve_pool_size', advice.reservePoolSize);
  setting([], 'reserve_pool_timeout', 3);
  setting(['Server connections per database over all its pools, reserve included: the hard limit that keeps PgBouncer',
    'within the server\'s max_connections.'], 'max_db_connections', advice.maxDbConnections);
  setting(['Client connections PgBouncer accepts (each one is a file descriptor: raise LimitNOFILE/ulimit -n to match).'], 'max_client_conn', 1000);
  setting([`Cancels a query running longer than this many seconds: ${input.queryTimeout.reason}.`], 'query_timeout', input.queryTimeout.seconds);
  setting(['A client that waited this long for a server connection gets an error instead of waiting forever.'], 'query_wait_timeout', 120);
  setting(['Closes server connections idle this long: frees max_db_connections for pools of other users, and lets the',
    'server shrink after a burst.'], 'server_idle_timeout', 120);
  setting(['Closes a server connection (when unused) after this many seconds: releases backend memory and picks up',
    'changed role and database settings (ALTER ROLE … SET applies to new sessions only).'], 'server_lifetime', 3600);
  setting(['Startup parameters PgBouncer accepts and drops instead of refusing the client: extra_float_digits (sent by',
    'JDBC and others) is harmless; "options" (-c settings in the connection string) is silently ignored, so',
    'per-session settings must be set with ALTER ROLE … SET on the server instead.'], 'ignore_startup_parameters', 'extra_float_digits,options');
  lines.push('', '; Log file and pid file: keep what your package sets (Debian: /var/log/postgresql/pgbouncer.log,',
    '; /var/run/postgresql/pgbouncer.pid, unix_socket_dir /var/run/postgresql).');
  return `${lines.join('\n')}\n`;
}

/** The auth_file: one line per user, the password replaced by the placeholder. */
export function renderUserlist(input: Pick<PgBouncerConfigInput, 'authUser' | 'adminUsers'>): string {
  const quote = (text: string): string => `"${text.replaceAll('"', '""')}"`;
  const users = [...new Set([input.authUser, ...input.adminUsers])];
  return `${users.map((user) => `${quote(user)} ${quote(passwordPlaceholder)}`).join('\n')}\n`;
}

/** A psql meta-command argument in single quotes. */
function psqlArgument(text: string): string {
  return `'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
}

/**
 * auth.sql: a psql script, run once by a superuser on the primary. It creates the auth role without
 * a password (\password sets it, hashed by psql), and the lookup function in every pooled database.
 */
export function renderAuthSql(input: Pick<PgBouncerConfigInput, 'cluster' | 'authUser' | 'databases' | 'backendHost' | 'backendPort'>): string {
  const role = quoteIdent(input.authUser);
  const schema = quoteIdent(authSchema);
  const fn = `${schema}.${quoteIdent('get_auth')}`;
  const lines = [
    `-- auth.sql for cluster "${input.cluster}", written by pgwarden pooler config (docs/pooling.md).`,
    '-- Creates the role PgBouncer logs in as for auth_query, and the function that hands it SCRAM secrets.',
    '-- Read it, then run it as a superuser on the primary:',
    `--   psql "host=${input.backendHost} port=${input.backendPort} dbname=postgres user=postgres" -f auth.sql`,
    `-- Then give ${input.authUser} a password (psql asks for it and sends it hashed; it is never in a file):`,
    `--   \\password ${input.authUser}`,
    `-- and write the same password in the auth_file in place of ${passwordPlaceholder}.`,
    '\\set ON_ERROR_STOP on',
    '',
    `SELECT format('CREATE ROLE %I LOGIN', ${quoteLiteral(input.authUser)})`,
    `  WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(input.authUser)}) \\gexec`,
  ];
  const databases = (input.databases ?? []).filter(isPlainDatabaseName);
  if (input.databases === null) {
    lines.push('', '-- The ini forwards any database name (--wildcard): run the part below in every database clients connect to.');
  }
  const functionPart = [
    `CREATE SCHEMA IF NOT EXISTS ${schema};`,
    `REVOKE ALL ON SCHEMA ${schema} FROM PUBLIC;`,
    `GRANT USAGE ON SCHEMA ${schema} TO ${role};`,
    '-- SECURITY DEFINER: runs with its owner\'s (a superuser\'s) right to read pg_shadow; the fixed search_path',
    '-- keeps a caller\'s objects out of it. Superusers and expired passwords are never handed out.',
    `CREATE OR REPLACE FUNCTION ${fn}(p_usename text)`,
    'RETURNS TABLE (usename name, passwd text)',
    'LANGUAGE sql STABLE SECURITY DEFINER',
    'SET search_path = pg_catalog, pg_temp',
    'AS $$',
    '  SELECT s.usename, s.passwd FROM pg_catalog.pg_shadow s',
    '  WHERE s.usename = p_usename AND NOT s.usesuper',
    '    AND (s.valuntil IS NULL OR s.valuntil > pg_catalog.now())',
    '$$;',
    `REVOKE ALL ON FUNCTION ${fn}(text) FROM PUBLIC;`,
    `GRANT EXECUTE ON FUNCTION ${fn}(text) TO ${role};`,
  ];
  if (databases.length === 0) {
    lines.push('', ...functionPart);
  }
  for (const database of databases) {
    // auth_query runs in this database as the auth user, which needs CONNECT even where PUBLIC lost it.
    lines.push('', `\\connect -reuse-previous=on ${psqlArgument(`dbname=${connValue(database)}`)}`,
      `GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${role};`, ...functionPart);
  }
  return `${lines.join('\n')}\n`;
}
