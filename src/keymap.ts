/**
 * The key bindings as data. The dispatcher, the footer hints, the help overlay and
 * docs/keybindings.md are all generated from this table; `--read-only` removes every command
 * marked dangerous. Keys are written as Ink reports them: a character ("q", "?", "K"), or a named
 * key with modifiers ("tab", "shift+tab", "ctrl+l", "enter", "escape", "up", "pagedown", "space").
 */

export type Scope =
  /** Anywhere, unless a dialog is open. */
  | 'global'
  /** Any view with a list (all but the overview and help). */
  | 'list'
  | 'activity'
  | 'locks'
  | 'tables'
  | 'alerts'
  | 'backups'
  | 'replication'
  /** A confirmation dialog, the palette, the filter prompt or the detail pane. */
  | 'dialog';

export type CommandId =
  | 'quit' | 'help' | 'redraw' | 'pause' | 'palette' | 'filter' | 'switcher'
  | 'view.next' | 'view.previous'
  | 'view.overview' | 'view.activity' | 'view.pool' | 'view.locks' | 'view.tables' | 'view.replication' | 'view.queries' | 'view.alerts' | 'view.backups'
  | 'cursor.up' | 'cursor.down' | 'cursor.pageUp' | 'cursor.pageDown' | 'cursor.top' | 'cursor.bottom' | 'scroll.left' | 'scroll.right'
  | 'sort.next' | 'sort.reverse' | 'detail'
  | 'session.tag' | 'session.cancel' | 'session.terminate' | 'session.terminateTagged'
  | 'table.vacuum' | 'table.analyze' | 'index.reindex'
  | 'role.setTimeouts'
  | 'alert.acknowledge' | 'alert.unacknowledge' | 'alert.silence' | 'alert.unsilence'
  | 'backup.now' | 'backup.verify' | 'backup.drill' | 'backup.stop'
  | 'cluster.switchover' | 'cluster.failover' | 'cluster.rejoin' | 'cluster.stop'
  | 'dialog.confirm' | 'dialog.cancel' | 'dialog.yes' | 'dialog.no';

export interface Command {
  readonly id: CommandId;
  readonly keys: readonly string[];
  readonly description: string;
  readonly scope: Scope;
  /** Changes the database: removed by --read-only and always confirmed first. */
  readonly dangerous: boolean;
  /** What the command needs to do anything ("needs …"), said in the help and when pressed without it. */
  readonly whyDisabled?: string;
  /** Shown in the footer of its scope (the most useful few). */
  readonly hint?: string;
}

