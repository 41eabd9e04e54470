/**
 * The command line: argument parsing and dispatch. The only module that writes to the process's
 * streams directly or calls process.exit.
 */
import meow from 'meow';
import { loadConfig } from './config/load.js';
import { redact } from './config/redact.js';
import { isUserError } from './errors.js';
import { runMain } from './cli/run-main.js';
import { probeIds } from './probes/index.js';
import { show, type CommandOutput } from './cli/show.js';
import { describeConfig } from './cli/config-command.js';
import { alertsCheck } from './cli/alerts-check.js';
import { alertsTest } from './cli/alerts-test.js';
import { alertsManage, manageCommands, type ManageCommand } from './cli/alerts-manage.js';

const help = `
  Usage
    $ pgwarden [options]                 open the console (keys: docs/keybindings.md, ? inside)
    $ pgwarden show <probe|all> [--json] print one snapshot: ${probeIds.join(', ')}
    $ pgwarden config                    print the effective configuration (passwords hidden)
    $ pgwarden alerts check [--checks IDS] [--json]
                                         evaluate every check once; Nagios exit codes (docs/alerts-check.md)
    $ pgwarden alerts test               send a [TEST] notice through every configured channel
    $ pgwarden alerts list [--json]      what the watcher sees: firing, pending, unknown, acknowledged, silenced; active silences
    $ pgwarden alerts silence --for 2h [--check ID] [--cluster C] [--node N] [--subject GLOB] [--comment TEXT]
                                         silence matching alerts (at least one matcher); duration 30m, 2h, 1d
    $ pgwarden alerts unsilence ID       remove a silence
    $ pgwarden alerts ack ID|PREFIX [--comment TEXT]
                                         acknowledge a firing alert: no repeats, no escalation (unack ID undoes it)
    $ pgwarden demo                      run a throwaway local cluster with a workload and watch it
    $ pgwarden wal push %p --repo DIR    archive_command: archive one WAL file (docs/wal-archiving.md)
    $ pgwarden wal fetch %f %p --repo DIR
                                         restore_command: exit 1 only when the archive lacks the file, 126 on any failure
    $ pgwarden backup --config FILE [--cluster C] [--fast]   (or --dsn URI --repo DIR [--key ID=FILE])
                                         full physical backup with pg_basebackup into the cluster's repositories;
                                         counts once its WAL is archived (docs/backups.md)
    $ pgwarden verify [BACKUP_ID | --all] --config FILE [--cluster C] [--repo NAME]
                                         check backups against their manifests and the recovery window; exit 1 on any problem
    $ pgwarden restore --config FILE [--repo NAME] --to latest|TIME|LSN|BACKUP_ID --target-dir DIR [--start [--port N]]
                                         rebuild a data directory and recover to the target (docs/restore.md)
    $ pgwarden drill --config FILE [--cluster C] [--table SCHEMA.TABLE]... [--keep] [--json]
                                         restore drill: restore, check (pg_amcheck, row counts, SQL), record (docs/drills.md)
    $ pgwarden logical backup|list|restore|expire --config FILE [--database DB] [--into DB] [--table S.T]
                                         pg_dump per database; restore a database or one table (docs/logical-backups.md)
    $ pgwarden backups list --config FILE [--repo NAME] [--json]
                                         backups, the recovery window, gaps and timeline forks (docs/retention.md)
    $ pgwarden backups expire --config FILE [--days N] [--min-count N] [--max-count N] [--dry-run]
                                         retention: print the plan, then delete (never the newest restorable backup)
    (every backup command also takes --repo DIR [--key ID=FILE | --key-env ID=VAR]... instead of --config)
    $ pgwarden replica create|list --config FILE [--cluster C] [--data-dir DIR --port N --slot NAME --name NODE] [--json]
                                         create a streaming standby on this host; list standbys and read replicas (docs/replicas.md)
    $ pgwarden switchover --config FILE [--cluster C] --to NODE [--yes] [--dry-run] [--json]
                                         planned switchover: PgBouncer paused, the standby promoted once it replayed
                                         everything, the old primary rejoins with pg_rewind (docs/failover.md)
    $ pgwarden failover --config FILE [--cluster C] [--to NODE] [--yes] [--dry-run]
                                         the primary is down: promote the most advanced standby within the lag limit,
                                         repoint PgBouncer and the other standbys (docs/failover.md)
    $ pgwarden rejoin --config FILE [--cluster C] NODE [--yes] [--dry-run]
                                         an old primary: fenced if it came back writable, rewound, started as a standby
    $ pgwarden pooler config|advice --config FILE [--cluster C] [--out DIR] [--listen-port N] [--json]
                                         a pgbouncer.ini, auth_file and auth.sql for the cluster; pool sizes and why (docs/pooling.md)
    $ pgwarden --watch                   headless alerting service: NDJSON events on stdout, logs on stderr;
                                         SIGHUP reloads the config, SIGTERM stops (docs/watch.md)

  Options
    --config FILE     config file (default: the user's config directory, see docs/configuration.md)
    --dsn URI         connect to this server instead of the configured clusters (libpq URI or key=value)
    --cluster NAME    the configured cluster to use (default: the first)
    --node NAME       the node of that cluster (default: the first)
    --json            machine-readable output (docs/json.md)
    --checks IDS      alerts check: only these check ids, comma-separated (docs/alerts.md)
    --wait SECONDS    alerts silence/ack/…: how long to wait for the watcher to take the command (default 15, 0: don't)
    --read-only       the console offers no action that changes the database
    --ascii           ASCII symbols and borders (also when the locale is not UTF-8); NO_COLOR=1 drops colour
    --audit-log FILE  where console actions are logged (default ~/.local/state/pgwarden/audit.log)
    --version         print the version

  Connections follow libpq: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSSLMODE and ~/.pgpass.
  With no config and no --dsn, pgwarden connects as psql would.

  Exit codes: 0 ok, 1 a probe or connection failed, 2 bad usage or config, 3 unsupported here;
  alerts check uses the Nagios codes: 0 ok, 1 warning, 2 critical, 3 unknown.
`;

