/**
 * `pgwarden pooler config` and `pgwarden pooler advice` (docs/pooling.md): a PgBouncer
 * configuration for a cluster, and the pool sizes it uses, from the primary as it is now (the
 * first configured node that is not in recovery).
 *
 *   advice  reads max_connections, the reserved slots, the databases and login roles, and samples
 *           pg_stat_activity for the concurrency; prints the pool sizes with the reasoning.
 *   config  the same, then writes pgbouncer.ini, userlist.txt (the auth_file, mode 0600, with a
 *           placeholder for the auth user's password) and auth.sql into --out DIR, or prints them
 *           with a header naming where each goes. auth.sql is shown, never run: the DBA reads it and
 *           runs it with psql.
 *
 * Exit 0; 1 the server could not be read; 2 bad usage, config, or a file that would be overwritten.
 * No password is read into the output: the node's connection spec is used to connect only.
 */
import { open, mkdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { availableParallelism, networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../atomic-file.js';
import {
  advisePoolSizes, type PoolAdvice, type PoolAdviceInput,
} from '../cluster/pool-advice.js';
import {
  chooseQueryTimeout, defaultAuthUser, passwordPlaceholder, renderAuthSql, renderPgBouncerIni, renderUserlist,
  timeSettingMs, type PgBouncerConfigInput, type PoolMode,
} from '../cluster/pgbouncer-config.js';
import { loadConfig } from '../config/load.js';
import type { ClusterConfig, ConnectionSpec, NodeConfig } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, isUserError, messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { probeIds } from '../probes/index.js';
import { describeError, failure } from './command-output.js';
import { UsageError } from './key-options.js';
import type { CommandOutput } from './show.js';

const usage = [
  'pgwarden pooler config --config FILE [--cluster C] [--out DIR] [--listen-addr ADDR] [--listen-port N] [--pool-mode transaction|session]',
  '[--auth-user NAME] [--admin-user NAME]... [--wildcard] [--cpus N] [--samples N] [--force]',
  'or pgwarden pooler advice --config FILE [--cluster C] [--cpus N] [--samples N] [--json]',
].join(' ');

/** Where the files go when printed rather than written (the Debian package's layout). */
const defaultConfigDir = '/etc/pgbouncer';
const defaultSamples = 10;
const sampleIntervalMs = 200;
const files = { ini: 'pgbouncer.ini', userlist: 'userlist.txt', authSql: 'auth.sql' } as const;

type Env = Readonly<Record<string, string | undefined>>;
type Values = Readonly<Record<string, string | boolean | string[] | undefined>>;

function parse(args: readonly string[]): { command: 'config' | 'advice'; values: Values } {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...args],
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: 'string' },
        cluster: { type: 'string' },
        out: { type: 'string' },
        'listen-addr': { type: 'string' },
        'listen-port': { type: 'string' },
        'pool-mode': { type: 'string' },
        'auth-user': { type: 'string' },
        'admin-user': { type: 'string', multiple: true },
        wildcard: { type: 'boolean', default: false },
        cpus: { type: 'string' },
        samples: { type: 'string' },
        force: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    throw new UsageError(messageOf(error));
  }
  const [command, ...extra] = parsed.positionals;
  if (command !== 'config' && command !== 'advice') throw new UsageError(`unknown pooler command "${command ?? ''}" (known: config, advice)`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0] ?? ''}"`);
  return { command, values: parsed.values };
}

