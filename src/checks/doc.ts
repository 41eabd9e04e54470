/** docs/alerts.md, generated from the check catalogue (npm run docs); a test fails when it is stale. */
import { checks } from './catalogue.js';
import { cadenceMs, type Cadence } from './types.js';

const cadenceWords: Readonly<Record<Cadence, string>> = { fast: 'every minute', normal: 'every 5 minutes', slow: 'hourly' };

/** The whole Markdown document. */
export function alertsMarkdown(): string {
  const lines = [
    '# Alert reference',
    '',
    '<!-- Generated from src/checks/catalogue.ts by `npm run docs`; do not edit by hand. -->',
    '',
    'Every check pgwarden evaluates, with its default thresholds and what to do when it fires. An alert',
    'fires after two failing evaluations in a row and resolves only once the value is back under the',
    'warning level. Thresholds can be overridden per cluster in the config file by check id and',
    'threshold name. A check that cannot be evaluated (its probe failed, is not permitted or not',
    'installed) reports UNKNOWN with the reason, never a guess; a check that does not apply (no',
    'standby, no slot, no PgBouncer, archiving off) reports nothing.',
    '',
    '| check | cadence | warning | critical |',
    '|---|---|---|---|',
  ];
  for (const check of checks) {
    const levels = check.levels(check.defaults);
    lines.push(`| [${check.id}](#${check.id}) | ${cadenceWords[check.cadence]} | ${levels.warning} | ${levels.critical} |`);
  }
  lines.push('');
  for (const check of checks) {
    const levels = check.levels(check.defaults);
    const thresholds = Object.entries(check.defaults);
    lines.push(
      `<a id="${check.id}"></a>`,
      '',
      `## ${check.title} (\`${check.id}\`)`,
      '',
      check.description,
      '',
      `- **Warning:** ${levels.warning}.`,
      `- **Critical:** ${levels.critical}.`,
      check.probes.length === 0
        ? '- **Evaluated:** on every clock tick of `pgwarden --watch`, from the watcher\'s own state (no probe).'
        : `- **Evaluated:** ${cadenceWords[check.cadence]} (${cadenceMs[check.cadence] / 1000} s), from the ${check.probes.join(' and ')} probe${check.probes.length === 1 ? '' : 's'}.`,
      `- **Thresholds:** ${thresholds.length === 0 ? 'none' : thresholds.map(([name, value]) => `\`${name}\` = ${value}`).join(', ')}.`,
      '',
      `**What it means.** ${check.runbook.summary}`,
      '',
      '**What to do.**',
      '',
      ...check.runbook.steps.map((step, index) => `${index + 1}. ${step}`),
      '',
    );
  }
  return lines.join('\n');
}
