/** Every probe, in one explicit list (no self-registration): the order is the display order. */
import { activityProbe } from './activity.js';
import { connectionsProbe } from './connections.js';
import { databasesProbe } from './databases.js';
import { locksProbe } from './locks.js';
import { pgbouncerProbe } from './pgbouncer.js';
import { replicationProbe } from './replication.js';
import { statementsProbe } from './statements.js';
import { tablesProbe } from './tables.js';
import { serverProbe } from './server.js';
import type { AnyProbe } from './runner.js';
import type { ProbeId } from './types.js';

export const probes: readonly AnyProbe[] = [serverProbe, activityProbe, connectionsProbe, locksProbe, databasesProbe, tablesProbe, replicationProbe, statementsProbe, pgbouncerProbe] as readonly AnyProbe[];

/** The probe with this id, or undefined. */
export function probeById(id: string): AnyProbe | undefined {
  return probes.find((probe) => probe.id === id);
}

export const probeIds: readonly ProbeId[] = probes.map((probe) => probe.id);
