/**
 * The console's root: one reducer for the UI state, one subscription to the runner (one render
 * per refresh), one keypress dispatcher in which open dialogs shadow the views.
 */
import { Box, Text, useInput, type Key } from 'ink';
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'react';
import type { Command } from '../keymap.js';
import { commandFor, scopesFor } from '../keymap.js';
import type { Results } from '../probes/runner.js';
import { resultOf } from '../probes/index.js';
import { latest } from '../probes/types.js';
import { screens } from '../screens/index.js';
import { backupsModel } from '../screens/Backups.js';
import type { ListModel, ScreenProps, Selection } from '../screens/types.js';
import type { Theme } from '../components/theme.js';
import { Header, Tabs } from '../components/Header.js';
import { Footer } from '../components/Footer.js';
import { Toasts } from '../components/Toasts.js';
import { ConfirmDialog, ProgressDialog } from '../components/ConfirmDialog.js';
import { DetailPane } from '../components/DetailPane.js';
import { FilterPrompt, PalettePrompt } from '../components/Prompts.js';
import { HelpOverlay } from '../components/HelpOverlay.js';
import { AlertPrompt } from '../components/AlertPrompt.js';
import { Line } from '../components/Styled.js';
import type { AlertCommand } from '../alerts/commands.js';
import { messageOf } from '../errors.js';
import { alertRowDetail } from './alert-detail.js';
import type { AlertDesk } from './alert-monitor.js';
import type { BackupDesk, BackupsView } from './backup-monitor.js';
import { busyMessage, stopPlanView, type BackupJob, type BackupJobDesk, type BackupJobKind, type BackupJobPlan } from './backup-actions.js';
import { acknowledgeCommand, defaultSilenceDuration, silenceCommand, silencePresets, type AlertTarget } from './alert-prompts.js';
import { alertToasts, type AlertsView } from './alerts-view.js';
import { detailFor } from './detail.js';
import { emptyHistory, recordHistory } from './history.js';
import { keyName, typedText } from './keys.js';
import type { ActionProgress, Monitor, PlanView } from './monitor.js';
import { reduce } from './reducer.js';
import { cycledViews, initialState, viewAliases, views, type UiState, type ViewId } from './state.js';
import type { TopologyDesk } from './topology-monitor.js';

export interface AppProps {
  readonly monitor: Monitor;
  readonly theme: Theme;
  readonly commands: readonly Command[];
  readonly columns: number;
  readonly rows: number;
  readonly initialView?: ViewId;
  /** The cluster and node shown first (indexes into the monitor's choices): --cluster / --node. */
  readonly initialTarget?: { readonly cluster: number; readonly node: number };
  readonly now?: () => Date;
  readonly onQuit: () => void;
  readonly onRedraw?: () => void;
  /** The console's alert engine (the Alerts view, the Overview counts, alert toasts). */
  readonly alerts?: AlertDesk | undefined;
  /** The console's backup monitor (the Backups view). */
  readonly backups?: BackupDesk | undefined;
  /** Runs backup, verify and drill jobs from the Backups view. */
  readonly backupJobs?: BackupJobDesk | undefined;
  /** Every node of the console's cluster probed on its own (the Replication view's topology tree). */
  readonly topology?: TopologyDesk | undefined;
}

const viewTitles: Readonly<Record<ViewId, string>> = {
  overview: 'Overview', activity: 'Activity', pool: 'Pool', locks: 'Locks', tables: 'Tables',
  replication: 'Replication', queries: 'Queries', alerts: 'Alerts', backups: 'Backups', help: 'Help',
};

const toastMs = 4000;
// An alert toast stays longer: it may be the first the user hears of it.
const alertToastMs = 10_000;
// A job's result may come minutes after the key was pressed: it stays long enough to be read.
const jobToastMs = 15_000;

/** An alert in a few words, for prompts. */
function alertWords(target: AlertTarget): string {
  return `${target.checkId} ${target.subject} on ${target.cluster}/${target.node}`;
}

/** An alert in fewer words, for a toast of one line. */
function shortWords(target: AlertTarget): string {
  return `${target.checkId} ${target.subject}`;
}

/** Several ordinary characters delivered together (typed ahead), not one special key. */
function isPlainChunk(input: string, key: { readonly ctrl: boolean; readonly meta: boolean; readonly escape: boolean }): boolean {
  return input.length > 1 && !key.ctrl && !key.meta && !key.escape && !input.includes('\u001b');
}

