/** The validated configuration, as the rest of pgwarden sees it. */
import type { AlertingConfig } from './alerting.js';
import type { BackupsConfig } from './backups.js';
import type { FailoverConfig } from './failover.js';
import type { HealthConfig } from './health.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

/** Where and how to connect, resolved the way libpq resolves it (DSN, then PG* variables, then defaults). */
export interface ConnectionSpec {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
  /** Only when given explicitly (DSN or PGPASSWORD); otherwise ~/.pgpass is consulted at connect time. */
  readonly password: string | undefined;
  readonly sslmode: SslMode;
  readonly sslrootcert: string | undefined;
  readonly connectTimeoutMs: number;
}

export interface NodeConfig {
  readonly name: string;
  readonly connection: ConnectionSpec;
  /** The node's data directory on this host, when it is local: needed to stop, rewind and restart it (switchover, fencing, rejoin). */
  readonly dataDir: string | undefined;
}

export interface PgBouncerConfig {
  /** Connection to the admin console (database "pgbouncer"). */
  readonly connection: ConnectionSpec;
  /** Its pgbouncer.ini on this host: pgwarden rewrites the [databases] host and port to repoint it, then RELOADs. */
  readonly ini: string | undefined;
}

export interface ClusterConfig {
  readonly name: string;
  readonly nodes: readonly NodeConfig[];
  readonly pgbouncer: PgBouncerConfig | undefined;
  /** Switchover and failover settings (src/config/failover.ts). */
  readonly failover: FailoverConfig;
}

export interface ProbeSettings {
  readonly enabled: boolean;
  readonly cadenceMs: number | undefined;
  readonly timeoutMs: number | undefined;
}

export interface Config {
  /** The file this came from, or a description such as "defaults (no config file)". */
  readonly source: string;
  readonly clusters: readonly ClusterConfig[];
  readonly refreshMs: number;
  /** statement_timeout for every probe query. */
  readonly statementTimeoutMs: number;
  /** lock_timeout for every probe query. */
  readonly lockTimeoutMs: number;
  readonly probes: Readonly<Record<string, ProbeSettings>>;
  /** Remapped keys: command id → keys (src/keymap.ts names). */
  readonly keys: Readonly<Record<string, readonly string[]>>;
  /** Where console actions are logged; undefined means the default location. */
  readonly auditLog: string | undefined;
  /** Channels, teams, timings and threshold overrides of the alert engine (src/config/alerting.ts). */
  readonly alerting: AlertingConfig;
  /** HTTP endpoints and custom SQL checks of the application (src/config/health.ts). */
  readonly health: HealthConfig;
  /** Repositories, keys, schedules and retention of backups (src/config/backups.ts); undefined: no backups configured. */
  readonly backups: BackupsConfig | undefined;
}
