/**
 * Pool-size advice for a PgBouncer in front of one PostgreSQL server (docs/pooling.md): how many
 * server connections each pool and each database may open, from the server's connection limit, the
 * concurrency it has been seen running and its CPUs. Pure: `pgwarden pooler advice` and
 * `pooler config` (src/cli/pooler.ts) gather the inputs.
 *
 * The reasoning, in short: a server does its best work with a few active backends per CPU; more
 * only queue inside PostgreSQL (CPU, locks, LWLocks) instead of in PgBouncer, where waiting is cheap
 * and visible. So the pool holds what the workload was seen to need, with a margin, kept between 2
 * and 4 backends per CPU when the CPU count is known, and never more than the server can accept
 * after its reserved slots and a headroom for connections that bypass the pooler.
 */

/** What the advice is computed from. */
export interface PoolAdviceInput {
  readonly maxConnections: number;
  readonly superuserReservedConnections: number;
  /** reserved_connections (PostgreSQL 16+, for pg_use_reserved_connections); 0 before 16. */
  readonly reservedConnections: number;
  /** Databases PgBouncer pools (each gets max_db_connections). */
  readonly databases: number;
  /** Login roles expected to connect through the pooler (each gets a pool per database). */
  readonly users: number;
  /** Where the user count came from, for the reasoning, e.g. "seen connected while sampling". */
  readonly usersSource: string;
  /** The most active client backends seen in one database at once while sampling; null: not sampled. */
  readonly peakActive: number | null;
  /** How many samples the peak is taken over (for the reasoning). */
  readonly samples: number;
  /** CPUs of the server; null when not known. */
  readonly cpus: number | null;
  /** Where the CPU count came from, e.g. "--cpus" or "this host (the server is local)". */
  readonly cpusSource: string | null;
}

/** The advised PgBouncer settings, with why. */
export interface PoolAdvice {
  /** Server connections per (database, user) pool. */
  readonly defaultPoolSize: number;
  /** Extra server connections a pool may open when a client has waited reserve_pool_timeout. */
  readonly reservePoolSize: number;
  /** Server connections per database over all its pools, reserve included. */
  readonly maxDbConnections: number;
  /** Server connections left for PgBouncer in all, after the reserved slots and the headroom. */
  readonly serverBudget: number;
  /** One sentence per step of the computation, in order. */
  readonly reasoning: readonly string[];
  /** What the DBA should look at: a tiny budget, users that will contend, a workload above the CPUs. */
  readonly warnings: readonly string[];
}

/** Share of the usable slots kept for sessions that bypass the pooler (pgwarden, psql, pg_dump, maintenance). */
const headroomShare = 0.1;
/** At least this many slots are kept for them. */
const minHeadroom = 3;
/** Active backends per CPU: below the low end a busy server idles, above the high end it thrashes. */
const backendsPerCpuLow = 2;
const backendsPerCpuHigh = 4;
/** The observed peak is multiplied by this, so a busier moment than the sampled ones still fits. */
const peakMargin = 1.5;
/** PgBouncer's own default_pool_size: the pool when nothing better is known. */
const fallbackPoolSize = 20;
/** The reserve pool as a share of the pool. */
const reserveShare = 0.25;

