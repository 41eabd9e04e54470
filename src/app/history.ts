/** Sparkline series kept by the console, one sample per refresh. */
import { resultOf } from '../probes/index.js';
import type { Results } from '../probes/runner.js';
import type { History } from '../screens/types.js';

export const historyLength = 120;

export const emptyHistory: History = { tps: [], connections: [], lagBytes: [] };

function push(series: readonly number[], value: number | null): readonly number[] {
  if (value === null) return series;
  return [...series.slice(-(historyLength - 1)), value];
}

/** Adds this refresh's figures (those that are fresh) to the series. */
export function recordHistory(history: History, results: Results): History {
  const databases = resultOf(results, 'databases');
  const connections = resultOf(results, 'connections');
  const replication = resultOf(results, 'replication');
  let tps: number | null = null;
  if (databases.status === 'ok') {
    const rates = databases.snapshot.databases.map((db) => (db.commitsPerSecond ?? 0) + (db.rollbacksPerSecond ?? 0));
    tps = databases.snapshot.databases.some((db) => db.commitsPerSecond !== null) ? rates.reduce((a, b) => a + b, 0) : null;
  }
  let lag: number | null = null;
  if (replication.status === 'ok') {
    const snapshot = replication.snapshot;
    lag = snapshot.role === 'primary'
      ? Math.max(0, ...snapshot.standbys.map((standby) => standby.replayBytes ?? 0))
      : snapshot.replay.gapBytes;
  }
  return {
    tps: push(history.tps, tps),
    connections: push(history.connections, connections.status === 'ok' ? connections.snapshot.usedSlots : null),
    lagBytes: push(history.lagBytes, lag),
  };
}
