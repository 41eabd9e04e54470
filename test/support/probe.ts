/** Runs a probe once (or twice, for deltas) against a real server, as the runner would. */
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';
import { runProbe } from '../../src/probes/run-probe.js';
import type { Probe, ProbeResult, Stamped } from '../../src/probes/types.js';
import { PgBouncerAdmin } from '../../src/db/pgbouncer.js';

const nodes: PgNode[] = [];
const bouncers = new Map<string, PgBouncerAdmin>();

/** A PgNode for a DSN, closed by closeNodes(). */
export function nodeFor(dsn: string): PgNode {
  const node = new PgNode(resolveConnection(dsn, 'test'), { statementTimeoutMs: 10_000, lockTimeoutMs: 1000 });
  nodes.push(node);
  return node;
}

/** Runs the probe once and returns its result (whatever its status). */
export async function probeResult<S>(
  probe: Probe<S>,
  dsn: string,
  options: { previous?: Stamped<S>; pgbouncerDsn?: string; node?: PgNode } = {},
): Promise<ProbeResult<S>> {
  // A node of its own unless given one, closed once the probe ran: a test polling a probe in
  // waitFor then holds no connection between polls (a node left open per poll once exhausted
  // max_connections on a slow machine), and each poll sees the statistics afresh.
  const own = options.node === undefined ? new PgNode(resolveConnection(dsn, 'test'), { statementTimeoutMs: 10_000, lockTimeoutMs: 1000 }) : undefined;
  const node = options.node ?? own;
  if (node === undefined) throw new Error('no node');
  let pgbouncer: PgBouncerAdmin | undefined;
  if (options.pgbouncerDsn !== undefined) {
    // One admin connection per DSN: polling tests would otherwise pile up console connections.
    pgbouncer = bouncers.get(options.pgbouncerDsn) ?? new PgBouncerAdmin(resolveConnection(options.pgbouncerDsn, 'test'));
    bouncers.set(options.pgbouncerDsn, pgbouncer);
  }
  try {
    return await runProbe(probe, { server: node, pgbouncer }, { timeoutMs: 10_000, previous: options.previous });
  } finally {
    await own?.close();
  }
}

/** Runs the probe once and returns its snapshot, failing the test with the reason otherwise. */
export async function probeOnce<S>(probe: Probe<S>, dsn: string, options: { previous?: Stamped<S>; pgbouncerDsn?: string; node?: PgNode } = {}): Promise<S> {
  const result = await probeResult(probe, dsn, options);
  if (result.status !== 'ok') throw new Error(`probe ${probe.id} returned ${result.status}: ${JSON.stringify(result)}`);
  return result.snapshot;
}

export async function closeNodes(): Promise<void> {
  const admins = [...bouncers.values()];
  bouncers.clear();
  await Promise.all([...nodes.splice(0).map((node) => node.close()), ...admins.map((admin) => admin.close())]);
}
