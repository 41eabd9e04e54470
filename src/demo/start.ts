/**
 * Setting up and tearing down the demo: a primary and a delayed streaming standby in a temporary
 * directory, PgBouncer when installed, a data set and a workload. Whatever fails or is
 * interrupted during setup, everything created so far is stopped and removed before the error
 * is reported.
 */
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findPgTools, LocalCluster, makeOwnedDir, waitUntil, type PgTools } from '../cluster/local.js';
import { resolveConnection } from '../config/conninfo.js';
import { parseConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { DbSession } from '../db/session.js';
import { UserError, messageOf } from '../errors.js';
import { probeIds } from '../probes/index.js';
import { bloat, bloatedRows, demoAccounts, loadDemoData } from './data.js';
import { findPgBouncer, LocalPgBouncer } from './pgbouncer.js';
import { Workload } from './workload.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The replication slot the standby streams through. */
export const standbySlot = 'demo_standby';
const setupApplication = 'pgwarden-demo-setup';
const workloadStopTimeoutMs = 10_000;

/** How to set up the demo; every field is optional. */
export interface DemoOptions {
  /** Where the temporary directory goes (default: the system's temporary directory). */
  readonly parentDir?: string | undefined;
  /** Fixed ports; by default free ones are chosen. A fixed port that is taken fails the setup. */
  readonly ports?: { readonly primary?: number; readonly standby?: number; readonly pgbouncer?: number } | undefined;
  /** The standby's recovery_min_apply_delay, which makes replication lag visible (default 3000 ms). */
  readonly applyDelayMs?: number | undefined;
  /** Receives the progress lines ("starting the primary on port N…"); default: nothing. */
  readonly progress?: ((line: string) => void) | undefined;
  /** Aborting it interrupts the setup, which then cleans up and throws. */
  readonly signal?: AbortSignal | undefined;
  /** Aborting it makes any cleanup, now or later, immediate: servers are killed rather than stopped. */
  readonly forceSignal?: AbortSignal | undefined;
  /** PGWARDEN_PG_BIN and PGWARDEN_PGBOUNCER come from here (default: process.env). */
  readonly env?: Env | undefined;
}

/** libpq URIs of the demo's servers (user postgres, trust authentication, sslmode=disable). */
export interface DemoDsns {
  readonly primary: string;
  readonly standby: string;
  /** A client connection through PgBouncer; undefined without PgBouncer. */
  readonly pgbouncer: string | undefined;
  /** PgBouncer's admin console (database "pgbouncer"). */
  readonly pgbouncerAdmin: string | undefined;
}

/** A running demo. */
export interface Demo {
  /** The temporary directory that holds everything; gone after stop(). */
  readonly dir: string;
  /** Cluster "demo": nodes primary and standby, and PgBouncer when present. */
  readonly config: Config;
  /** The same configuration as a file, for `pgwarden --config`. */
  readonly configFile: string;
  readonly dsns: DemoDsns;
  /** Things the user should know, such as a missing PgBouncer. */
  readonly notes: readonly string[];
  /** The pids of the demo's servers (both postmasters, PgBouncer) that are running now. */
  pids(): readonly number[];
  /** Stops the workload, PgBouncer and both servers and removes the directory; `immediate` kills them instead. */
  stop(options?: { readonly immediate?: boolean }): Promise<void>;
}

/** Everything the demo created, in creation order, and how to take it down. */
class Parts {
  primary: LocalCluster | undefined;
  standby: LocalCluster | undefined;
  pgbouncer: LocalPgBouncer | undefined;
  workload: Workload | undefined;
  private immediate = false;
  private released: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  pids(): number[] {
    return [this.primary?.postmasterPid(), this.standby?.postmasterPid(), this.pgbouncer?.pid()].filter((pid): pid is number => pid !== undefined);
  }

  /** Kills every server now, without waiting; a release in progress then finishes quickly. */
  force(): void {
    this.immediate = true;
    this.pgbouncer?.kill();
    this.standby?.signalImmediateStop();
    this.primary?.signalImmediateStop();
  }

  release(): Promise<void> {
    this.released ??= this.tearDown();
    return this.released;
  }

  private async tearDown(): Promise<void> {
    const failures: string[] = [];
    const attempt = async (what: string, step: () => Promise<void>): Promise<void> => {
      try {
        await step();
      } catch (error) {
        failures.push(`${what}: ${messageOf(error)}`);
      }
    };
    const mode = (): 'fast' | 'immediate' => (this.immediate ? 'immediate' : 'fast');
    const workload = this.workload;
    if (workload !== undefined && !this.immediate) {
      // Bounded: the servers stop next anyway, and that ends every session.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([workload.stop(), new Promise<void>((resolve) => (timer = setTimeout(resolve, workloadStopTimeoutMs)))]);
      clearTimeout(timer);
    }
    await Promise.all([
      attempt('stopping PgBouncer', async () => this.pgbouncer?.stop(this.immediate)),
      attempt('stopping the standby', async () => this.standby?.stop(mode())),
    ]);
    await attempt('stopping the primary', async () => this.primary?.stop(mode()));
    // Sessions end once their servers are gone; wait for the loops so nothing is left pending.
    if (workload !== undefined) await workload.stop();
    await attempt(`removing ${this.dir}`, () => rm(this.dir, { recursive: true, force: true, maxRetries: 3 }));
    if (failures.length > 0) throw new UserError(`the demo could not clean up completely: ${failures.join('; ')}`, `check for leftover processes (ps aux | grep ${this.dir}) and remove ${this.dir}`);
  }
}

function interrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new UserError('the demo setup was interrupted');
}

