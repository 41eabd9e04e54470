/**
 * The shared fixture of the switchover and failover tests (issue 6): a primary p1 with
 * wal_log_hints=on (so pg_rewind works), two standbys s1 and s2 streaming from it through the
 * slots replica_s1 and replica_s2 with application_name = their node name (cluster_name), optionally
 * synchronous (synchronous_standby_names = 'ANY 1 (p1, s1, s2)' on every node, so the setting
 * survives a change of primary), a real PgBouncer in transaction pooling whose pgbouncer.ini
 * points its [databases] entry `app` at the primary, and a pgwarden config file naming all of it
 * (clusters[0] "main": nodes p1, s1, s2 with dsn and dataDir, pgbouncer {dsn, ini}, failover).
 *
 * Every node runs as the postgres OS user with trust authentication on 127.0.0.1; nothing here
 * needs a password. The test harness's clusters keep working after pgwarden stopped, rewound or
 * restarted them: their ports and configuration files stay as they were.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createPrimary, createStandby, waitFor, type TestCluster } from './cluster.js';
import { startPgBouncer, type TestPgBouncer } from './pgbouncer.js';

export const NODE_NAMES = ['p1', 's1', 's2'] as const;
export type NodeName = (typeof NODE_NAMES)[number];

/** The [databases] entry of the fixture's PgBouncer (it forwards to database postgres). */
export const POOLED_DATABASE = 'app';

export interface FailoverClusterOptions {
  /** A prefix for the temporary directories (default "fo"). */
  readonly name?: string;
  /** synchronous_standby_names = 'ANY 1 (p1, s1, s2)' on every node. */
  readonly synchronous?: boolean;
  /** Overrides written into clusters[0].failover of the config (JSON keys, e.g. { catchUpTimeoutSeconds: 2 }). */
  readonly failover?: Readonly<Record<string, unknown>>;
  /** Start a PgBouncer in front of the primary (default true). */
  readonly pgbouncer?: boolean;
  /** Extra server settings for every node. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
}

export interface FailoverCluster {
  /** The clusters by node name (p1 the primary at the start). */
  readonly nodes: Readonly<Record<NodeName, TestCluster>>;
  node(name: NodeName): TestCluster;
  /** The PgBouncer (undefined when started without one). */
  readonly bouncer: TestPgBouncer | undefined;
  /** Its client port. */
  readonly pgbouncerPort: number | undefined;
  /** Its pgbouncer.ini, the file pgwarden rewrites to repoint it. */
  readonly iniPath: string | undefined;
  /** A client DSN through PgBouncer (database app → postgres on the primary). */
  appDsn(): string;
  /** The pgwarden config file (JSON). */
  readonly configPath: string;
  /** The config as written, to derive variants from. */
  readonly config: ConfigJson;
  /** Writes a variant of the config (`change` gets a deep copy) next to the main one; returns its path. */
  writeConfig(name: string, change: (config: ConfigJson) => void): Promise<string>;
  /** Stops PgBouncer, destroys the three clusters and removes the config directory; safe to call twice. */
  cleanup(): Promise<void>;
}

// The shape written to the config file; loose on purpose so tests can break it.
export interface ConfigJson {
  clusters: {
    name: string;
    nodes: { name: string; dsn: string; dataDir?: string }[];
    pgbouncer?: { dsn: string; ini?: string };
    failover?: Record<string, unknown>;
  }[];
}

