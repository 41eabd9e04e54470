/** Checks on the connected database's tables and indexes: vacuum, bloat, invalid indexes. */
import { formatBytes, formatCount, formatDuration, formatPercent } from '../format/units.js';
import type { Check, Finding } from './types.js';
import { finding, optionalSnapshot, snapshotOf } from './helpers.js';

const GB = 1024 ** 3;

/** Autovacuum switched off, and tables whose dead rows have waited too long for a vacuum. */
export const autovacuumCheck: Check<{ readonly overdueSeconds: number; readonly deadFraction: number; readonly deadRows: number }> = {
  id: 'autovacuum',
  title: 'Autovacuum',
  description: 'Whether autovacuum is on (server setting), and tables of the connected database (the largest ones the tables probe lists) with many dead rows and no vacuum for a long time.',
  cadence: 'normal',
  probes: ['server', 'tables'],
  defaults: { overdueSeconds: 86_400, deadFraction: 0.2, deadRows: 10_000 },
  levels: (t) => ({
    warning: `a table not vacuumed for ${formatDuration(t.overdueSeconds)} with ${formatPercent(t.deadFraction, 0)} and ${formatCount(t.deadRows)} dead rows`,
    critical: 'autovacuum is off for the whole server',
  }),
  evaluate({ results, thresholds: t, now }) {
    const id = 'autovacuum';
    const findings: Finding[] = [];
    const server = optionalSnapshot(results, 'server');
    const setting = server?.settings.find((s) => s.name === 'autovacuum')?.setting;
    if (setting === 'off') {
      findings.push(finding(id, {
        severity: 'critical', subject: 'cluster', value: null, threshold: null, warningThreshold: null, unit: '',
        message: 'autovacuum is off for the whole server: dead rows accumulate and wraparound protection depends on manual vacuums',
      }));
    }
    const { snapshot, unknown } = snapshotOf(id, results, 'tables');
    if (unknown !== undefined) return [...findings, unknown];
    for (const table of snapshot.tables) {
      if (table.deadTuples === null || table.deadFraction === null) continue;
      if (table.deadTuples < t.deadRows || table.deadFraction < t.deadFraction) continue;
      const last = Math.max(table.lastVacuum?.getTime() ?? 0, table.lastAutovacuum?.getTime() ?? 0);
      const since = last === 0 ? null : (now.getTime() - last) / 1000;
      if (since !== null && since < t.overdueSeconds) continue;
      const name = `${table.schema}.${table.name}`;
      const off = table.autovacuumEnabled ? '' : ', autovacuum_enabled = false on this table';
      findings.push(finding(id, {
        severity: 'warning', subject: `table ${name}`, value: since, threshold: t.overdueSeconds, warningThreshold: t.overdueSeconds, unit: 'seconds',
        message: `table ${name}: ${formatCount(table.deadTuples)} dead rows (${formatPercent(table.deadFraction)}), ${since === null ? 'no vacuum since the statistics were reset' : `last vacuum ${formatDuration(since)} ago`}${off} (warning ≥ ${formatDuration(t.overdueSeconds)})`,
        context: { details: { database: snapshot.database, deadRows: table.deadTuples, liveRows: table.liveTuples, autovacuumEnabled: table.autovacuumEnabled ? 'yes' : 'no' } },
      }));
    }
    if (findings.length > 0) return findings;
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: null, threshold: t.overdueSeconds, warningThreshold: t.overdueSeconds, unit: 'seconds',
      message: `autovacuum ${setting ?? 'setting unknown'}; no overdue table among ${snapshot.tables.length} in ${snapshot.database}`,
    })];
  },
  runbook: {
    summary: 'Dead rows are piling up in a table that has not been vacuumed for a long time, or autovacuum is off. Tables and indexes bloat, queries slow down, and wraparound protection is at risk.',
    steps: [
      'Look: `select relname, n_dead_tup, n_live_tup, last_vacuum, last_autovacuum, autovacuum_count from pg_stat_user_tables order by n_dead_tup desc limit 10;` and `select * from pg_stat_progress_vacuum;` (is one running now?).',
      'Why did autovacuum skip it? An old transaction or slot holds the xmin horizon (see oldest-transaction: vacuum runs but removes nothing), the table has `autovacuum_enabled = false` (`select reloptions from pg_class where relname = \'<table>\';`), all autovacuum workers are busy on large tables, or autovacuum keeps being cancelled by lock conflicts (log_autovacuum_min_duration shows it).',
      'Vacuum it by hand (safe, online, takes only a SHARE UPDATE EXCLUSIVE lock): `vacuum (verbose, analyze) <schema>.<table>;`. Never `vacuum full` on a busy table during the day: it locks the table exclusively.',
      'If autovacuum is off globally, turn it back on: `alter system set autovacuum = on; select pg_reload_conf();` — unless a DBA switched it off on purpose for a maintenance window; ask first.',
      'For tables that churn, lower their thresholds: `alter table <t> set (autovacuum_vacuum_scale_factor = 0.02);`. Escalate when vacuum runs but cannot remove the dead rows.',
    ],
  },
};

