// Writes the generated documents (npm run docs).
import { writeFileSync } from 'node:fs';
import { keybindingsMarkdown } from '../src/keymap-doc.js';

writeFileSync('docs/keybindings.md', keybindingsMarkdown());
process.stdout.write('wrote docs/keybindings.md\n');