/** The connection failure behind this refresh's results, or null when the server answers. */
function connectionLost(results: Results): string | null {
  const activity = results.get('activity') ?? results.get('server');
  if (activity?.status !== 'error') return null;
  const sqlstate = activity.error.sqlstate;
  return sqlstate === undefined || sqlstate.startsWith('08') || sqlstate.startsWith('57P') ? activity.error.message : null;
}

/** A keypress waiting its turn. */
interface TypedKey {
  readonly input: string;
  readonly key: Key;
}

/** Ink's report for one plain character of a typed-ahead chunk (Enter and Tab included). */
function plainKey(char: string): Key {
  const none: Key = {
    upArrow: false, downArrow: false, leftArrow: false, rightArrow: false, pageDown: false, pageUp: false, home: false, end: false,
    return: false, escape: false, ctrl: false, shift: false, tab: false, backspace: false, delete: false, meta: false,
    super: false, hyper: false, capsLock: false, numLock: false,
  };
  return { ...none, return: char === '\r' || char === '\n', tab: char === '\t' };
}

/** The selection a row designates, from the screen when it says, else from the row's shape. */
function selectionOf(view: ViewId, row: unknown): Selection {
  const fromScreen = screens[view].selectionOf;
  if (fromScreen !== undefined && row !== undefined) return fromScreen(row);
  return { kind: 'none' };
}

/** The row the cursor is on, by key (stable across refreshes), else by index. */
function selectedRow<R>(model: ListModel<R> | undefined, ui: UiState): { row: R | undefined; index: number } {
  if (model === undefined || model.rows.length === 0) return { row: undefined, index: -1 };
  const view = ui.views[ui.view];
  const byKey = view.selectedKey === null ? -1 : model.rows.findIndex((row) => model.rowKey(row) === view.selectedKey);
  const index = byKey >= 0 ? byKey : Math.min(view.selectedIndex, model.rows.length - 1);
  return { row: model.rows[index], index };
}