/** Tables and indexes with much reclaimable space (measured by pgstattuple when possible). */
export const bloatCheck: Check<{ readonly warningBytes: number; readonly warningFraction: number; readonly criticalBytes: number; readonly criticalFraction: number }> = {
  id: 'bloat',
  title: 'Bloat',
  description: 'Space in tables and b-tree indexes of the connected database that VACUUM FULL or REINDEX would give back: measured with pgstattuple where it is installed, otherwise estimated from the statistics (the message says which).',
  cadence: 'slow',
  probes: ['tables'],
  defaults: { warningBytes: GB, warningFraction: 0.3, criticalBytes: 5 * GB, criticalFraction: 0.5 },
  levels: (t) => ({
    warning: `${formatBytes(t.warningBytes)} and ${formatPercent(t.warningFraction, 0)} of a table or index`,
    critical: `${formatBytes(t.criticalBytes)} and ${formatPercent(t.criticalFraction, 0)}`,
  }),
  evaluate({ results, thresholds: t }) {
    const id = 'bloat';
    const { snapshot, unknown } = snapshotOf(id, results, 'tables');
    if (unknown !== undefined) return [unknown];
    const candidates = [
      ...snapshot.tables.map((x) => ({ kind: 'table', name: `${x.schema}.${x.name}`, size: x.confirmed?.tableBytes ?? x.tableBytes, confirmed: x.confirmed, estimated: { bytes: x.estimatedBloatBytes, fraction: x.estimatedBloatFraction } })),
      ...snapshot.indexes.map((x) => ({ kind: 'index', name: `${x.schema}.${x.name}`, size: x.confirmed?.indexBytes ?? x.indexBytes, confirmed: x.confirmed, estimated: { bytes: x.estimatedBloatBytes, fraction: x.estimatedBloatFraction } })),
    ];
    const findings: Finding[] = [];
    for (const c of candidates) {
      const bytes = c.confirmed?.bloatBytes ?? c.estimated.bytes;
      const fraction = c.confirmed === null ? c.estimated.fraction : c.confirmed.bloatFraction;
      if (bytes === null || fraction === null) continue;
      const critical = bytes >= t.criticalBytes && fraction >= t.criticalFraction;
      const warning = bytes >= t.warningBytes && fraction >= t.warningFraction;
      if (!critical && !warning) continue;
      const how = c.confirmed === null ? 'estimated from statistics' : 'measured with pgstattuple';
      const limits = critical ? `(critical ≥ ${formatBytes(t.criticalBytes)} and ${formatPercent(t.criticalFraction)})` : `(warning ≥ ${formatBytes(t.warningBytes)} and ${formatPercent(t.warningFraction)})`;
      findings.push(finding(id, {
        severity: critical ? 'critical' : 'warning', subject: `${c.kind} ${c.name}`, value: bytes, threshold: critical ? t.criticalBytes : t.warningBytes, warningThreshold: t.warningBytes, unit: 'bytes',
        message: `${c.kind} ${c.name}: ${formatBytes(bytes)} reclaimable, ${formatPercent(fraction)} of ${formatBytes(c.size)} (${how}) ${limits}`,
        context: { details: { database: snapshot.database, fraction, confirmed: c.confirmed === null ? 'no' : 'yes' } },
      }));
    }
    if (findings.length > 0) return findings;
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: null, threshold: t.warningBytes, warningThreshold: t.warningBytes, unit: 'bytes',
      message: `no table or index in ${snapshot.database} with ${formatBytes(t.warningBytes)} and ${formatPercent(t.warningFraction)} reclaimable`,
    })];
  },
  runbook: {
    summary: 'A table or index holds a lot of space that is not used by live rows. It costs disk, cache and I/O. It is rarely an emergency; plan the fix.',
    steps: [
      'Confirm the figure if it is an estimate: `create extension if not exists pgstattuple;` then `select * from pgstattuple_approx(\'<schema>.<table>\');` or `select * from pgstatindex(\'<schema>.<index>\');`.',
      'First make sure the cause is gone, or the bloat comes back: long transactions (oldest-transaction), autovacuum falling behind (autovacuum), or a one-off mass delete/update.',
      'For an index: `reindex index concurrently <schema>.<index>;` (PostgreSQL 12+) rebuilds it online. Check disk space first: it needs room for a second copy.',
      'For a table: `vacuum full` locks it exclusively for the whole rewrite — do not run it on a live table. Use pg_repack (`pg_repack -t <schema>.<table> -d <db>`) which rewrites online with a short lock at the end, again with room for a full copy.',
      'Escalate only when the disk is at risk (see the disk check) or the rewrite needs a maintenance window.',
    ],
  },
};