function wholeNumber(values: Values, name: string, min: number, max: number): number | undefined {
  const text = values[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (typeof text !== 'string' || !/^\d+$/.test(text) || value < min || value > max) throw new UsageError(`--${name} takes a whole number from ${min} to ${max}`);
  return value;
}

/** What was read from the primary. */
interface ServerFacts {
  readonly maxConnections: number;
  readonly superuserReserved: number;
  readonly reserved: number;
  readonly databases: readonly string[];
  /** The longest statement_timeout any session can get, in ms; null when some get none. */
  readonly longestStatementTimeoutMs: number | null;
  readonly loginRoles: number;
  readonly usersSeen: number;
  readonly peakActive: number;
  readonly samples: number;
}

async function readServer(session: DbSession, authUser: string, samples: number): Promise<ServerFacts> {
  const [limits] = await session.query({
    text: `select current_setting('max_connections')::int as max_connections,
                  current_setting('superuser_reserved_connections')::int as superuser_reserved,
                  coalesce(current_setting('reserved_connections', true), '0')::int as reserved,
                  current_setting('statement_timeout') as statement_timeout`,
  });
  const databases = (await session.query({ text: 'select datname from pg_catalog.pg_database where datallowconn and not datistemplate order by datname' }))
    .map((row) => String(row['datname']));
  // Sessions get the server's statement_timeout unless a role or database setting overrides it.
  const overrides = await session.query({
    text: "select substr(s, length('statement_timeout=') + 1) as value from pg_catalog.pg_db_role_setting, unnest(setconfig) as s where s like 'statement_timeout=%'",
  });
  const serverTimeout = limits?.['statement_timeout'];
  const timeouts = [typeof serverTimeout === 'string' ? serverTimeout : '0', ...overrides.map((row) => String(row['value']))].map((text) => timeSettingMs(text) ?? 0);
  const longest = timeouts.some((ms) => ms <= 0) ? null : Math.max(...timeouts);
  const [roles] = await session.query({
    text: "select count(*)::int as n from pg_catalog.pg_roles where rolcanlogin and not rolsuper and rolname <> $1 and rolname !~ '^pg_'",
    values: [authUser],
  });

  // The concurrency: active client backends per database, sampled; and who is connected at all.
  let peakActive = 0;
  const users = new Set<string>();
  for (let sample = 0; sample < samples; sample++) {
    if (sample > 0) await delay(sampleIntervalMs);
    const rows = await session.query({
      text: `select a.datname, a.usename, r.rolsuper, a.state = 'active' as active
               from pg_catalog.pg_stat_activity a left join pg_catalog.pg_roles r on r.oid = a.usesysid
              where a.backend_type = 'client backend' and a.pid <> pg_backend_pid()
                and coalesce(a.application_name, '') not like 'pgwarden%'`,
    });
    const active = new Map<string, number>();
    for (const row of rows) {
      const database = String(row['datname']);
      const user = row['usename'];
      if (row['active'] === true) active.set(database, (active.get(database) ?? 0) + 1);
      if (row['rolsuper'] === false && typeof user === 'string' && user !== authUser) users.add(user);
    }
    peakActive = Math.max(peakActive, ...active.values());
  }
  return {
    maxConnections: Number(limits?.['max_connections']),
    superuserReserved: Number(limits?.['superuser_reserved']),
    reserved: Number(limits?.['reserved']),
    databases,
    longestStatementTimeoutMs: longest,
    loginRoles: Number(roles?.['n'] ?? 0),
    usersSeen: users.size,
    peakActive,
    samples,
  };
}

/** Whether the server runs on this host, so that this host's CPU count is the server's. */
function isLocal(host: string): boolean {
  if (host.startsWith('/') || host === 'localhost') return true;
  const addresses = Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((info) => info.address));
  return ['127.0.0.1', '::1', ...addresses].includes(host);
}

function adviceInput(facts: ServerFacts, spec: ConnectionSpec, cpusFlag: number | undefined): PoolAdviceInput {
  const cpus = cpusFlag ?? (isLocal(spec.host) ? availableParallelism() : null);
  const cpusSource = cpusFlag !== undefined ? '--cpus' : cpus === null ? null : 'this host: the server is local';
  const seen = facts.usersSeen > 0;
  return {
    maxConnections: facts.maxConnections,
    superuserReservedConnections: facts.superuserReserved,
    reservedConnections: facts.reserved,
    databases: facts.databases.length,
    users: seen ? facts.usersSeen : Math.max(1, facts.loginRoles),
    usersSource: seen ? 'non-superusers seen connected while sampling' : 'non-superuser login roles; none was seen connected',
    peakActive: facts.samples > 0 ? facts.peakActive : null,
    samples: facts.samples,
    cpus,
    cpusSource,
  };
}