/** The console. Pure of I/O but for the Monitor it is given. */
export function App(props: AppProps): React.ReactElement {
  const { monitor, theme } = props;
  const now = props.now ?? (() => new Date());
  const [ui, dispatch] = useReducer(reduce, initialState(props.initialView, props.initialTarget));
  const [results, setResults] = useState<Results>(() => monitor.results());
  const [history, setHistory] = useState(emptyHistory);
  const [lastRefresh, setLastRefresh] = useState<Date | null>(null);
  const [plans, setPlans] = useState<ReadonlyMap<string, PlanView>>(new Map());
  const [progress, setProgress] = useState<ReadonlyMap<string, ActionProgress>>(new Map());
  const [fullQuery, setFullQuery] = useState<{ readonly pid: number; readonly text: string | null } | null>(null);
  const [alertsView, setAlertsView] = useState<AlertsView | undefined>(() => props.alerts?.view());
  const [backupsView, setBackupsView] = useState<BackupsView | undefined>(() => props.backups?.view());
  const [jobs, setJobs] = useState<ReadonlyMap<string, BackupJob>>(() => new Map(props.backupJobs?.jobs()));
  const [topologyView, setTopologyView] = useState(() => props.topology?.view());
  const [jobPlans, setJobPlans] = useState<ReadonlyMap<string, BackupJobPlan>>(new Map());
  const clock = useRef(now());
  const typedAhead = useRef<TypedKey[]>([]);
  const awaitingRender = useRef(false);
  // Every commit means the latest key's state changes are on screen and in the handler's closure.
  useLayoutEffect(() => {
    awaitingRender.current = false;
  });
  const [, setKeyTick] = useState(0);

  // One state update per refresh: React batches the three setters into a single render.
  useEffect(
    () =>
      monitor.subscribe((fresh) => {
        setResults(fresh);
        setHistory((previous) => recordHistory(previous, fresh));
        // "refreshed N s ago" speaks of data: a refresh in which every probe failed does not count.
        if ([...fresh.values()].some((result) => result.status === 'ok')) setLastRefresh(now());
      }),
    // The monitor is fixed for the life of the app.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [monitor],
  );
  useEffect(() => {
    monitor.setPaused(ui.paused);
  }, [monitor, ui.paused]);
  // One render per engine step, off the render path; new firing alerts become toasts.
  useEffect(
    () =>
      props.alerts?.subscribe((view, events) => {
        setAlertsView(view);
        for (const toast of alertToasts(view, events, now())) dispatch({ type: 'toast', toast: { ...toast, until: Date.now() + alertToastMs } });
      }),
    // The alert engine is fixed for the life of the app.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [props.alerts],
  );
  // The backup monitor reads catalogs off the render path; one render per change.
  useEffect(
    () => props.backups?.subscribe(setBackupsView),
    // The backup monitor is fixed for the life of the app.
    [props.backups],
  );
  // One render per job event; a finished job is toasted and the catalogs read again (twice: a
  // read already in flight when the job ended would not see what it wrote).
  useEffect(
    () =>
      props.backupJobs?.subscribe((fresh, finished) => {
        setJobs(new Map(fresh));
        if (finished === null) return;
        dispatch({ type: 'toast', toast: { level: finished.ok === true ? 'success' : 'error', text: `${finished.title}: ${finished.summary ?? ''}`, until: Date.now() + jobToastMs } });
        void props.backups?.refresh().then(() => props.backups?.refresh());
      }),
    // The job desk is fixed for the life of the app.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [props.backupJobs],
  );
  const clusterName = monitor.choices[ui.target.cluster]?.[0]?.cluster;
  // It follows the console's cluster, and reads again when the Backups view is opened.
  useEffect(() => {
    if (clusterName !== undefined) props.backups?.select(clusterName);
  }, [props.backups, clusterName]);
  useEffect(() => {
    if (ui.view === 'backups') void props.backups?.refresh();
  }, [props.backups, ui.view]);
  // The topology monitor probes every node of the console's cluster; one render per change.
  useEffect(() => props.topology?.subscribe(setTopologyView), [props.topology]);
  useEffect(() => props.topology?.setPaused(ui.paused), [props.topology, ui.paused]);
  useEffect(() => {
    if (clusterName !== undefined) props.topology?.select(clusterName);
  }, [props.topology, clusterName]);
  useEffect(() => {
    if (ui.toasts.length === 0) return undefined;
    const next = Math.min(...ui.toasts.map((toast) => toast.until));
    const timer = setTimeout(() => dispatch({ type: 'toasts.expire', now: Date.now() }), Math.max(50, next - Date.now()));
    return () => clearTimeout(timer);
  }, [ui.toasts]);

  clock.current = now();
  const width = Math.max(20, props.columns);
  // Never as tall as the terminal: Ink would clear the screen on every frame.
  const height = Math.max(8, props.rows - 1);
  const lost = connectionLost(results);
  // Toasts get rows of their own rather than covering the body's last lines.
  const toastRows = Math.min(3, ui.toasts.length);
  const bodyHeight = height - 3 - (lost === null ? 0 : 1) - toastRows;
  const choices = monitor.choices[ui.target.cluster] ?? [];
  const choice = choices[ui.target.node];
  const target = choice === undefined ? '' : `${choice.cluster} / ${choice.node} (${choice.label})`;
  const screen = screens[ui.view];
  const screenProps: ScreenProps = {
    results, ui, viewState: ui.views[ui.view], width, height: bodyHeight, theme, history, target, now: clock.current, alerts: alertsView, backups: backupsView,
    backupJob: clusterName === undefined ? undefined : jobs.get(clusterName),
    topology: topologyView?.cluster === clusterName ? topologyView : undefined,
  };
  const model = useMemo(() => screen.model?.(screenProps), [screen, results, ui.views, ui.view, ui.tagged, width, bodyHeight, alertsView, backupsView]); // eslint-disable-line react-hooks/exhaustive-deps
  const { row } = selectedRow(model, ui);
  const selection = selectionOf(ui.view, row);
  const alertSelection = selection.kind === 'alert' ? selection : undefined;
  const server = latest(resultOf(results, 'server'))?.snapshot;
  const selectedBackup = ui.view === 'backups' ? selectedRow(backupsModel(screenProps), ui).row : undefined;
  const allChoices = monitor.choices.flatMap((nodes, cluster) => nodes.map((node, index) => ({ ...node, cluster, index })));

  const toast = (level: 'info' | 'success' | 'warning' | 'error', text: string): void => {
    dispatch({ type: 'toast', toast: { level, text, until: Date.now() + toastMs } });
  };

  const startPlan = (command: string): void => {
    void monitor.plan(command, selection, ui.tagged).then((plan) => {
      setPlans((previous) => new Map(previous).set(plan.id, plan));
      dispatch({ type: 'modal', modal: { kind: 'confirm', planId: plan.id, typed: '' } });
    });
  };

  /** A backup job's plan (the exact command line), or a toast when this cluster already runs one. */
  const planJob = (kind: BackupJobKind): void => {
    const desk = props.backupJobs;
    if (desk === undefined || choice === undefined) {
      toast('info', 'backup jobs are not available in this console');
      return;
    }
    const busy = busyMessage(jobs.get(choice.cluster), now());
    if (busy !== null) {
      toast('warning', busy);
      return;
    }
    const plan = desk.plan({ kind, cluster: choice.cluster, node: choice.node, label: choice.label, role: server?.role ?? null, selected: selectedBackup, view: backupsView });
    setJobPlans((previous) => new Map(previous).set(plan.id, plan));
    dispatch({ type: 'modal', modal: { kind: 'confirm', planId: plan.id, typed: '' } });
  };

  /** A switchover, failover or rejoin: the command's own dry run is the plan shown (a moment while it runs). */
  const planClusterJob = (kind: 'switchover' | 'failover' | 'rejoin'): void => {
    const desk = props.backupJobs;
    if (desk === undefined || choice === undefined) {
      toast('info', `${kind} is not available in this console`);
      return;
    }
    const busy = busyMessage(jobs.get(choice.cluster), now());
    if (busy !== null) {
      toast('warning', busy);
      return;
    }
    const standby = selection.kind === 'standby' ? selection.name : undefined;
    const plan = desk.plan({ kind, cluster: choice.cluster, node: choice.node, label: choice.label, role: server?.role ?? null, selected: undefined, view: undefined, standby });
    const show = (shown: BackupJobPlan): void => {
      setJobPlans((previous) => new Map(previous).set(shown.id, shown));
      dispatch({ type: 'modal', modal: { kind: 'confirm', planId: shown.id, typed: '' } });
    };
    if (plan.refused !== null) {
      show(plan);
      return;
    }
    toast('info', `planning the ${kind}: ${plan.previewArgs.slice(1).join(' ')}`);
    void desk.preview(plan.id).then(show, (error: unknown) => toast('error', error instanceof Error ? error.message : String(error)));
  };

  const forgetJobPlan = (id: string): void => {
    setJobPlans((previous) => {
      const next = new Map(previous);
      next.delete(id);
      return next;
    });
  };

  /** y runs the job (or, when a name must be typed, enter after typing it), n or esc declines it (audited); a refused plan only closes. */
  const onJobPlanKey = (plan: BackupJobPlan, input: string, name: string | undefined, key: Key, typed: string): void => {
    const desk = props.backupJobs;
    const close = (): void => {
      dispatch({ type: 'modal.close' });
      forgetJobPlan(plan.id);
    };
    if (plan.refused !== null || desk === undefined) {
      if (name === 'escape' || name === 'enter') close();
      return;
    }
    const run = (): void => {
      close();
      const why = desk.start(plan.id);
      if (why !== null) toast('warning', why);
    };
    if (plan.confirmToken !== null) {
      if (name === 'escape') {
        desk.decline(plan.id);
        close();
        toast('info', 'nothing was done');
      } else if (name === 'backspace') dispatch({ type: 'prompt.backspace' });
      else if (name === 'enter') {
        if (typed === plan.confirmToken) run();
        else toast('warning', `type ${plan.confirmToken} exactly to confirm`);
      } else {
        const text = typedText(input, key);
        if (text !== undefined) dispatch({ type: 'prompt.input', text });
      }
      return;
    }
    if (input === 'y' || input === 'Y') {
      run();
    } else if (input === 'n' || input === 'N' || name === 'escape') {
      desk.decline(plan.id);
      close();
      toast('info', 'nothing was done');
    }
  };

  /** The running job a stop or quit confirmation is about: this cluster's, else any. */
  const runningJob = (cluster: string): BackupJob | undefined => {
    const own = jobs.get(cluster);
    return own !== undefined && own.status !== 'finished' ? own : props.backupJobs?.running()[0];
  };

  const runPlan = (plan: PlanView): void => {
    dispatch({ type: 'modal', modal: { kind: 'progress', planId: plan.id } });
    const outcome: { last: ActionProgress | null } = { last: null };
    void monitor
      .execute(plan.id, (update) => {
        outcome.last = update;
        setProgress((previous) => new Map(previous).set(plan.id, update));
      })
      .then(() => {
        const final = outcome.last;
        if (final?.ok === true) toast('success', `${plan.title}: done`);
        else toast('error', `${plan.title}: ${final?.message ?? 'failed'}`);
      })
      .catch((error: unknown) => toast('error', error instanceof Error ? error.message : String(error)));
  };

  /** Applies an alert command to the console's engine and queues it for a watcher; says how it went. */
  const applyAlert = (command: AlertCommand, done: string): void => {
    const desk = props.alerts;
    if (desk === undefined) return;
    desk.apply(command).then(
      () => toast('success', `${done}; queued for a watcher`),
      (error: unknown) => toast('warning', `${done} here, but not queued for a watcher: ${messageOf(error)}`),
    );
  };

  const runCommand = (command: Command): void => {
    const keys = model?.rows.map((r) => model.rowKey(r)) ?? [];
    const page = Math.max(1, bodyHeight - 3);
    const sort = ui.views[ui.view].sort ?? model?.defaultSort ?? { column: '', descending: true };
    const actions: Partial<Record<Command['id'], () => void>> = {
      // A running backup job is never stopped silently: quitting asks first.
      quit: () => {
        const running = props.backupJobs?.running()[0];
        if (running === undefined) props.onQuit();
        else dispatch({ type: 'modal', modal: { kind: 'job.stop', cluster: running.cluster, quit: true } });
      },
      help: () => dispatch({ type: 'modal', modal: { kind: 'help' } }),
      redraw: () => {
        dispatch({ type: 'redraw' });
        props.onRedraw?.();
      },
      pause: () => dispatch({ type: 'pause.toggle' }),
      palette: () => dispatch({ type: 'modal', modal: { kind: 'palette', input: '', error: null } }),
      filter: () => dispatch({ type: 'modal', modal: { kind: 'filter', input: ui.views[ui.view].filter?.text ?? '' } }),
      switcher: () =>
        allChoices.length > 1
          ? dispatch({ type: 'modal', modal: { kind: 'switcher', index: Math.max(0, allChoices.findIndex((c) => c.cluster === ui.target.cluster && c.index === ui.target.node)) } })
          : toast('info', `switcher ${command.whyDisabled ?? ''}`),
      'view.next': () => dispatch({ type: 'view.cycle', step: 1 }),
      'view.previous': () => dispatch({ type: 'view.cycle', step: -1 }),
      'cursor.up': () => dispatch({ type: 'cursor', to: -1, relative: true, keys }),
      'cursor.down': () => dispatch({ type: 'cursor', to: 1, relative: true, keys }),
      'cursor.pageUp': () => dispatch({ type: 'cursor', to: -page, relative: true, keys }),
      'cursor.pageDown': () => dispatch({ type: 'cursor', to: page, relative: true, keys }),
      'cursor.top': () => dispatch({ type: 'cursor', to: 'top', relative: false, keys }),
      'cursor.bottom': () => dispatch({ type: 'cursor', to: 'bottom', relative: false, keys }),
      'scroll.left': () => dispatch({ type: 'scroll', step: -1, max: Math.max(0, (model?.columns.length ?? 1) - 2) }),
      'scroll.right': () => dispatch({ type: 'scroll', step: 1, max: Math.max(0, (model?.columns.length ?? 1) - 2) }),
      'sort.next': () => dispatch({ type: 'sort.next', columns: model?.columns.map((c) => c.id) ?? [], current: sort }),
      'sort.reverse': () => dispatch({ type: 'sort.reverse', current: sort }),
      detail: () => {
        if (selection.kind === 'session') {
          dispatch({ type: 'detail.open', target: { kind: 'session', pid: selection.pid } });
          setFullQuery({ pid: selection.pid, text: null });
          void monitor.fullQuery(selection.pid).then((text) => setFullQuery({ pid: selection.pid, text }));
        } else if (selection.kind === 'table' || selection.kind === 'index') {
          dispatch({ type: 'detail.open', target: { kind: 'table', schema: selection.schema, name: selection.name } });
        } else if (selection.kind === 'statement') {
          dispatch({ type: 'detail.open', target: { kind: 'statement', key: selection.key } });
        } else if (selection.kind === 'alert') {
          dispatch({ type: 'detail.open', target: { kind: 'alert', rowKey: selection.rowKey } });
        }
      },
      'session.tag': () => (selection.kind === 'session' ? dispatch({ type: 'tag.toggle', pid: selection.pid }) : toast('info', 'select a session to tag')),
      'alert.acknowledge': () => {
        const target = alertSelection?.target ?? null;
        if (target === null || (alertSelection?.status !== 'firing' && alertSelection?.status !== 'unknown')) toast('info', `acknowledge ${command.whyDisabled ?? ''}`);
        else dispatch({ type: 'modal', modal: { kind: 'acknowledge', target, input: '' } });
      },
      'alert.unacknowledge': () => {
        const target = alertSelection?.target ?? null;
        if (target === null || alertSelection?.acknowledged !== true) toast('info', `unacknowledge ${command.whyDisabled ?? ''}`);
        else applyAlert({ kind: 'unacknowledge', key: target.key }, `acknowledgement of ${shortWords(target)} removed`);
      },
      'alert.silence': () => {
        const target = alertSelection?.target ?? null;
        if (target === null) toast('info', `silence ${command.whyDisabled ?? ''}`);
        else dispatch({ type: 'modal', modal: { kind: 'silence', target, step: 'duration', input: defaultSilenceDuration, duration: '', durationMs: null, error: null } });
      },
      'alert.unsilence': () => {
        const id = alertSelection?.silenceId ?? null;
        if (id === null) toast('info', `unsilence ${command.whyDisabled ?? ''}`);
        else applyAlert({ kind: 'unsilence', id }, 'silence removed');
      },
      'backup.now': () => planJob('backup'),
      'backup.verify': () => planJob('verify'),
      'backup.drill': () => planJob('drill'),
      'cluster.switchover': () => planClusterJob('switchover'),
      'cluster.failover': () => planClusterJob('failover'),
      'cluster.rejoin': () => planClusterJob('rejoin'),
      'cluster.stop': () => {
        const job = choice === undefined ? undefined : jobs.get(choice.cluster);
        if (job === undefined || job.status === 'finished') toast('info', `stop ${command.whyDisabled ?? ''}`);
        else dispatch({ type: 'modal', modal: { kind: 'job.stop', cluster: job.cluster, quit: false } });
      },
      'backup.stop': () => {
        const job = choice === undefined ? undefined : jobs.get(choice.cluster);
        if (job === undefined || job.status === 'finished') toast('info', `stop ${command.whyDisabled ?? ''}`);
        else dispatch({ type: 'modal', modal: { kind: 'job.stop', cluster: job.cluster, quit: false } });
      },
    };
    for (const view of views) {
      if (command.id === `view.${view}`) actions[command.id] = () => dispatch({ type: 'view', view });
    }
    const run = actions[command.id];
    if (run !== undefined) {
      run();
    } else if (command.dangerous) {
      startPlan(command.id);
    }
  };

  const onDialogKey = (input: string, key: Key): void => {
    const name = keyName(input, key);
    const modal = ui.modal;
    if (modal.kind === 'acknowledge' || modal.kind === 'silence') {
      const desk = props.alerts;
      if (name === 'escape') dispatch({ type: 'modal.close' });
      else if (name === 'backspace') dispatch({ type: 'prompt.backspace' });
      else if (modal.kind === 'silence' && modal.step === 'duration' && (name === 'up' || name === 'down')) dispatch({ type: 'silence.preset', step: name === 'up' ? -1 : 1 });
      else if (modal.kind === 'silence' && modal.step === 'duration' && name === 'enter') dispatch({ type: 'silence.duration' });
      else if (name === 'enter') {
        dispatch({ type: 'modal.close' });
        if (desk === undefined) return;
        if (modal.kind === 'acknowledge') {
          applyAlert(acknowledgeCommand(modal.target, desk.author, modal.input), `acknowledged ${shortWords(modal.target)}`);
        } else if (modal.durationMs !== null) {
          const command = silenceCommand(modal.target, { id: desk.newSilenceId(), durationMs: modal.durationMs, comment: modal.input, author: desk.author, now: now() });
          applyAlert(command, `silenced ${shortWords(modal.target)} for ${modal.duration}`);
        }
      } else {
        const text = typedText(input, key);
        if (text !== undefined) dispatch({ type: 'prompt.input', text });
      }
      return;
    }
    if (modal.kind === 'palette' || modal.kind === 'filter') {
      if (name === 'escape') dispatch({ type: 'modal.close' });
      else if (name === 'enter') dispatch({ type: modal.kind === 'palette' ? 'palette.submit' : 'filter.submit' });
      else if (name === 'backspace') dispatch({ type: 'prompt.backspace' });
      else {
        const text = typedText(input, key);
        if (text !== undefined) dispatch({ type: 'prompt.input', text });
      }
      return;
    }
    if (modal.kind === 'job.stop') {
      const job = runningJob(modal.cluster);
      if (input === 'y' || input === 'Y') {
        dispatch({ type: 'modal.close' });
        // Quitting stops every running job (console.tsx waits for them and says so on the terminal).
        if (modal.quit) props.onQuit();
        else if (job !== undefined) {
          props.backupJobs?.stop(job.cluster);
          toast('warning', `stopping the ${job.kind} job on ${job.cluster}`);
        }
      } else if (input === 'n' || input === 'N' || name === 'escape') {
        dispatch({ type: 'modal.close' });
      }
      return;
    }
    if (modal.kind === 'confirm') {
      const jobPlan = jobPlans.get(modal.planId);
      if (jobPlan !== undefined) {
        onJobPlanKey(jobPlan, input, name, key, modal.typed);
        return;
      }
      const plan = plans.get(modal.planId);
      if (plan === undefined || plan.refused !== null) {
        if (name === 'escape' || name === 'enter') dispatch({ type: 'modal.close' });
        return;
      }
      const decline = (): void => {
        monitor.decline(plan.id);
        dispatch({ type: 'modal.close' });
        toast('info', 'nothing was done');
      };
      if (plan.confirmToken === null) {
        if (input === 'y' || input === 'Y') runPlan(plan);
        else if (input === 'n' || input === 'N' || name === 'escape') decline();
        return;
      }
      if (name === 'escape') decline();
      else if (name === 'backspace') dispatch({ type: 'prompt.backspace' });
      else if (name === 'enter') {
        if (modal.typed === plan.confirmToken) runPlan(plan);
        else toast('warning', `type ${plan.confirmToken} exactly to confirm`);
      } else {
        const text = typedText(input, key);
        if (text !== undefined) dispatch({ type: 'prompt.input', text });
      }
      return;
    }
    if (modal.kind === 'switcher') {
      if (name === 'escape') dispatch({ type: 'modal.close' });
      else if (name === 'up' || name === 'k') dispatch({ type: 'switcher.move', step: -1, count: allChoices.length });
      else if (name === 'down' || name === 'j') dispatch({ type: 'switcher.move', step: 1, count: allChoices.length });
      else if (name === 'enter') {
        const picked = allChoices[modal.index];
        if (picked !== undefined) {
          monitor.select(picked.cluster, picked.index);
          dispatch({ type: 'target', cluster: picked.cluster, node: picked.index });
          setHistory(emptyHistory);
          setResults(monitor.results());
        }
      }
      return;
    }
    if (modal.kind === 'detail') {
      if (name === 'up' || name === 'k') dispatch({ type: 'detail.scroll', step: -1 });
      else if (name === 'down' || name === 'j') dispatch({ type: 'detail.scroll', step: 1 });
      else if (name === 'pagedown') dispatch({ type: 'detail.scroll', step: bodyHeight - 4 });
      else if (name === 'pageup') dispatch({ type: 'detail.scroll', step: -(bodyHeight - 4) });
      else if (name === 'escape' || name === 'enter' || name === 'q') dispatch({ type: 'modal.close' });
      return;
    }
    if (modal.kind === 'help' || modal.kind === 'progress') {
      if (name === 'escape' || name === 'enter' || name === 'q' || name === '?') dispatch({ type: 'modal.close' });
    }
  };

  /** One key against the state of the latest render: the open dialog first, else the views' commands. */
  const handleKey = (input: string, key: Key): void => {
    if (ui.modal.kind !== 'none') {
      onDialogKey(input, key);
      return;
    }
    const name = keyName(input, key);
    const command = name === undefined ? undefined : commandFor(name, scopesFor(ui.view, false), props.commands);
    if (command !== undefined) runCommand(command);
  };

  // Ink re-subscribes the input handler after each render; keys typed before that would reach a
  // handler holding the previous state. Route every key through a ref to the latest handler.
  const onKey = useRef<(input: string, key: Key) => void>(() => undefined);
  useInput((input, key) => onKey.current(input, key));
  onKey.current = (input, key) => {
    // Ctrl-C always quits, whatever is open or queued.
    if (key.ctrl && input === 'c') {
      props.onQuit();
      return;
    }
    // Over a slow link several keystrokes arrive in one read (":locks⏎", "2jj"): queue them, and
    // take one per render so that each sees the state the previous one left (the view, its rows,
    // the prompt it opened).
    const keys: TypedKey[] = isPlainChunk(input, key) ? Array.from(input, (char) => ({ input: char, key: plainKey(char) })) : [{ input, key }];
    // A lone key, with nothing queued and the previous key's render done, is handled at once:
    // queuing it would cost a render and a frame. Otherwise it waits its turn.
    if (keys.length === 1 && typedAhead.current.length === 0 && !awaitingRender.current) {
      awaitingRender.current = true;
      handleKey(input, key);
      return;
    }
    typedAhead.current.push(...keys);
    setKeyTick((tick) => tick + 1);
  };

  // Runs after every render on purpose: it drains the typed-ahead queue one key per render.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(() => {
    const next = typedAhead.current.shift();
    if (next === undefined) return;
    handleKey(next.input, next.key);
    if (typedAhead.current.length > 0) setKeyTick((tick) => tick + 1);
  });

  const modal = ui.modal;
  let body: React.ReactElement;
  if (modal.kind === 'help') {
    body = <HelpOverlay commands={props.commands} width={width} height={bodyHeight} scroll={0} theme={theme} />;
  } else if (modal.kind === 'detail') {
    const detail = modal.target.kind === 'alert'
      ? alertRowDetail(alertsView, modal.target.rowKey, clock.current)
      : detailFor(results, modal.target, modal.target.kind === 'session' && fullQuery?.pid === modal.target.pid ? fullQuery.text : null);
    body = <DetailPane title={detail.title} sections={detail.sections.map((s) => ({ heading: s.heading, lines: [...s.lines] }))} width={width} height={bodyHeight} scroll={modal.scroll} theme={theme} />;
  } else if (modal.kind === 'confirm' && jobPlans.get(modal.planId) !== undefined) {
    body = <ConfirmDialog plan={jobPlans.get(modal.planId) as BackupJobPlan} typed={modal.typed} width={width} theme={theme} />;
  } else if (modal.kind === 'job.stop') {
    const job = runningJob(modal.cluster);
    body = job === undefined
      ? <ConfirmDialog plan={{ title: 'The job has ended', target: modal.cluster, danger: 'low', steps: [], confirmToken: null, refused: 'nothing is running any more' }} typed="" width={width} theme={theme} />
      : <ConfirmDialog plan={stopPlanView(job, modal.quit, clock.current)} typed="" width={width} theme={theme} />;
  } else if (modal.kind === 'confirm' && plans.get(modal.planId) !== undefined) {
    body = <ConfirmDialog plan={plans.get(modal.planId) as PlanView} typed={modal.typed} width={width} theme={theme} />;
  } else if (modal.kind === 'progress' && plans.get(modal.planId) !== undefined) {
    body = <ProgressDialog plan={plans.get(modal.planId) as PlanView} progress={progress.get(modal.planId) ?? null} width={width} theme={theme} />;
  } else if (modal.kind === 'switcher') {
    body = (
      <Box flexDirection="column">
        <Text>Switch to (↑/↓, Enter, Esc):</Text>
        {allChoices.map((c, index) => (
          <Text key={`${c.cluster}-${c.index}`} inverse={index === modal.index}>
            {`${index === modal.index ? '>' : ' '} ${c.cluster === ui.target.cluster && c.index === ui.target.node ? '*' : ' '} ${monitor.choices[c.cluster]?.[c.index]?.cluster ?? ''} / ${c.node} (${c.label})`}
          </Text>
        ))}
      </Box>
    );
  } else {
    body = <screen.Screen {...screenProps} />;
  }

  const prompt =
    modal.kind === 'palette' ? (
      <PalettePrompt input={modal.input} error={modal.error} suggestions={Object.keys(viewAliases).filter((name) => name.startsWith(modal.input.replace(/^:/, '')))} width={width} theme={theme} />
    ) : modal.kind === 'filter' ? (
      <FilterPrompt input={modal.input} width={width} theme={theme} />
    ) : modal.kind === 'acknowledge' || modal.kind === 'silence' ? (
      <AlertPrompt
        kind={modal.kind}
        about={alertWords(modal.target)}
        step={modal.kind === 'silence' ? modal.step : 'comment'}
        input={modal.input}
        duration={modal.kind === 'silence' ? modal.duration : null}
        error={modal.kind === 'silence' ? modal.error : null}
        presets={silencePresets}
        width={width}
        theme={theme}
      />
    ) : null;

  return (
    <Box flexDirection="column" width={width} height={height}>
      <Header
        target={target}
        role={server?.role ?? null}
        paused={ui.paused}
        lastRefresh={lastRefresh}
        now={clock.current}
        width={width}
        theme={theme}
        viewTitle={viewTitles[ui.view]}
      />
      <Tabs views={cycledViews.map((id, index) => ({ id, title: viewTitles[id], key: String(index + 1) }))} current={ui.view} width={width} theme={theme} />
      <Box flexDirection="column" height={bodyHeight} overflow="hidden">
        {body}
      </Box>
      {lost === null ? null : (
        <Line color={theme.color.critical}>
          {`connection lost: ${lost} — retrying on its own${lastRefresh === null ? '' : `; data from ${lastRefresh.toISOString().slice(11, 19)} shown as stale`}`}
        </Line>
      )}
      <Toasts toasts={ui.toasts} width={width} theme={theme} />
      {prompt ?? <Footer commands={props.commands} scopes={scopesFor(ui.view, modal.kind !== 'none')} width={width} theme={theme} />}
    </Box>
  );
}