/** Builds the fixture; on a failure everything made so far is removed. */
export async function createFailoverCluster(options: FailoverClusterOptions = {}): Promise<FailoverCluster> {
  const prefix = options.name ?? 'fo';
  const made: TestCluster[] = [];
  let bouncer: TestPgBouncer | undefined;
  const dir = await mkdtemp(join(tmpdir(), `pgwarden-${prefix}-config-`));
  const teardown = async (): Promise<void> => {
    await bouncer?.stop().catch(() => undefined);
    await Promise.allSettled(made.map((cluster) => cluster.destroy()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const common: Record<string, string | number | boolean> = {
      wal_log_hints: true,
      // Followers whose slot is created on a new primary find the WAL they still need.
      wal_keep_size: '128MB',
      max_connections: 40,
      ...(options.synchronous === true ? { synchronous_standby_names: `ANY 1 (${NODE_NAMES.join(', ')})` } : {}),
      ...options.settings,
    };
    const p1 = await createPrimary({ name: `${prefix}-p1`, settings: { ...common, cluster_name: 'p1' } });
    made.push(p1);
    const standbys = await Promise.all(
      (['s1', 's2'] as const).map(async (name) => {
        const standby = await createStandby(p1, { name: `${prefix}-${name}`, slot: `replica_${name}`, settings: { ...common, cluster_name: name } });
        made.push(standby);
        return standby;
      }),
    );
    const [s1, s2] = standbys as [TestCluster, TestCluster];
    const nodes: Record<NodeName, TestCluster> = { p1, s1, s2 };
    // Each standby streams under its node name (the walreceiver's application_name is cluster_name).
    const rows = await p1.sql("select application_name from pg_stat_replication where state = 'streaming' order by 1");
    const streaming = rows.map((row) => row['application_name']).join(',');
    if (streaming !== 's1,s2') throw new Error(`the standbys stream as "${streaming}", expected s1,s2`);

    let iniPath: string | undefined;
    if (options.pgbouncer !== false) {
      bouncer = await startPgBouncer({
        backendHost: p1.host,
        backendPort: p1.port,
        databases: { [POOLED_DATABASE]: 'dbname=postgres' },
        poolMode: 'transaction',
        defaultPoolSize: 8,
        maxClientConn: 200,
      });
      iniPath = join(bouncer.dir, 'pgbouncer.ini');
    }
    const config: ConfigJson = {
      clusters: [
        {
          name: 'main',
          nodes: NODE_NAMES.map((name) => ({ name, dsn: nodes[name].dsn(), dataDir: nodes[name].dataDir })),
          ...(bouncer !== undefined && iniPath !== undefined ? { pgbouncer: { dsn: bouncer.adminDsn, ini: iniPath } } : {}),
          failover: { ...options.failover },
        },
      ],
    };
    const configPath = join(dir, 'pgwarden.json');
    await writeFile(configPath, JSON.stringify(config, null, 2));
    const pooler = bouncer;
    let cleaned: Promise<void> | undefined;
    return {
      nodes,
      node: (name) => nodes[name],
      bouncer: pooler,
      pgbouncerPort: pooler?.port,
      iniPath,
      appDsn: () => {
        if (pooler === undefined) throw new Error('this fixture has no PgBouncer');
        return pooler.dsn(POOLED_DATABASE);
      },
      configPath,
      config,
      writeConfig: async (name, change) => {
        const copy = JSON.parse(JSON.stringify(config)) as ConfigJson;
        change(copy);
        const path = join(dir, `${name}.json`);
        await writeFile(path, JSON.stringify(copy, null, 2));
        return path;
      },
      cleanup: () => {
        cleaned ??= teardown();
        return cleaned;
      },
    };
  } catch (error) {
    await teardown();
    throw error;
  }
}

/** One query on a fresh connection (through PgBouncer or straight to a node); returns the rows. */
export async function queryDsn(dsn: string, text: string, values: readonly unknown[] = []): Promise<Record<string, unknown>[]> {
  // Bounded: a PgBouncer left paused must fail the test, not hang it.
  const client = new pg.Client({ connectionString: dsn, connectionTimeoutMillis: 15_000, query_timeout: 15_000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(text, [...values])).rows as Record<string, unknown>[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * PgBouncer's admin console: whether it is paused (SHOW STATE, PgBouncer 1.21+; null on older
 * ones, where only a query through it tells), and where each [databases] entry points with its
 * per-database paused flag (SHOW DATABASES).
 */
export async function pgbouncerState(bouncer: TestPgBouncer): Promise<{ paused: boolean | null; databases: Record<string, { host: string; port: number; paused: number }> }> {
  const state = await queryDsn(bouncer.adminDsn, 'SHOW STATE').catch(() => undefined);
  const databases: Record<string, { host: string; port: number; paused: number }> = {};
  for (const row of await queryDsn(bouncer.adminDsn, 'SHOW DATABASES')) {
    databases[String(row['name'])] = { host: typeof row['host'] === 'string' ? row['host'] : '', port: Number(row['port']), paused: Number(row['paused']) };
  }
  return { paused: state === undefined ? null : state.some((row) => row['key'] === 'paused' && row['value'] === 'yes'), databases };
}

/** Role of a node now: whether it is in recovery, and the application_names streaming from it. */
export async function roleOf(cluster: TestCluster): Promise<{ inRecovery: boolean; streamingTo: string[]; upstreamPort: number | null }> {
  const [row] = await cluster.sql(`select pg_is_in_recovery() as r,
    (select sender_port from pg_stat_wal_receiver where status = 'streaming') as upstream`);
  const standbys = await cluster.sql("select application_name from pg_stat_replication where state = 'streaming' order by 1");
  return {
    inRecovery: row?.['r'] === true,
    streamingTo: standbys.map((one) => String(one['application_name'])),
    upstreamPort: row?.['upstream'] === null || row?.['upstream'] === undefined ? null : Number(row['upstream']),
  };
}

/** SIGKILL to the postmaster and every process it started, at once; resolves when all are gone. */
export async function killDashNine(cluster: TestCluster): Promise<void> {
  const pid = Number.parseInt(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8'), 10);
  // Gone means reaped: a zombie still answers kill(pid, 0), and a restarted postmaster then
  // refuses to start ("lock file postmaster.pid already exists") until init reaps it.
  const alive = (target: number): boolean => existsSync(`/proc/${target}`);
  const children = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).flatMap((entry) => {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === pid ? [Number(entry)] : [];
    } catch {
      return [];
    }
  });
  for (const target of [pid, ...children]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await waitFor(`${cluster.name}'s processes to die`, async () => [pid, ...children].every((target) => !alive(target)), { intervalMs: 20 });
}
