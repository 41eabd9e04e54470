/**
 * The entry point of `pgwarden wal push|fetch` (bin/pgwarden.js loads it instead of cli.js).
 * PostgreSQL starts one process per WAL file, as archive_command and as restore_command (several
 * per segment during recovery, for the files it probes), so this path loads the WAL command only:
 * not meow, the probes or the console. The exit codes are the WAL command's own (docs/wal-archiving.md).
 */
import { walCommand } from './cli/wal.js';

const output = await walCommand(process.argv.slice(3));
process.stdout.write(output.stdout);
process.stderr.write(output.stderr);
process.exitCode = output.exitCode;
// Done: exit even if a socket (an S3 keep-alive) is still open. Writes to pipes and files are synchronous on Linux.
process.exit();
