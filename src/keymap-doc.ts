/** docs/keybindings.md, generated from the keymap (npm run docs); a test fails when it is stale. */
import { commands, keyLabel, type Scope } from './keymap.js';

const scopeTitles: Readonly<Record<Scope, string>> = {
  global: 'Everywhere',
  list: 'In every list view',
  activity: 'Activity (and the session rows of Locks)',
  locks: 'Locks',
  tables: 'Tables',
  alerts: 'Alerts (acknowledging and silencing change no data: `--read-only` keeps them)',
  backups: 'Backups (each key shows the exact `pgwarden` command line before it runs; `--read-only` refuses backup and drill)',
  replication: 'Replication (switchover, failover and rejoin run `pgwarden switchover|failover|rejoin`: the plan it prints, then a typed confirmation; docs/failover.md)',
  dialog: 'Dialogs, prompts and the detail pane',
};

/** The whole Markdown document. */
export function keybindingsMarkdown(): string {
  const lines = [
    '# Key bindings',
    '',
    '<!-- Generated from src/keymap.ts by `npm run docs`; do not edit by hand. -->',
    '',
    'Dialogs shadow the views: while a prompt, a confirmation or the detail pane is open, only the',
    'dialog keys apply. Commands marked **dangerous** change the database: they always show their',
    'plan (the exact SQL) and ask for confirmation first, and `--read-only` removes them. Keys can be',
    'remapped in the config file (`keys`, see docs/configuration.md).',
    '',
  ];
  for (const scope of Object.keys(scopeTitles) as Scope[]) {
    const inScope = commands.filter((command) => command.scope === scope);
    if (inScope.length === 0) continue;
    lines.push(`## ${scopeTitles[scope]}`, '', '| keys | command | what it does |', '|---|---|---|');
    for (const command of inScope) {
      const keys = command.keys.map((key) => `\`${keyLabel(key)}\``).join(', ');
      const notes = [command.dangerous ? '**dangerous**' : '', command.whyDisabled === undefined ? '' : `(${command.whyDisabled})`]
        .filter((note) => note !== '')
        .join(' ');
      lines.push(`| ${keys} | \`${command.id}\` | ${command.description}${notes === '' ? '' : ` ${notes}`} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}