async function main(): Promise<CommandOutput> {
  // `pgwarden wal …` and the backup commands never get here: bin/pgwarden.js runs them through
  // src/wal-main.ts and src/batch-main.ts (src/cli/batch.ts).
  if (process.argv[2] === 'replica') {
    const { replicaCommand } = await import('./cli/replica.js');
    return replicaCommand(process.argv.slice(3), { progress: (line) => void process.stderr.write(`${redact(line)}\n`), print: (text) => void process.stdout.write(redact(text)) });
  }
  if (process.argv[2] === 'pooler') {
    const { poolerCommand } = await import('./cli/pooler.js');
    return poolerCommand(process.argv.slice(3));
  }
  const cli = meow(help, {
    importMeta: import.meta,
    allowUnknownFlags: false,
    flags: {
      config: { type: 'string' },
      dsn: { type: 'string' },
      cluster: { type: 'string' },
      node: { type: 'string' },
      json: { type: 'boolean', default: false },
      readOnly: { type: 'boolean', default: false },
      ascii: { type: 'boolean', default: false },
      auditLog: { type: 'string' },
      checks: { type: 'string' },
      watch: { type: 'boolean', default: false },
      check: { type: 'string' },
      subject: { type: 'string' },
      for: { type: 'string' },
      comment: { type: 'string' },
      wait: { type: 'number' },
    },
  });
  const [command = 'console', ...rest] = cli.input;
  const loadOptions = { configFile: cli.flags.config, dsn: cli.flags.dsn, knownProbes: probeIds };
  const width = process.stdout.columns ?? 160;
  if (cli.flags.watch) {
    const config = loadConfig(loadOptions);
    const { runWatch } = await import('./watch/watcher.js');
    const controller = new AbortController();
    process.once('SIGTERM', () => controller.abort());
    process.once('SIGINT', () => controller.abort());
    const reload = {
      load: () => loadConfig(loadOptions),
      subscribe: (handler: () => void) => {
        process.on('SIGHUP', handler);
        return () => process.off('SIGHUP', handler);
      },
    };
    return { stdout: '', stderr: '', exitCode: await runWatch(config, { signal: controller.signal, reload }) };
  }
  switch (command) {
    case 'show': {
      const config = loadConfig(loadOptions);
      return show(config, rest.length === 0 ? ['all'] : rest, { json: cli.flags.json, cluster: cli.flags.cluster, node: cli.flags.node, width });
    }
    case 'console': {
      const config = loadConfig(loadOptions);
      const { runConsole } = await import('./app/console.js');
      await runConsole({ config, readOnly: cli.flags.readOnly, ascii: cli.flags.ascii, cluster: cli.flags.cluster, node: cli.flags.node, auditPath: cli.flags.auditLog ?? config.auditLog, dsn: cli.flags.dsn !== undefined });
      return { stdout: '', stderr: '', exitCode: 0 };
    }
    case 'alerts': {
      if (rest[0] === 'test') return alertsTest(loadConfig(loadOptions));
      if ((manageCommands as readonly string[]).includes(rest[0] ?? '')) {
        const { flags } = cli;
        return alertsManage(loadConfig(loadOptions), rest[0] as ManageCommand, rest.slice(1), {
          json: flags.json, check: flags.check, cluster: flags.cluster, node: flags.node, subject: flags.subject, for: flags.for, comment: flags.comment,
          ...(flags.wait === undefined ? {} : { waitMs: Math.max(0, flags.wait) * 1000 }),
        });
      }
      if (rest[0] !== 'check') return { stdout: '', stderr: `pgwarden: unknown alerts command "${rest[0] ?? ''}" (known: check, test, ${manageCommands.join(', ')})\n`, exitCode: 2 };
      const checks = cli.flags.checks?.split(',').map((id) => id.trim()).filter((id) => id !== '');
      let config;
      try {
        config = loadConfig(loadOptions);
      } catch (error) {
        // A plugin that cannot run is UNKNOWN (3) for Nagios, not the usual exit 2.
        if (!isUserError(error)) throw error;
        return { stdout: `PGWARDEN UNKNOWN - ${redact(error.message)}\n`, stderr: error.hint === undefined ? '' : `  hint: ${error.hint}\n`, exitCode: 3 };
      }
      return alertsCheck(config, { json: cli.flags.json, cluster: cli.flags.cluster, node: cli.flags.node, ...(checks === undefined ? {} : { checks }) });
    }
    case 'config':
      return describeConfig(loadConfig(loadOptions));
    case 'demo': {
      const { runDemo } = await import('./demo/run.js');
      return runDemo({ width, console: true });
    }
    default:
      return { stdout: '', stderr: `pgwarden: unknown command "${command}"\n${help}`, exitCode: 2 };
  }
}

await runMain(main);