export const commands: readonly Command[] = [
  { id: 'quit', keys: ['q', 'ctrl+c'], description: 'Quit and restore the terminal', scope: 'global', dangerous: false, hint: 'quit' },
  { id: 'help', keys: ['?'], description: 'Show every key binding', scope: 'global', dangerous: false, hint: 'help' },
  { id: 'redraw', keys: ['ctrl+l'], description: 'Redraw the screen', scope: 'global', dangerous: false },
  { id: 'pause', keys: ['p'], description: 'Pause or resume refreshing', scope: 'global', dangerous: false, hint: 'pause' },
  { id: 'palette', keys: [':'], description: 'Command palette: a view name (:locks, :activity…) or an alias (:bloat, :slow)', scope: 'global', dangerous: false, hint: 'go to' },
  { id: 'filter', keys: ['/'], description: 'Filter rows by a regular expression over database, user, application, state and client; !re negates', scope: 'list', dangerous: false, hint: 'filter' },
  { id: 'switcher', keys: ['c'], description: 'Switch cluster or node', scope: 'global', dangerous: false, whyDisabled: 'needs more than one node in the config' },
  { id: 'view.next', keys: ['tab'], description: 'Next view', scope: 'global', dangerous: false },
  { id: 'view.previous', keys: ['shift+tab'], description: 'Previous view', scope: 'global', dangerous: false },
  { id: 'view.overview', keys: ['1'], description: 'Overview', scope: 'global', dangerous: false },
  { id: 'view.activity', keys: ['2'], description: 'Activity: every session', scope: 'global', dangerous: false },
  { id: 'view.pool', keys: ['3'], description: 'Pool: connection slots and PgBouncer pools', scope: 'global', dangerous: false },
  { id: 'view.locks', keys: ['4'], description: 'Locks: the blocking tree', scope: 'global', dangerous: false },
  { id: 'view.tables', keys: ['5'], description: 'Tables: bloat, dead tuples, vacuum', scope: 'global', dangerous: false },
  { id: 'view.replication', keys: ['6'], description: 'Replication: standbys, slots, archiver', scope: 'global', dangerous: false },
  { id: 'view.queries', keys: ['7'], description: 'Queries: pg_stat_statements', scope: 'global', dangerous: false },
  { id: 'view.alerts', keys: ['8'], description: 'Alerts: firing, pending, unknown, silenced and acknowledged, recent history', scope: 'global', dangerous: false },
  { id: 'view.backups', keys: ['9'], description: 'Backups: repositories, recovery window, archiver, every backup', scope: 'global', dangerous: false },
  { id: 'cursor.up', keys: ['up', 'k'], description: 'Select the previous row', scope: 'list', dangerous: false },
  { id: 'cursor.down', keys: ['down', 'j'], description: 'Select the next row', scope: 'list', dangerous: false },
  { id: 'cursor.pageUp', keys: ['pageup'], description: 'One page up', scope: 'list', dangerous: false },
  { id: 'cursor.pageDown', keys: ['pagedown'], description: 'One page down', scope: 'list', dangerous: false },
  { id: 'cursor.top', keys: ['home', 'g'], description: 'First row', scope: 'list', dangerous: false },
  { id: 'cursor.bottom', keys: ['end', 'G'], description: 'Last row', scope: 'list', dangerous: false },
  { id: 'scroll.left', keys: ['left', 'h'], description: 'Scroll columns left (the key column stays)', scope: 'list', dangerous: false },
  { id: 'scroll.right', keys: ['right', 'l'], description: 'Scroll columns right', scope: 'list', dangerous: false },
  { id: 'sort.next', keys: ['s'], description: 'Sort by the next column', scope: 'list', dangerous: false, hint: 'sort' },
  { id: 'sort.reverse', keys: ['S'], description: 'Reverse the sort order', scope: 'list', dangerous: false },
  { id: 'detail', keys: ['enter'], description: 'Details: full query, locks, waiters, statement statistics', scope: 'list', dangerous: false, hint: 'detail' },
  { id: 'session.tag', keys: ['space'], description: 'Tag or untag the selected session', scope: 'activity', dangerous: false, hint: 'tag' },
  { id: 'session.cancel', keys: ['x'], description: "Cancel the selected session's query (pg_cancel_backend)", scope: 'activity', dangerous: true, hint: 'cancel', whyDisabled: 'needs a selected session that is not pgwarden’s own' },
  { id: 'session.terminate', keys: ['K'], description: 'Terminate the selected session (pg_terminate_backend)', scope: 'activity', dangerous: true, hint: 'terminate', whyDisabled: 'needs a selected session that is not pgwarden’s own' },
  { id: 'session.terminateTagged', keys: ['T'], description: 'Terminate every tagged session (type the count to confirm)', scope: 'activity', dangerous: true, whyDisabled: 'needs tagged sessions: tag them with Space' },
  { id: 'table.vacuum', keys: ['v'], description: 'VACUUM (ANALYZE) the selected table, with live progress', scope: 'tables', dangerous: true, hint: 'vacuum' },
  { id: 'table.analyze', keys: ['a'], description: 'ANALYZE the selected table', scope: 'tables', dangerous: true, hint: 'analyze' },
  { id: 'index.reindex', keys: ['R'], description: 'REINDEX INDEX CONCURRENTLY the selected invalid index', scope: 'tables', dangerous: true, whyDisabled: 'needs a selected invalid index, listed under the tables' },
  // In every list: a session row (Activity, Locks) names its role, a timeouts alert (Alerts) names one too.
  { id: 'role.setTimeouts', keys: ['O'], description: 'Set statement_timeout and idle_in_transaction_session_timeout (ALTER ROLE … SET) for the role of the selected session or timeouts alert; new sessions only', scope: 'list', dangerous: true, whyDisabled: 'needs a selected session (Activity, Locks) or a selected timeouts alert (Alerts)' },
  // Not dangerous: they change the alert engine's state, never the database, so --read-only keeps them.
  { id: 'alert.acknowledge', keys: ['a'], description: 'Acknowledge the selected alert (asks for an optional comment); also queued for a running watcher', scope: 'alerts', dangerous: false, hint: 'ack', whyDisabled: 'needs a selected firing or unknown alert' },
  { id: 'alert.unacknowledge', keys: ['A'], description: 'Remove the acknowledgement of the selected alert', scope: 'alerts', dangerous: false, whyDisabled: 'needs a selected acknowledged alert' },
  { id: 'alert.silence', keys: ['m'], description: "Silence the selected alert's check and subject on its node for a while (15m, 1h, 4h, 1d or typed) with a comment; also queued for a running watcher", scope: 'alerts', dangerous: false, hint: 'silence', whyDisabled: 'needs a selected alert or history event' },
  { id: 'alert.unsilence', keys: ['u'], description: 'Remove the selected silence (or the one covering the selected alert)', scope: 'alerts', dangerous: false, hint: 'unsilence', whyDisabled: 'needs a selected silence, or an alert a silence covers' },
  // Not dangerous in the keymap's sense (they change no data), so --read-only keeps them; it refuses backup and drill when pressed, saying why.
  { id: 'backup.now', keys: ['b'], description: 'Back up now: shows the exact `pgwarden backup` command line, runs it once confirmed, streams its progress (refused under --read-only)', scope: 'backups', dangerous: false, hint: 'back up', whyDisabled: 'needs a backup plan for the cluster: a backups section in the --config file' },
  { id: 'backup.verify', keys: ['v'], description: 'Verify the selected backup (or the newest) with `pgwarden verify`: reads the repository only', scope: 'backups', dangerous: false, hint: 'verify', whyDisabled: 'needs a backup listed in the view' },
  { id: 'backup.drill', keys: ['D'], description: 'Restore drill with `pgwarden drill`: restores the newest backup to a scratch server and checks it (refused under --read-only)', scope: 'backups', dangerous: false, hint: 'drill', whyDisabled: 'needs a backup plan for the cluster and a backup in its repository' },
  { id: 'backup.stop', keys: ['escape'], description: "Stop this cluster's running backup job (asks first; q asks too)", scope: 'backups', dangerous: false, whyDisabled: 'needs a running job' },
  // Dangerous: they change which node is the primary; removed under --read-only. Each is `pgwarden switchover|failover|rejoin`, run as a job.
  { id: 'cluster.switchover', keys: ['W'], description: 'Switch over to the selected standby: the plan `pgwarden switchover --dry-run` prints, then type its name', scope: 'replication', dangerous: true, hint: 'switchover', whyDisabled: 'needs a --config cluster of several nodes and a selected standby that is one of them' },
  { id: 'cluster.failover', keys: ['F'], description: 'Fail over (the primary is down) to the most advanced standby: its plan, then type the cluster\'s name', scope: 'replication', dangerous: true, hint: 'failover', whyDisabled: 'needs a --config cluster of several nodes' },
  { id: 'cluster.rejoin', keys: ['J'], description: 'Rejoin the node shown as a standby: fenced if it still writes, pg_rewind, started (type its name)', scope: 'replication', dangerous: true, whyDisabled: 'needs a --config cluster whose node has a dataDir on this host' },
  { id: 'cluster.stop', keys: ['escape'], description: "Stop this cluster's running switchover, failover or rejoin (asks first)", scope: 'replication', dangerous: false, whyDisabled: 'needs a running job' },
  { id: 'dialog.confirm', keys: ['enter'], description: 'Confirm (after typing what is asked, when asked)', scope: 'dialog', dangerous: false },
  { id: 'dialog.cancel', keys: ['escape'], description: 'Close the dialog or prompt without acting', scope: 'dialog', dangerous: false, hint: 'close' },
  { id: 'dialog.yes', keys: ['y'], description: 'Run the plan shown (low and medium danger)', scope: 'dialog', dangerous: false, hint: 'run' },
  { id: 'dialog.no', keys: ['n'], description: 'Decline the plan shown (nothing is done; it is logged)', scope: 'dialog', dangerous: false },
];

