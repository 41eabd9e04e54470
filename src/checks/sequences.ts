/** Sequences close to the value where nextval() or the insert using it fails. */
import { formatCount, formatPercent } from '../format/units.js';
import type { SequenceUsage } from '../probes/sequences.js';
import type { Check, Finding } from './types.js';
import { against, finding, level, snapshotOf, thresholdFor } from './helpers.js';

function limitText(sequence: SequenceUsage): string {
  return sequence.limitedBy.startsWith('column ') ? `the maximum of ${sequence.limitedBy}` : `its ${sequence.limitedBy.replace('sequence ', '')}`;
}

/** Non-cycling sequences that used most of their range, against the narrowest column they feed. */
export const sequencesCheck: Check<{ readonly warningFraction: number; readonly criticalFraction: number }> = {
  id: 'sequences',
  title: 'Sequences near their maximum',
  description: 'Sequences of the connected database that used most of their range: up to their own maximum (minimum when descending) and to the maximum of the type of every column they feed (a bigint sequence feeding an integer column fails at 2^31 − 1). Columns are found through pg_depend: identity, serial and nextval() defaults. Cycling sequences are skipped; a sequence pgwarden\'s role may not read is UNKNOWN.',
  cadence: 'slow',
  probes: ['sequences'],
  defaults: { warningFraction: 0.75, criticalFraction: 0.9 },
  levels: (t) => ({ warning: `a sequence at ${formatPercent(t.warningFraction, 0)} of its limit`, critical: `at ${formatPercent(t.criticalFraction, 0)}` }),
  evaluate({ results, thresholds: t }) {
    const id = 'sequences';
    const { snapshot, unknown } = snapshotOf(id, results, 'sequences');
    if (unknown !== undefined) return [unknown];
    const findings: Finding[] = [];
    for (const sequence of snapshot.sequences) {
      if (sequence.cycle || sequence.usedFraction === null) continue;
      const severity = level(sequence.usedFraction, t.warningFraction, t.criticalFraction);
      if (severity === 'ok') continue;
      const name = `${sequence.schema}.${sequence.name}`;
      findings.push(finding(id, {
        severity, subject: `sequence ${name}`, value: sequence.usedFraction,
        threshold: thresholdFor(severity, t.warningFraction, t.criticalFraction), warningThreshold: t.warningFraction, unit: 'fraction',
        message: `sequence ${name} (${sequence.dataType}) is at ${formatCount(sequence.lastValue)} of ${formatCount(sequence.limit)}, ${limitText(sequence)}: ${formatPercent(sequence.usedFraction)} used ${against(severity, t.warningFraction, t.criticalFraction, (n) => formatPercent(n, 0))}`,
        context: { details: { database: snapshot.database, lastValue: sequence.lastValue, limit: sequence.limit, limitedBy: sequence.limitedBy, columns: sequence.columns.join(', '), increment: sequence.increment } },
      }));
    }
    if (snapshot.unreadable > 0) {
      const names = snapshot.sequences.filter((s) => !s.readable).slice(0, 5).map((s) => `${s.schema}.${s.name}`);
      const schemas = [...new Set(snapshot.sequences.filter((s) => !s.readable).map((s) => s.schema))];
      findings.push(finding(id, {
        severity: 'unknown', subject: 'unreadable sequences', value: snapshot.unreadable, threshold: null, warningThreshold: null, unit: 'sequences',
        message: `cannot evaluate ${snapshot.unreadable} of ${snapshot.totalSequences} sequences in ${snapshot.database}${names.length === 0 ? '' : ` (${names.join(', ')}${snapshot.unreadable > names.length ? ', …' : ''})`}: pgwarden's role needs SELECT on them: GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${schemas.length === 0 ? '<schema>' : schemas.join(', ')} TO <monitoring role>;`,
        context: { details: { database: snapshot.database } },
      }));
    }
    if (findings.length > 0) return findings;
    const top = snapshot.sequences.find((s) => !s.cycle && s.usedFraction !== null);
    return [finding(id, {
      severity: 'ok', subject: 'cluster', value: top?.usedFraction ?? null, threshold: t.warningFraction, warningThreshold: t.warningFraction, unit: 'fraction',
      message: `no sequence in ${snapshot.database} at ${formatPercent(t.warningFraction, 0)} of its limit (${snapshot.totalSequences} sequences${top === undefined ? '' : `, the most used ${top.schema}.${top.name} at ${formatPercent(top.usedFraction)}`})`,
    })];
  },
  runbook: {
    summary: 'A sequence is close to the last value it can hand out, or the last value the column it feeds can hold. When it gets there, every insert that needs a new id fails ("nextval: reached maximum value of sequence" or "integer out of range"): an outage of the writes to that table.',
    steps: [
      'Look: `select * from pg_sequences where schemaname = \'<schema>\' and sequencename = \'<sequence>\';` and the column type: `\\d <table>` in psql. The finding says which limit applies: the sequence\'s own maximum, or an integer column fed by a bigint sequence.',
      'Estimate the time left from the growth: compare last_value now and in an hour. Hours left: act now; months left: plan the change.',
      'The fix for an integer column is `alter table <t> alter column <c> type bigint;` — it rewrites the table under an ACCESS EXCLUSIVE lock (and the indexes and foreign keys referencing it): plan a window, or migrate online (new bigint column filled in batches, then swapped). Then `alter sequence <s> as bigint;` if the sequence itself is integer.',
      'A sequence limited by its own maxvalue: `alter sequence <s> maxvalue <larger>;` (instant) if the column type allows it.',
      'Do not reset the sequence to a lower value unless you know the old ids are gone: duplicates break the primary key. Escalate to the application owners: ids may be assumed to fit 32 bits in their code too.',
    ],
  },
};
