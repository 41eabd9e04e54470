/**
 * How a cluster fails over and switches over (issue 6): whether `--watch` may fail over on its own,
 * when it declares the primary lost, the lag beyond which a standby is never promoted (DESIGN §7
 * rule 10), how long a switchover may hold PgBouncer paused, and how standbys connect to their
 * new upstream. Every default is what the docs (docs/failover.md) describe.
 */
import type { Json, Validator } from './load.js';

export interface FailoverConfig {
  /** Whether `pgwarden --watch` fails over by itself (opt-in). */
  readonly automatic: boolean;
  /** The primary counts as lost after the watcher has not reached it for this long, and every reachable standby lost its stream. */
  readonly lostAfterMs: number;
  /** A standby whose received WAL is further than this behind the primary's last known position is never promoted. */
  readonly maxLagBytes: number;
  /** How long a switchover waits for PgBouncer's PAUSE to drain the transactions in flight. */
  readonly pauseTimeoutMs: number;
  /** How long a switchover waits for the candidate to replay everything the old primary wrote. */
  readonly catchUpTimeoutMs: number;
  /** The role standbys stream as (primary_conninfo user); undefined: the user of each node's dsn. */
  readonly replicationUser: string | undefined;
  /** The passfile standbys read the replication password from; undefined: the server account's ~/.pgpass. */
  readonly passfile: string | undefined;
}

export const defaultFailover: FailoverConfig = {
  automatic: false,
  lostAfterMs: 5_000,
  maxLagBytes: 16 * 1024 * 1024,
  pauseTimeoutMs: 10_000,
  catchUpTimeoutMs: 30_000,
  replicationUser: undefined,
  passfile: undefined,
};

const keys = ['automatic', 'lostAfterSeconds', 'maxLagBytes', 'pauseTimeoutSeconds', 'catchUpTimeoutSeconds', 'replicationUser', 'passfile'];

/** `clusters[i].failover`; absent: the defaults (automatic failover off). */
export function parseFailover(v: Validator, value: Json | undefined, key: string): FailoverConfig {
  if (value === undefined) return defaultFailover;
  const raw = v.object(value, key, keys);
  const seconds = (name: string, min: number, max: number, fallbackMs: number): number =>
    raw[name] === undefined ? fallbackMs : v.integer(raw[name], `${key}.${name}`, min, max) * 1000;
  const passfile = raw['passfile'] === undefined ? undefined : v.string(raw['passfile'], `${key}.passfile`, '/var/lib/postgresql/.pgpass');
  if (passfile !== undefined && !passfile.startsWith('/')) v.fail(`${key}.passfile`, 'expected an absolute path', 'write the full path, for example "/var/lib/postgresql/.pgpass"');
  return {
    automatic: raw['automatic'] === undefined ? defaultFailover.automatic : v.boolean(raw['automatic'], `${key}.automatic`),
    lostAfterMs: seconds('lostAfterSeconds', 1, 3600, defaultFailover.lostAfterMs),
    maxLagBytes: raw['maxLagBytes'] === undefined ? defaultFailover.maxLagBytes : v.integer(raw['maxLagBytes'], `${key}.maxLagBytes`, 0, Number.MAX_SAFE_INTEGER),
    pauseTimeoutMs: seconds('pauseTimeoutSeconds', 1, 600, defaultFailover.pauseTimeoutMs),
    catchUpTimeoutMs: seconds('catchUpTimeoutSeconds', 1, 3600, defaultFailover.catchUpTimeoutMs),
    replicationUser: raw['replicationUser'] === undefined ? undefined : v.string(raw['replicationUser'], `${key}.replicationUser`, 'replicator'),
    passfile,
  };
}