/** Invalid indexes: left behind by a failed CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY. */
export const invalidIndexesCheck: Check<Record<string, never>> = {
  id: 'invalid-indexes',
  title: 'Invalid indexes',
  description: 'Indexes of the connected database marked invalid (indisvalid = false) that are not being built right now. They are maintained on every write but never used; an invalid unique or primary key index enforces nothing.',
  cadence: 'slow',
  probes: ['tables'],
  defaults: {},
  levels: () => ({ warning: 'an invalid index not being built', critical: 'an invalid unique or primary key index' }),
  evaluate({ results }) {
    const id = 'invalid-indexes';
    const { snapshot, unknown } = snapshotOf(id, results, 'tables');
    if (unknown !== undefined) return [unknown];
    const findings = snapshot.invalidIndexes.flatMap((index) => {
      if (index.building === true) return [];
      const name = `${index.schema}.${index.name}`;
      const critical = index.unique || index.primary;
      const kind = index.primary ? 'primary key index' : index.unique ? 'unique index' : 'index';
      const building = index.building === null ? 'whether it is being built cannot be seen before PostgreSQL 12' : 'not being built';
      return [finding(id, {
        severity: critical ? 'critical' : 'warning', subject: `index ${name}`, value: index.indexBytes, threshold: null, warningThreshold: null, unit: 'bytes',
        message: `${kind} ${name} on ${index.schema}.${index.table} is invalid (${formatBytes(index.indexBytes)}, ${building})${critical ? ': uniqueness is not enforced' : ''}`,
        context: { details: { database: snapshot.database, definition: index.definition } },
      })];
    });
    if (findings.length > 0) return findings;
    const building = snapshot.invalidIndexes.length;
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: 0, threshold: null, warningThreshold: null, unit: 'indexes',
      message: building === 0 ? `no invalid index in ${snapshot.database}` : `no invalid index in ${snapshot.database} (${building} being built)`,
    })];
  },
  runbook: {
    summary: 'An index is invalid, usually because CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY failed or was cancelled. It slows every write and is never used by queries. An invalid unique index does not enforce uniqueness: duplicates can be inserted.',
    steps: [
      'Look: `select n.nspname, c.relname, pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indexrelid join pg_namespace n on n.oid = c.relnamespace where not i.indisvalid;` and make sure no build is running: `select * from pg_stat_progress_create_index;`.',
      'Drop it and build it again, both online: `drop index concurrently <schema>.<index>;` then the CREATE INDEX CONCURRENTLY from the finding\'s definition. Or `reindex index concurrently <schema>.<index>;`.',
      'If the build failed on a unique index, it is usually because duplicates exist: find them first (`select <cols>, count(*) from <table> group by <cols> having count(*) > 1;`) and resolve them with the data owners.',
      'An index named like `<name>_ccnew` or `<name>_ccold` is a leftover of REINDEX CONCURRENTLY: drop it concurrently.',
      'Escalate at once for an invalid primary key or unique index: the application may be writing duplicates now.',
    ],
  },
};