/** Sets up the demo and resolves once the workload runs; on failure cleans up, then throws a UserError. */
export async function startDemo(options: DemoOptions = {}): Promise<Demo> {
  const env = options.env ?? process.env;
  const progress = options.progress ?? ((): void => undefined);
  const signal = options.signal;
  // Both before anything is created: a missing program fails without leaving anything behind.
  const tools = await findPgTools(env);
  const bouncerProgram = findPgBouncer(env);
  const dir = await makeOwnedDir(tools, 'pgwarden-demo-', options.parentDir);
  const parts = new Parts(dir);
  const onForce = (): void => parts.force();
  options.forceSignal?.addEventListener('abort', onForce, { once: true });
  if (options.forceSignal?.aborted === true) parts.force();
  try {
    return await build(parts, tools, bouncerProgram, options, progress, signal);
  } catch (error) {
    progress(`setup failed, cleaning up ${dir}…`);
    let cleanup = '';
    try {
      await parts.release();
    } catch (releaseError) {
      cleanup = ` (and ${messageOf(releaseError)})`;
    }
    options.forceSignal?.removeEventListener('abort', onForce);
    const hint = error instanceof UserError ? error.hint : undefined;
    throw new UserError(`demo setup failed: ${messageOf(error)}${cleanup}`, hint, { cause: error });
  }
}

