/**
 * The demo's background workload: sessions that give every view of the console something to
 * show. Each part comes back by itself after the console cancels or terminates it, so the
 * actions can be tried again and again.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { ConnectionSpec } from '../config/types.js';
import { DbSession } from '../db/session.js';
import type { Query, Row } from '../db/types.js';
import { waitUntil } from '../cluster/local.js';
import { demoAccounts } from './data.js';

/** The application_name of each workload session, as the activity and locks views show them. */
export const demoApplications = {
  lockHolder: 'demo-lock-holder',
  lockWaiter: 'demo-lock-waiter',
  lockWaiterBehind: 'demo-lock-waiter-2',
  idleInTransaction: 'demo-idle-in-transaction',
  slowQuery: 'demo-slow-query',
  writer: 'demo-writer',
  pooled: 'demo-pgbouncer-client',
} as const;

/** The control session starts with "pgwarden" so that the views leave it out, like pgwarden's own sessions. */
const controlApplication = 'pgwarden-demo-control';
/** Pause before re-creating a part that was cancelled or terminated, so the console shows it gone. */
const comebackMs = 1000;
const writeEveryMs = 100;
const readEveryMs = 100;

/** Where the workload connects. */
export interface WorkloadTargets {
  /** The primary, database "demo". */
  readonly primary: ConnectionSpec;
  /** PgBouncer's client side, database "demo"; undefined when there is no pooler. */
  readonly pgbouncer: ConnectionSpec | undefined;
}

const ignore = (): undefined => undefined;

/** The running workload; stop() ends every session it opened. */
export class Workload {
  private readonly abort = new AbortController();
  private readonly stopped: Promise<void>;
  /** Open sessions; true for direct connections to the primary, whose backends can be terminated. */
  private readonly sessions = new Map<DbSession, boolean>();
  private readonly loops: Promise<void>[] = [];
  private control: Promise<DbSession> | undefined;
  private stopping: Promise<void> | undefined;

