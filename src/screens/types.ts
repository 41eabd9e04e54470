/** The contract between the console shell (src/app) and the screens. */
import type { Results } from '../probes/runner.js';
import type { AlertTarget } from '../app/alert-prompts.js';
import type { AlertsView } from '../app/alerts-view.js';
import type { BackupJob } from '../app/backup-actions.js';
import type { BackupsView } from '../app/backup-monitor.js';
import type { TopologyView } from '../cluster/topology.js';
import type { UiState, ViewId, ViewState } from '../app/state.js';
import type { ColumnSpec } from '../components/table-types.js';
import type { Theme } from '../components/theme.js';

/** Recent values for sparklines, oldest first, one per refresh (at most 120). */
export interface History {
  readonly tps: readonly number[];
  readonly connections: readonly number[];
  /** The largest replay lag in bytes over all standbys (primary) or the replay gap (standby). */
  readonly lagBytes: readonly number[];
}

export interface ScreenProps {
  readonly results: Results;
  readonly ui: UiState;
  /** ui.views[ui.view], for convenience. */
  readonly viewState: ViewState;
  /** The area the screen may use (the shell keeps header and footer outside it). */
  readonly width: number;
  readonly height: number;
  readonly theme: Theme;
  readonly history: History;
  /** The target being watched, e.g. "prod / db1 (postgres@db1:5432/postgres)". */
  readonly target: string;
  readonly now: Date;
  /** The console's alert engine (absent when it is not running). */
  readonly alerts?: AlertsView | undefined;
  /** The console's backup monitor (absent when it is not running: shown as no backup plan). */
  readonly backups?: BackupsView | undefined;
  /** The latest backup job (backup, verify, drill) of the cluster shown, running or finished. */
  readonly backupJob?: BackupJob | undefined;
  /** The topology of the cluster shown, every node probed (absent for a cluster of one node: the Replication view then shows this node's view only). */
  readonly topology?: TopologyView | undefined;
}

/** What the shell needs of a list screen to move the cursor, sort, filter and act on a row. */
export interface ListModel<R> {
  /** Filtered and sorted as the screen shows them. */
  readonly rows: readonly R[];
  readonly columns: readonly ColumnSpec<R>[];
  rowKey(this: void, row: R): string;
  /** The default sort when the user has chosen none. */
  readonly defaultSort: { readonly column: string; readonly descending: boolean };
}

/** What the selected row is, for actions and the detail pane. */
export type Selection =
  | { readonly kind: 'session'; readonly pid: number }
  | { readonly kind: 'table'; readonly schema: string; readonly name: string }
  | { readonly kind: 'index'; readonly schema: string; readonly name: string; readonly invalid: boolean }
  | { readonly kind: 'statement'; readonly key: string }
  /** A standby of the Replication view, by its application_name (a configured node's name, by convention). */
  | { readonly kind: 'standby'; readonly name: string }
  /**
   * A row of the Alerts view. `target` is the alert it is about (none for a silence row); `status`
   * its state now (null when it is no longer active); `silenceId` the silence on the row or covering it.
   */
  | {
    readonly kind: 'alert';
    readonly rowKey: string;
    readonly target: AlertTarget | null;
    readonly status: 'pending' | 'firing' | 'unknown' | 'resolved' | null;
    readonly acknowledged: boolean;
    readonly silenceId: string | null;
  }
  | { readonly kind: 'none' };

export interface ScreenModule<R = unknown> {
  readonly id: ViewId;
  readonly title: string;
  /** Present for list screens. */
  readonly model?: (props: ScreenProps) => ListModel<R>;
  /** What a row of this screen's list designates (a session, a table, an index…). */
  selectionOf?(this: void, row: R): Selection;
  readonly Screen: (props: ScreenProps) => React.ReactElement;
}
