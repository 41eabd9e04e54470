/** The sections of the detail pane, built from the snapshots (pure). */
import { formatBytes, formatCount, formatDuration, formatPercent } from '../format/units.js';
import { resultOf } from '../probes/index.js';
import type { Results } from '../probes/runner.js';
import { latest } from '../probes/types.js';
import type { DetailTarget } from './state.js';

export interface DetailSection {
  readonly heading: string;
  readonly lines: readonly string[];
}

export interface Detail {
  readonly title: string;
  readonly sections: readonly DetailSection[];
}

function sessionDetail(results: Results, pid: number, fullQuery: string | null): Detail {
  const activity = latest(resultOf(results, 'activity'))?.snapshot;
  const session = activity?.sessions.find((s) => s.pid === pid);
  if (session === undefined) return { title: `session ${pid}`, sections: [{ heading: 'gone', lines: ['This session is no longer in pg_stat_activity.'] }] };
  const locks = latest(resultOf(results, 'locks'))?.snapshot;
  const waiting = locks?.waiters.find((w) => w.pid === pid);
  const waitingForIt = locks?.waiters.filter((w) => w.blockedBy.includes(pid)) ?? [];
  const statements = latest(resultOf(results, 'statements'))?.snapshot;
  const statement = session.queryId === null ? undefined : statements?.statements.find((s) => s.queryId === session.queryId);
  const sections: DetailSection[] = [
    {
      heading: 'session',
      lines: [
        `user ${session.user ?? '-'}  database ${session.database ?? '-'}  application ${session.application || '-'}  client ${session.client ?? '-'}`,
        `state ${session.state ?? '-'}  wait ${session.waitEventType ?? '-'}:${session.waitEvent ?? '-'}  backend ${session.backendType}`,
        `transaction ${formatDuration(session.xactSeconds)}  query ${formatDuration(session.querySeconds)}  in state ${formatDuration(session.stateSeconds)}  xmin age ${formatCount(session.backendXminAge)}`,
      ],
    },
    { heading: 'query', lines: (fullQuery ?? session.query).split('\n') },
  ];
  const lockLines: string[] = [];
  if (waiting !== undefined) {
    lockLines.push(`waits ${formatDuration(waiting.waitSeconds)} for ${waiting.mode ?? '?'} on ${waiting.relation ?? waiting.lockType ?? '?'}, blocked by ${waiting.blockedBy.join(', ')}`);
  }
  for (const waiter of waitingForIt) lockLines.push(`blocks ${waiter.pid} (${waiter.user ?? '-'}, ${waiter.application || '-'}) waiting ${formatDuration(waiter.waitSeconds)} for ${waiter.mode ?? '?'}`);
  sections.push({ heading: 'locks', lines: lockLines.length === 0 ? ['neither waits on a lock nor blocks anyone'] : lockLines });
  if (statement !== undefined) {
    sections.push({
      heading: 'statement statistics (pg_stat_statements)',
      lines: [
        `calls ${formatCount(statement.calls)}  mean ${statement.meanExecMs.toFixed(2)} ms  total ${formatDuration(statement.totalExecMs / 1000)}  rows ${formatCount(statement.rows)}`,
      ],
    });
  }
  return { title: `session ${pid}`, sections };
}

function tableDetail(results: Results, schema: string, name: string): Detail {
  const tables = latest(resultOf(results, 'tables'))?.snapshot;
  const table = tables?.tables.find((t) => t.schema === schema && t.name === name);
  if (table === undefined) return { title: `${schema}.${name}`, sections: [{ heading: 'gone', lines: ['Not among the tables the last snapshot measured.'] }] };
  const indexes = tables?.indexes.filter((index) => index.tableOid === table.oid) ?? [];
  return {
    title: `${schema}.${name}`,
    sections: [
      {
        heading: 'size and bloat',
        lines: [
          `table ${formatBytes(table.tableBytes)}  indexes ${formatBytes(table.indexesBytes)}  toast ${formatBytes(table.toastBytes)}`,
          `estimated bloat ${formatBytes(table.estimatedBloatBytes)} (${formatPercent(table.estimatedBloatFraction)})` +
            (table.confirmed === null ? '' : `  confirmed ${formatBytes(table.confirmed.bloatBytes)} (${formatPercent(table.confirmed.bloatFraction)})`),
          `live ${formatCount(table.liveTuples)}  dead ${formatCount(table.deadTuples)} (${formatPercent(table.deadFraction)})`,
        ],
      },
      {
        heading: 'maintenance',
        lines: [
          `last vacuum ${table.lastVacuum?.toISOString() ?? '-'}  autovacuum ${table.lastAutovacuum?.toISOString() ?? '-'}`,
          `last analyze ${table.lastAnalyze?.toISOString() ?? '-'}  autoanalyze ${table.lastAutoanalyze?.toISOString() ?? '-'}`,
          `autovacuum ${table.autovacuumEnabled ? 'enabled' : 'DISABLED for this table'}`,
        ],
      },
      { heading: 'indexes', lines: indexes.length === 0 ? ['none'] : indexes.map((index) => `${index.name}  ${formatBytes(index.indexBytes)}`) },
    ],
  };
}

/**
 * The detail pane's content for a target. `fullQuery` is the fetched full text of a session's
 * query. Alerts view rows come from the alert engine, not the snapshots: see alert-detail.ts.
 */
export function detailFor(results: Results, target: Exclude<DetailTarget, { readonly kind: 'alert' }>, fullQuery: string | null): Detail {
  switch (target.kind) {
    case 'session':
      return sessionDetail(results, target.pid, fullQuery);
    case 'table':
      return tableDetail(results, target.schema, target.name);
    case 'statement': {
      const statement = latest(resultOf(results, 'statements'))?.snapshot.statements.find((s) => `${s.queryId}:${s.userId}:${s.dbId}:${String(s.toplevel)}` === target.key);
      if (statement === undefined) return { title: 'statement', sections: [{ heading: 'gone', lines: ['No longer among the top statements.'] }] };
      return {
        title: `statement ${statement.queryId}`,
        sections: [
          { heading: 'query', lines: statement.query.split('\n') },
          { heading: 'totals', lines: [`calls ${formatCount(statement.calls)}  mean ${statement.meanExecMs.toFixed(2)} ms  rows ${formatCount(statement.rows)}`] },
        ],
      };
    }
  }
}