  private constructor(private readonly targets: WorkloadTargets) {
    this.stopped = new Promise((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
  }

  /**
   * Starts every part and resolves once the lock chain, the idle transaction and the slow query
   * are in place; stops what it started if they do not come up in time.
   */
  static async start(targets: WorkloadTargets, readyTimeoutMs = 20_000): Promise<Workload> {
    const workload = new Workload(targets);
    const { primary, pgbouncer } = targets;
    workload.loops.push(
      workload.lockChain(),
      workload.idleInTransaction(),
      workload.repeat(demoApplications.slowQuery, primary, { text: 'select pg_sleep(1.5)' }, 100),
      workload.repeat(demoApplications.writer, primary, () => ({
        text: `with moved as (update demo_accounts set abalance = abalance + $1 where aid = $2 returning aid, bid)
               insert into demo_history (aid, bid, delta) select aid, bid, $1 from moved`,
        values: [Math.floor(Math.random() * 10_001) - 5000, randomAccount()],
      }), writeEveryMs),
    );
    if (pgbouncer !== undefined) {
      workload.loops.push(workload.repeat(demoApplications.pooled, pgbouncer, () => ({
        text: 'select abalance from demo_accounts where aid = $1',
        values: [randomAccount()],
      }), readEveryMs));
    }
    try {
      await waitUntil('the demo workload (lock chain, idle transaction, slow query)', () => workload.inPlace(), readyTimeoutMs, 100);
    } catch (error) {
      await workload.stop();
      throw error;
    }
    return workload;
  }

  /** True once stop() was called. */
  get isStopped(): boolean {
    return this.abort.signal.aborted;
  }

  /** Stops every part: terminates its backends, closes its sessions and waits for the loops to end. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      await this.dismiss([...this.sessions.keys()]);
      await Promise.allSettled(this.loops);
      const control = this.control;
      this.control = undefined;
      await control?.then((session) => session.close()).catch(ignore);
    })();
    return this.stopping;
  }

  private async pause(ms: number): Promise<void> {
    await delay(ms, undefined, { signal: this.abort.signal }).catch(ignore);
  }

  private async open(application: string, spec: ConnectionSpec): Promise<DbSession> {
    const session = await DbSession.open(spec, application);
    this.sessions.set(session, spec === this.targets.primary);
    if (this.isStopped) {
      await this.dismiss([session]);
      throw new Error('the workload is stopping');
    }
    return session;
  }

  /** A query on the control session, reconnecting it when the console terminated it or the server restarted. */
  private async controlQuery(query: Query): Promise<readonly Row[]> {
    const current = (this.control ??= DbSession.open(this.targets.primary, controlApplication));
    try {
      return await (await current).query(query, 5000);
    } catch (error) {
      if (this.control === current) this.control = undefined;
      await current.then((session) => session.close()).catch(ignore);
      throw error;
    }
  }

  /** Ends sessions: their backends are terminated first, since a backend waiting on a lock would not read a goodbye. */
  private async dismiss(sessions: readonly (DbSession | undefined)[]): Promise<void> {
    const present = sessions.filter((session): session is DbSession => session !== undefined && this.sessions.has(session));
    const pids = present.filter((session) => session.pid > 0 && this.sessions.get(session) === true).map((session) => session.pid);
    for (const session of present) this.sessions.delete(session);
    if (pids.length > 0) {
      await this.controlQuery({ text: 'select pg_terminate_backend(pid) from unnest($1::int[]) as pid', values: [pids] }).catch(ignore);
    }
    await Promise.allSettled(present.map((session) => session.close()));
  }

  /**
   * A lock chain: the holder keeps row 1 locked in an open transaction, the waiter holds row 2
   * and waits for row 1, and a third session waits for row 2, so behind the waiter.
   */
  private async lockChain(): Promise<void> {
    while (!this.isStopped) {
      const chain: DbSession[] = [];
      try {
        const holder = await this.open(demoApplications.lockHolder, this.targets.primary);
        chain.push(holder);
        const waiter = await this.open(demoApplications.lockWaiter, this.targets.primary);
        chain.push(waiter);
        const behind = await this.open(demoApplications.lockWaiterBehind, this.targets.primary);
        chain.push(behind);
        await holder.script('begin; select n from demo_lock where id = 1 for update');
        await waiter.script('begin; update demo_lock set n = n + 1 where id = 2');
        const blocked = [
          waiter.query({ text: 'update demo_lock set n = n + 1 where id = 1' }),
          behind.query({ text: 'update demo_lock set n = n + 1 where id = 2' }),
        ];
        // Either query returns only when someone cancels or terminates a session of the chain.
        await Promise.race([...blocked.map((query) => query.then(ignore, ignore)), this.stopped]);
      } catch {
        // A session could not connect or was terminated while the chain was being built.
      }
      await this.dismiss(chain);
      await this.pause(comebackMs);
    }
  }

  /** A session idle in a transaction that holds an xid, so it also holds back the xmin horizon. */
  private async idleInTransaction(): Promise<void> {
    while (!this.isStopped) {
      let session: DbSession | undefined;
      try {
        session = await this.open(demoApplications.idleInTransaction, this.targets.primary);
        await session.script('begin; select txid_current(); select count(*) from demo_branches');
        const pid = session.pid;
        // An idle session sends nothing, so only the server can tell that it was terminated.
        while (!this.isStopped && (await this.controlQuery({ text: 'select 1 from pg_stat_activity where pid = $1', values: [pid] })).length > 0) {
          await this.pause(1000);
        }
      } catch {
        // Terminated, or the server went away: start over.
      }
      await this.dismiss([session]);
      await this.pause(comebackMs);
    }
  }

  /** Runs a query again and again on one session, replacing the session after any failure. */
  private async repeat(application: string, spec: ConnectionSpec, query: Query | (() => Query), everyMs: number): Promise<void> {
    let session: DbSession | undefined;
    while (!this.isStopped) {
      try {
        session ??= await this.open(application, spec);
        await session.query(typeof query === 'function' ? query() : query);
        await this.pause(everyMs);
      } catch {
        // Cancelled or terminated from the console, or the server restarted.
        await this.dismiss([session]);
        session = undefined;
        await this.pause(comebackMs);
      }
    }
    await this.dismiss([session]);
  }

  /** True once the chain (behind → waiter → holder), the idle transaction and the slow query are all visible. */
  private async inPlace(): Promise<boolean> {
    const [row] = await this.controlQuery({
      text: `select exists (select 1 from pg_stat_activity c
                              join pg_stat_activity w on w.pid = any (pg_blocking_pids(c.pid))
                              join pg_stat_activity h on h.pid = any (pg_blocking_pids(w.pid))
                             where c.application_name = $1 and w.application_name = $2 and h.application_name = $3) as chain,
                    exists (select 1 from pg_stat_activity where application_name = $4 and state = 'idle in transaction') as idle,
                    exists (select 1 from pg_stat_activity where application_name = $5 and state = 'active') as slow`,
      values: [demoApplications.lockWaiterBehind, demoApplications.lockWaiter, demoApplications.lockHolder, demoApplications.idleInTransaction, demoApplications.slowQuery],
    }).catch(() => []);
    return row?.['chain'] === true && row['idle'] === true && row['slow'] === true;
  }
}

function randomAccount(): number {
  return Math.floor(Math.random() * demoAccounts) + 1;
}