/** Scopes active on a view with a list, most specific first. */
export function scopesFor(view: string, dialogOpen: boolean): readonly Scope[] {
  if (dialogOpen) return ['dialog'];
  const specific: Scope[] = view === 'activity' || view === 'locks' || view === 'tables' || view === 'alerts' || view === 'backups' || view === 'replication' ? [view] : [];
  const list: Scope[] = view === 'overview' || view === 'help' ? [] : ['list'];
  // Locks lists sessions too: the session commands apply there.
  const sessions: Scope[] = view === 'locks' ? ['activity'] : [];
  return [...specific, ...sessions, ...list, 'global'];
}

/** The commands that exist in this run: dangerous ones removed in read-only mode, keys remapped. */
export function effectiveCommands(options: { readOnly: boolean; remap?: Readonly<Partial<Record<CommandId, readonly string[]>>> }): readonly Command[] {
  return commands
    .filter((command) => !(options.readOnly && command.dangerous))
    .map((command) => ({ ...command, keys: options.remap?.[command.id] ?? command.keys }));
}

/** The command bound to a key in the first scope that binds it, or undefined. */
export function commandFor(key: string, scopes: readonly Scope[], available: readonly Command[]): Command | undefined {
  for (const scope of scopes) {
    const found = available.find((command) => command.scope === scope && command.keys.includes(key));
    if (found !== undefined) return found;
  }
  return undefined;
}

/** Names of keys as people read them, ASCII only (footer, help and docs alike). */
const namedKeys: Readonly<Record<string, string>> = {
  enter: 'enter',
  return: 'enter',
  space: 'space',
  escape: 'esc',
  tab: 'tab',
  'shift+tab': 'shift-tab',
  backspace: 'backspace',
  delete: 'del',
  up: 'up',
  down: 'down',
  left: 'left',
  right: 'right',
  pageup: 'PgUp',
  pagedown: 'PgDn',
  home: 'Home',
  end: 'End',
};

/** A key as people read it: "enter", "esc", "space", "^L" for ctrl+l, "PgDn"; characters as they are. */
export function keyLabel(key: string): string {
  const named = namedKeys[key];
  if (named !== undefined) return named;
  const ctrl = /^ctrl\+(.)$/.exec(key);
  if (ctrl?.[1] !== undefined) return `^${ctrl[1].toUpperCase()}`;
  return key;
}

