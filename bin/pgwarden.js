#!/usr/bin/env node
// React's development build leaks timing entries on every render: production mode must be set
// before anything imports React.
process.env.NODE_ENV ??= 'production';
// The AWS SDK warns on every run under Node 20 that its 2027 releases will need Node 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
if (process.argv[2] === 'wal' && process.argv.includes('fetch')) {
  // restore_command: PostgreSQL takes an exit status of 1–125 (Node's 1 for a crash or a missing
  // build included) for "not in the archive" and ends recovery early; any crash must stop it (126).
  const fatal = (error) => {
    process.stderr.write(`pgwarden: wal fetch crashed, so recovery stops: ${String(error?.message ?? error).split('\n')[0]}\n`);
    process.exit(126);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}
// archive_command and restore_command run once per WAL file: load the WAL command alone
// (src/wal-main.ts); the backup commands load without the console (src/batch-main.ts, the same
// names as src/cli/batch.ts).
const batch = ['backup', 'verify', 'restore', 'drill', 'backups', 'logical', 'switchover', 'failover', 'rejoin'];
await import(process.argv[2] === 'wal' ? '../dist/wal-main.js' : batch.includes(process.argv[2]) ? '../dist/batch-main.js' : '../dist/cli.js');
