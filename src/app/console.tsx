/**
 * Starting and stopping the interactive console: the terminal (alternate screen, cursor, restore
 * on every exit path), the runner over the chosen node, and the App.
 */
import { render, type Instance } from 'ink';
import { useEffect, useState } from 'react';
import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { effectiveCommands, type Command } from '../keymap.js';
import { themeFromEnvironment, type Theme } from '../components/theme.js';
import { App } from './App.js';
import { createAlertMonitor, type AlertDesk } from './alert-monitor.js';
import { createBackupMonitor, type BackupDesk } from './backup-monitor.js';
import { createBackupJobs, type BackupJobDesk } from './backup-actions.js';
import { createMonitor, targetOf } from './live-monitor.js';
import type { Monitor } from './monitor.js';
import type { ViewId } from './state.js';
import { createTopologyMonitor, type TopologyDesk } from './topology-monitor.js';

export interface ConsoleOptions {
  readonly config: Config;
  readonly readOnly: boolean;
  readonly ascii: boolean;
  readonly initialView?: ViewId;
  readonly cluster?: string | undefined;
  readonly node?: string | undefined;
  readonly auditPath?: string | undefined;
  /** Started with --dsn: backup jobs then name that server, not a config cluster. */
  readonly dsn?: boolean | undefined;
}

const enterAlternateScreen = '\u001b[?1049h\u001b[H';
const leaveAlternateScreen = '\u001b[?1049l';
const hideCursor = '\u001b[?25l';
const showCursor = '\u001b[?25h';
// Clears the visible screen only: \u001b[3J would also erase the user's scrollback.
const clearScreen = '\u001b[2J\u001b[H';

interface RootProps {
  readonly monitor: Monitor;
  readonly alerts: AlertDesk;
  readonly backups: BackupDesk;
  readonly backupJobs: BackupJobDesk;
  readonly topology: TopologyDesk;
  readonly theme: Theme;
  readonly commands: readonly Command[];
  readonly initialView: ViewId | undefined;
  readonly initialTarget: { readonly cluster: number; readonly node: number };
  readonly onQuit: () => void;
  readonly onRedraw: () => void;
}

/** Follows the terminal's size, so the frame is re-laid out on resize. */
function Root(props: RootProps): React.ReactElement {
  const [size, setSize] = useState({ columns: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
  useEffect(() => {
    const onResize = (): void => setSize({ columns: process.stdout.columns || 80, rows: process.stdout.rows || 24 });
    process.stdout.on('resize', onResize);
    return () => {
      process.stdout.off('resize', onResize);
    };
  }, []);
  return (
    <App
      monitor={props.monitor}
      alerts={props.alerts}
      backups={props.backups}
      backupJobs={props.backupJobs}
      topology={props.topology}
      theme={props.theme}
      commands={props.commands}
      columns={size.columns}
      rows={size.rows}
      onQuit={props.onQuit}
      onRedraw={props.onRedraw}
      initialTarget={props.initialTarget}
      {...(props.initialView === undefined ? {} : { initialView: props.initialView })}
    />
  );
}

/** Runs the console until the user quits; the terminal is restored on every path. */
export async function runConsole(options: ConsoleOptions): Promise<void> {
  if (!process.stdin.isTTY || !process.stdout.isTTY) {
    throw new UserError('the console needs a terminal', 'for batch output use `pgwarden show <probe>` (add --json for machines)');
  }
  const monitor = await createMonitor(options);
  // The console runs the checks and the alert engine itself; it sends no notice (the watcher does).
  const alerts = await createAlertMonitor({ config: options.config }).catch(async (error: unknown) => {
    await monitor.close();
    throw error;
  });
  // Backups of the console's cluster: catalogs read in the background (the Backups view).
  const initialTarget = targetOf(options.config, options.cluster, options.node);
  const backups = createBackupMonitor({ config: options.config, cluster: monitor.choices[initialTarget.cluster]?.[initialTarget.node]?.cluster ?? options.cluster ?? '' });
  // Backup, verify and drill from the Backups view: `pgwarden …` child processes.
  const backupJobs = createBackupJobs({ config: options.config, readOnly: options.readOnly, dsn: options.dsn, auditPath: options.auditPath });
  // Every node of the console's cluster probed on its own: the topology tree of the Replication view.
  const topology = createTopologyMonitor({ config: options.config, cluster: monitor.choices[initialTarget.cluster]?.[initialTarget.node]?.cluster ?? options.cluster ?? '' });
  const theme = themeFromEnvironment(process.env, { ascii: options.ascii });
  const commands = effectiveCommands({ readOnly: options.readOnly, remap: options.config.keys });

  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    process.stdout.write(showCursor + leaveAlternateScreen);
  };
  process.stdout.write(enterAlternateScreen + hideCursor);
  // Whatever ends the process, the user gets their terminal back.
  process.on('exit', restore);

  let instance: Instance | undefined;
  let quit: () => void = () => undefined;
  const quitting = new Promise<void>((resolve) => {
    quit = resolve;
  });
  const onSignal = (): void => quit();
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('SIGINT', onSignal);
  const onCrash = (error: unknown): void => {
    instance?.unmount();
    restore();
    process.stderr.write(`pgwarden: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(70);
  };
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  const onRedraw = (): void => {
    instance?.clear();
    process.stdout.write(clearScreen);
  };
  process.stdout.on('resize', onRedraw);

  try {
    instance = render(
      <Root monitor={monitor} alerts={alerts} backups={backups} backupJobs={backupJobs} topology={topology} theme={theme} commands={commands} initialView={options.initialView} initialTarget={initialTarget} onQuit={() => quit()} onRedraw={onRedraw} />,
      // 60 fps: at Ink's default 30 a keypress can wait a whole 33 ms frame before it shows.
      { exitOnCtrlC: false, patchConsole: false, maxFps: 60 },
    );
    await quitting;
  } finally {
    instance?.unmount();
    process.stdout.off('resize', onRedraw);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('SIGINT', onSignal);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
    restore();
    // A job still running is stopped (SIGTERM to its process group), and the terminal says so.
    const [stopped] = await Promise.all([backupJobs.close(), monitor.close(), alerts.close(), backups.close(), topology.close()]);
    for (const line of stopped) process.stderr.write(`pgwarden: ${line}\n`);
  }
}
