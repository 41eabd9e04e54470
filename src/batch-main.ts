/**
 * The entry point of the backup commands (src/cli/batch.ts): bin/pgwarden.js loads it instead of
 * cli.js, so `pgwarden backup|verify|restore|drill|backups|logical` start without loading meow,
 * the probes or the console.
 */
import { batchCommand } from './cli/batch.js';
import { runMain } from './cli/run-main.js';

await runMain(async () => (await batchCommand(process.argv[2], process.argv.slice(3))) ?? { stdout: '', stderr: `pgwarden: "${process.argv[2] ?? ''}" is not a backup command\n`, exitCode: 2 });