/** The advice for the inputs (see the module comment); every number is at least 1 except the reserve. */
export function advisePoolSizes(input: PoolAdviceInput): PoolAdvice {
  const reasoning: string[] = [];
  const warnings: string[] = [];
  const databases = Math.max(1, input.databases);
  const users = Math.max(1, input.users);

  const reserved = input.superuserReservedConnections + input.reservedConnections;
  const usable = Math.max(1, input.maxConnections - reserved);
  const headroom = Math.min(Math.max(minHeadroom, Math.ceil(usable * headroomShare)), usable - 1);
  const serverBudget = Math.max(1, usable - headroom);
  reasoning.push(
    `max_connections ${input.maxConnections} minus ${reserved} reserved slot${plural(reserved)} ` +
      `(superuser_reserved_connections ${input.superuserReservedConnections}` +
      `${input.reservedConnections > 0 ? `, reserved_connections ${input.reservedConnections}` : ''}) leaves ${usable}; ` +
      `${headroom} of them stay free for sessions that bypass PgBouncer (pgwarden, psql, pg_dump, maintenance), so PgBouncer may open ${serverBudget} in all.`,
  );
  if (serverBudget < 5) warnings.push(`PgBouncer can open only ${serverBudget} server connection${plural(serverBudget)}: raise max_connections (a restart) before pooling.`);

  const perDatabase = Math.max(1, Math.floor(serverBudget / databases));
  if (databases > 1) {
    reasoning.push(`${databases} databases share them: at most ${perDatabase} each, so that all of them busy at once still fit (remove the [databases] lines of databases that need no pooling to give the others more).`);
  }

  const target = concurrencyTarget(input, reasoning, warnings);
  const wanted = Math.min(target, perDatabase);
  if (wanted < target) reasoning.push(`That is more than one database's share, so the pool gets ${wanted}.`);

  let pool: number;
  let reserve: number;
  const reserveWanted = Math.max(1, Math.ceil(wanted * reserveShare));
  if (wanted + reserveWanted <= perDatabase) {
    pool = wanted;
    reserve = reserveWanted;
  } else {
    // The share is the hard limit: carve the reserve out of it rather than go beyond.
    reserve = perDatabase >= 2 ? Math.max(1, Math.floor(perDatabase / 5)) : 0;
    pool = perDatabase - reserve;
  }
  const maxDbConnections = pool + reserve;
  reasoning.push(
    reserve === 0
      ? 'No reserve pool: the share has no room for one.'
      : `reserve_pool_size ${reserve} lets a pool open ${reserve} more when a client has waited reserve_pool_timeout, for bursts; max_db_connections ${maxDbConnections} (pool + reserve) caps each database over all its users.`,
  );

  let defaultPoolSize = pool;
  if (users > 1) {
    // When max_db_connections is reached, a waiting pool gets a server only once another pool's idle
    // server connection closes (server_idle_timeout): sharing the database up front avoids that stall.
    defaultPoolSize = Math.max(1, Math.floor(pool / users));
    reasoning.push(`${users} login roles (${input.usersSource}) each get their own pool per database: default_pool_size ${defaultPoolSize} is a fair share of ${pool}, so one role's idle servers never hold the database's limit against another.`);
    if (users > pool) warnings.push(`${users} roles share ${pool} server connections per database: some pools will wait for another's idle servers to close (server_idle_timeout). Connect fewer roles through PgBouncer, or set pool_size per user in a [users] section.`);
  } else {
    reasoning.push(`One login role (${input.usersSource}): default_pool_size ${defaultPoolSize}.`);
  }
  return { defaultPoolSize, reservePoolSize: reserve, maxDbConnections, serverBudget, reasoning, warnings };
}

// How many server connections one database's work needs at once.
function concurrencyTarget(input: PoolAdviceInput, reasoning: string[], warnings: string[]): number {
  const observedNeed = input.peakActive === null ? null : Math.max(2, Math.ceil(input.peakActive * peakMargin));
  if (input.peakActive !== null && observedNeed !== null) {
    const seen = input.peakActive === 0
      ? `No client backend was active in any of ${input.samples} sample${plural(input.samples)}`
      : `At most ${input.peakActive} client backend${plural(input.peakActive)} ran at once in one database over ${input.samples} sample${plural(input.samples)}`;
    reasoning.push(`${seen}; with a margin of ${peakMargin}× (at least 2) that is ${observedNeed}.`);
  } else {
    reasoning.push('The concurrency was not sampled.');
  }
  if (input.cpus === null) {
    const target = observedNeed ?? fallbackPoolSize;
    reasoning.push(
      `CPU count unknown (pass --cpus N): ${observedNeed === null ? `PgBouncer's default of ${fallbackPoolSize}` : `the observed need, ${target}`} is the pool, without a CPU bound.`,
    );
    return target;
  }
  const low = backendsPerCpuLow * input.cpus;
  const high = backendsPerCpuHigh * input.cpus;
  const from = input.cpusSource === null ? '' : ` (${input.cpusSource})`;
  if (observedNeed === null) {
    reasoning.push(`${input.cpus} CPU${plural(input.cpus)}${from}: ${backendsPerCpuLow} active backends per CPU, ${low}.`);
    return low;
  }
  if (observedNeed > high) {
    reasoning.push(`${input.cpus} CPU${plural(input.cpus)}${from}: more than ${backendsPerCpuHigh} active backends per CPU only queue inside the server, so the pool stops at ${high} and the rest wait in PgBouncer.`);
    warnings.push(`The workload was seen running ${input.peakActive ?? 0} queries at once on ${input.cpus} CPU${plural(input.cpus)}: clients will wait in PgBouncer. That is intended; raise default_pool_size only if they wait on I/O or locks rather than CPU (watch maxwait on the Pool screen).`);
    return high;
  }
  if (observedNeed < low) {
    reasoning.push(`${input.cpus} CPU${plural(input.cpus)}${from}: the pool is at least ${low} (${backendsPerCpuLow} per CPU), so a busier moment than the sampled ones does not queue.`);
    return low;
  }
  reasoning.push(`${input.cpus} CPU${plural(input.cpus)}${from}: that is within ${low}–${high} (${backendsPerCpuLow} to ${backendsPerCpuHigh} per CPU).`);
  return observedNeed;
}

function plural(count: number): string {
  return count === 1 ? '' : 's';
}
