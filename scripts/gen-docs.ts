// Writes the generated documents (npm run docs).
import { writeFileSync } from 'node:fs';
import { alertsMarkdown } from '../src/checks/doc.js';
import { keybindingsMarkdown } from '../src/keymap-doc.js';

writeFileSync('docs/keybindings.md', keybindingsMarkdown());
writeFileSync('docs/alerts.md', alertsMarkdown());
process.stdout.write('wrote docs/keybindings.md and docs/alerts.md\n');