function chooseCluster(values: Values, env: Env): ClusterConfig {
  const config = loadConfig({ configFile: values['config'] as string | undefined, dsn: undefined, knownProbes: probeIds, env });
  const name = values['cluster'] as string | undefined;
  const cluster = name === undefined ? config.clusters[0] : config.clusters.find((c) => c.name === name);
  if (cluster === undefined) throw new UsageError(`no cluster named "${name ?? ''}" in ${config.source}`);
  return cluster;
}

/**
 * The cluster's primary: the first configured node that answers and is not in recovery (the nodes
 * may be listed in any order). Its session is left open for the reading.
 */
async function openPrimary(cluster: ClusterConfig): Promise<{ node: NodeConfig; session: DbSession }> {
  const seen: string[] = [];
  for (const node of cluster.nodes) {
    let session: DbSession | undefined;
    try {
      session = await DbSession.open(node.connection, 'pgwarden pooler');
      const [row] = await session.query({ text: 'select pg_is_in_recovery() as standby' });
      if (row?.['standby'] === false) return { node, session };
      seen.push(`${node.name}: a standby`);
    } catch (error) {
      if (!isUserError(error)) throw error;
      seen.push(`${node.name}: ${describeError(error)}`);
    }
    await session?.close();
  }
  throw new UserError(`no primary found in cluster "${cluster.name}" (${seen.join('; ')})`, 'start the primary, or check the nodes\' dsn in the config');
}

function renderAdvice(cluster: string, node: NodeConfig, advice: PoolAdvice): string {
  const lines = [
    `Pool sizes for cluster "${cluster}" (node ${node.name}, ${node.connection.host}:${node.connection.port})`,
    `  default_pool_size   ${advice.defaultPoolSize}`,
    `  reserve_pool_size   ${advice.reservePoolSize}`,
    `  max_db_connections  ${advice.maxDbConnections}`,
    'Why:',
    ...advice.reasoning.map((line) => `  - ${line}`),
  ];
  if (advice.warnings.length > 0) lines.push('Warnings:', ...advice.warnings.map((line) => `  - ${line}`));
  return `${lines.join('\n')}\n`;
}