async function build(
  parts: Parts,
  tools: PgTools,
  bouncerProgram: string | undefined,
  options: DemoOptions,
  progress: (line: string) => void,
  signal: AbortSignal | undefined,
): Promise<Demo> {
  const dir = parts.dir;
  const notes: string[] = [];
  progress(`creating the primary in ${dir} (initdb)…`);
  const primary = await LocalCluster.initdb(tools, {
    name: 'primary',
    dir: join(dir, 'primary'),
    port: options.ports?.primary,
    settings: {
      shared_preload_libraries: 'pg_stat_statements',
      wal_level: 'replica',
      max_wal_senders: 5,
      max_replication_slots: 5,
      hot_standby: true,
      max_connections: 100,
      shared_buffers: '64MB',
      // A throwaway cluster: durability buys nothing here and costs time on slow disks.
      fsync: false,
      synchronous_commit: false,
      full_page_writes: false,
      autovacuum: true,
      track_io_timing: true,
      log_min_messages: 'warning',
    },
  });
  parts.primary = primary;
  interrupted(signal);
  progress(`starting the primary on port ${primary.port}…`);
  await primary.start();
  interrupted(signal);

  const primarySpec = resolveConnection(primary.dsn('demo'), 'the demo primary', {});
  const setupOnPostgres = await DbSession.open(resolveConnection(primary.dsn('postgres'), 'the demo primary', {}), setupApplication);
  try {
    await setupOnPostgres.script('create database demo');
  } finally {
    await setupOnPostgres.close();
  }
  progress(`loading the data set (${demoAccounts.toLocaleString('en')} accounts, ${bloatedRows.toLocaleString('en')} rows in demo_bloated)…`);
  const setup = await DbSession.open(primarySpec, setupApplication);
  try {
    await loadDemoData(setup);
    interrupted(signal);

    progress(`creating the standby (pg_basebackup through slot ${standbySlot})…`);
    const standby = await primary.basebackup({
      name: 'standby',
      dir: join(dir, 'standby'),
      port: options.ports?.standby,
      slot: standbySlot,
      settings: { recovery_min_apply_delay: `${options.applyDelayMs ?? 3000}ms` },
    });
    parts.standby = standby;
    interrupted(signal);
    progress(`starting the standby on port ${standby.port} (applying WAL ${(options.applyDelayMs ?? 3000) / 1000} s late)…`);
    await standby.start();
    await waitForStreaming(standby, signal);
    interrupted(signal);

    let bouncerSpec: ReturnType<typeof resolveConnection> | undefined;
    if (bouncerProgram === undefined) {
      const note = 'PgBouncer is not installed: the demo runs without a pooler (install pgbouncer to see its view)';
      notes.push(note);
      progress(note);
    } else {
      progress('starting PgBouncer in front of the primary…');
      const bouncer = await LocalPgBouncer.start(bouncerProgram, tools, { dir: join(dir, 'pgbouncer'), backendPort: primary.port, port: options.ports?.pgbouncer });
      parts.pgbouncer = bouncer;
      progress(`PgBouncer listens on port ${bouncer.port}`);
      bouncerSpec = resolveConnection(bouncer.dsn('demo'), 'the demo pgbouncer', {});
    }
    interrupted(signal);

    progress('starting the workload (lock chain, idle transaction, slow query, writes)…');
    parts.workload = await Workload.start({ primary: primarySpec, pgbouncer: bouncerSpec });
    interrupted(signal);
    // After the idle transaction began, so that it keeps these dead rows from being pruned.
    progress('deleting 80% of demo_bloated (dead tuples, bloat)…');
    await bloat(setup);
  } finally {
    await setup.close();
  }
  interrupted(signal);

  const standby = parts.standby;
  if (standby === undefined) throw new Error('the standby was not created');
  const dsns: DemoDsns = {
    primary: primary.dsn('demo'),
    standby: standby.dsn('demo'),
    pgbouncer: parts.pgbouncer?.dsn('demo'),
    pgbouncerAdmin: parts.pgbouncer?.adminDsn,
  };
  const configFile = join(dir, 'pgwarden.json');
  const json = {
    clusters: [{
      name: 'demo',
      nodes: [{ name: 'primary', dsn: dsns.primary }, { name: 'standby', dsn: dsns.standby }],
      ...(dsns.pgbouncerAdmin === undefined ? {} : { pgbouncer: { dsn: dsns.pgbouncerAdmin } }),
    }],
  };
  await writeFile(configFile, `${JSON.stringify(json, null, 2)}\n`);
  const config = parseConfig(json, configFile, probeIds);

  return {
    dir,
    config,
    configFile,
    dsns,
    notes,
    pids: () => parts.pids(),
    async stop(stopOptions) {
      if (stopOptions?.immediate === true) parts.force();
      await parts.release();
    },
  };
}

async function waitForStreaming(standby: LocalCluster, signal: AbortSignal | undefined): Promise<void> {
  const session = await DbSession.open(resolveConnection(standby.dsn('postgres'), 'the demo standby', {}), setupApplication);
  try {
    await waitUntil('the standby to stream from the primary', async () => {
      interrupted(signal);
      const [row] = await session.query({ text: 'select status from pg_stat_wal_receiver' });
      return row?.['status'] === 'streaming';
    }, 30_000, 50);
  } finally {
    await session.close();
  }
}

