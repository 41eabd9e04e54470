// Prints the suite's closing line in the plain form CI reads: "N passed, N failed".
import { readFileSync } from 'node:fs';

const results = JSON.parse(readFileSync('.vitest-results.json', 'utf8'));
const skipped = results.numPendingTests + results.numTodoTests;
process.stdout.write(`${results.numPassedTests} passed, ${results.numFailedTests} failed${skipped > 0 ? `, ${skipped} skipped` : ''}\n`);