/** Runs `pgwarden pooler …` with the arguments after "pooler". */
export async function poolerCommand(args: readonly string[], env: Env = process.env): Promise<CommandOutput> {
  let command: 'config' | 'advice';
  let values: Values;
  let cluster: ClusterConfig;
  let cpus: number | undefined;
  let samples: number;
  let listenPort: number;
  let poolMode: PoolMode;
  try {
    ({ command, values } = parse(args));
    cluster = chooseCluster(values, env);
    cpus = wholeNumber(values, 'cpus', 1, 4096);
    samples = wholeNumber(values, 'samples', 0, 600) ?? defaultSamples;
    listenPort = wholeNumber(values, 'listen-port', 1, 65_535) ?? 6432;
    const mode = (values['pool-mode'] as string | undefined) ?? 'transaction';
    if (mode !== 'transaction' && mode !== 'session') throw new UsageError(`--pool-mode takes transaction or session, not "${mode}"`);
    poolMode = mode;
  } catch (error) {
    if (error instanceof UsageError) return failure(`pgwarden: pooler: ${error.message}\n  usage: ${usage}`, 2);
    if (isUserError(error)) return failure(`pgwarden: pooler: ${describeError(error)}`, 2);
    throw error;
  }
  const authUser = (values['auth-user'] as string | undefined) ?? defaultAuthUser;

  let facts: ServerFacts;
  let node: NodeConfig;
  let session: DbSession | undefined;
  try {
    ({ node, session } = await openPrimary(cluster));
    facts = await readServer(session, authUser, samples);
  } catch (error) {
    if (!isUserError(error)) throw error;
    return failure(`pgwarden: pooler: cannot read the primary: ${describeError(error)}`, 1);
  } finally {
    await session?.close();
  }
  const advice = advisePoolSizes(adviceInput(facts, node.connection, cpus));
  if (command === 'advice') {
    if (values['json'] === true) {
      const document = { cluster: cluster.name, node: node.name, inputs: adviceInput(facts, node.connection, cpus), advice };
      return { stdout: `${JSON.stringify(toJsonValue(document), null, 2)}\n`, stderr: '', exitCode: 0 };
    }
    return { stdout: renderAdvice(cluster.name, node, advice), stderr: '', exitCode: 0 };
  }

  const out = values['out'] as string | undefined;
  const adminUsers = (values['admin-user'] as string[] | undefined) ?? (cluster.pgbouncer === undefined ? [] : [cluster.pgbouncer.connection.user]);
  const input: PgBouncerConfigInput = {
    cluster: cluster.name,
    node: node.name,
    backendHost: node.connection.host,
    backendPort: node.connection.port,
    databases: values['wildcard'] === true ? null : facts.databases,
    listenAddr: (values['listen-addr'] as string | undefined) ?? '127.0.0.1',
    listenPort,
    poolMode,
    authUser,
    adminUsers,
    authFilePath: join(out === undefined ? defaultConfigDir : resolve(out), files.userlist),
    advice,
    queryTimeout: chooseQueryTimeout(facts.longestStatementTimeoutMs),
  };
  const ini = renderPgBouncerIni(input);
  const userlist = renderUserlist(input);
  const authSql = renderAuthSql(input);
  const passwordUsers = [...new Set([authUser, ...adminUsers])].join(', ');
  const nextSteps = [
    'Next:',
    `  1. Read auth.sql, then run it on the primary as a superuser (psql -f auth.sql); pgwarden does not run it.`,
    `  2. Set the password of ${authUser} with psql's \\password ${authUser}, and write it in ${input.authFilePath} in place of ${passwordPlaceholder}${adminUsers.length > 0 ? ` (likewise for ${adminUsers.join(', ')})` : ''}.`,
    '  3. Start or reload PgBouncer, then point the applications at it (docs/pooling.md: what breaks under transaction pooling).',
  ].join('\n');

  if (out === undefined) {
    const sections = [
      `# ==> ${join(defaultConfigDir, files.ini)} <==\n${ini}`,
      `# ==> ${input.authFilePath} (mode 0600, owned by the user PgBouncer runs as; passwords of ${passwordUsers}) <==\n${userlist}`,
      `-- ==> ${files.authSql} (run on the primary with psql; not run by pgwarden) <==\n${authSql}`,
    ];
    return { stdout: `${sections.join('\n')}\n${nextSteps}\n`, stderr: '', exitCode: 0 };
  }

  const dir = resolve(out);
  const force = values['force'] === true;
  const userlistExists = existsSync(join(dir, files.userlist));
  for (const name of [files.ini, files.authSql]) {
    if (!force && existsSync(join(dir, name))) {
      return failure(`pgwarden: pooler: ${join(dir, name)} exists\n  hint: pass --force to replace pgbouncer.ini and auth.sql (${files.userlist} is never replaced: it may hold a password)`, 2);
    }
  }
  try {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(dir, files.ini, ini);
    await writeFileAtomic(dir, files.authSql, authSql);
    if (!userlistExists) await writeSecretFile(join(dir, files.userlist), userlist);
  } catch (error) {
    return failure(`pgwarden: pooler: cannot write into ${dir}: ${messageOf(error)}`, 1);
  }
  const written = [
    `Wrote ${join(dir, files.ini)}`,
    userlistExists
      ? `Kept ${input.authFilePath} as it is (it may hold a password); it must list ${passwordUsers}.`
      : `Wrote ${input.authFilePath} (mode 0600): replace ${passwordPlaceholder} with the password of ${passwordUsers}.`,
    `Wrote ${join(dir, files.authSql)}:`,
    '',
    authSql,
  ];
  return { stdout: `${written.join('\n')}${renderAdvice(cluster.name, node, advice)}\n${nextSteps}\n`, stderr: '', exitCode: 0 };
}

// Created with mode 0600 from the start, and never over an existing file (it may hold a password).
async function writeSecretFile(path: string, content: string): Promise<void> {
  const handle = await open(path, 'wx', 0o600);
  try {
    await handle.writeFile(content, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
}
