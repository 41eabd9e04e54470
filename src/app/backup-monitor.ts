/**
 * The console's backup monitor (issue 5 item 11): for the console's cluster, when the config has a
 * backup plan, it reads the catalog of each of the cluster's repositories every 60 s (and on
 * demand), computes each one's recovery window, and publishes a BackupsView for the Backups screen.
 * Reads run on timers and promises, never inside a render; each repository is read on its own, so
 * a slow or broken one does not hold the others back. Read-only: nothing is written anywhere.
 * The view also carries the plan's streaming settings (enabled, slot), which the screen compares
 * with what the server itself says of pg_receivewal (the replication probe), since the watcher
 * that streams may run on another host.
 */
import { readCatalog, type Catalog } from '../backup/catalog.js';
import { readDrills, type DrillRecord } from '../backup/drill.js';
import { loadKeyring } from '../backup/keys.js';
import { openRepository, type OpenRepository, type RepositoryConfig } from '../backup/repository/index.js';
import type { Keyring, VerificationRecord } from '../backup/types.js';
import { defaultSlotName, RECEIVER_APPLICATION } from '../backup/wal/receive.js';
import { recoveryWindow, type RecoveryWindow } from '../backup/window.js';
import { resolveBackupPlan, type BackupPlan } from '../config/backups.js';
import type { Config } from '../config/types.js';
import { isUserError, messageOf } from '../errors.js';

/** How often the catalogs are read again. */
export const backupRefreshMs = 60_000;

/** Where the docs say how to configure backups. */
export const backupsConfigDoc = 'docs/configuration.md#backups';

/** One complete backup of a repository, as the screen lists it. */
export interface BackupEntry {
  readonly repository: string;
  readonly id: string;
  /** When it finished (the manifest's stoppedAt). */
  readonly finishedAt: string;
  /** Bytes stored in the repository (compressed, encrypted). */
  readonly storedBytes: number;
  /** Bytes of the data directory copy. */
  readonly originalBytes: number;
  readonly durationMs: number;
  readonly node: string;
  readonly fromStandby: boolean;
  /** The last verification record, or null when it was never verified. */
  readonly verified: VerificationRecord | null;
  /** The newest restore drill of this backup, or null when none restored it. */
  readonly drilled: DrillRecord | null;
  /** Whether the archived WAL lets it be restored, and why not. */
  readonly restorable: boolean;
  readonly problem: string | null;
}

/** What is known of one repository. */
export type RepositoryState =
  | { readonly name: string; readonly description: string; readonly status: 'loading' }
  | {
    readonly name: string;
    readonly description: string;
    readonly status: 'error';
    /** What went wrong, and what to do about it. */
    readonly reason: string;
    readonly fix: string;
    readonly failedAt: Date;
    /** The last good read, when there was one (shown as stale). */
    readonly last: RepositoryData | null;
  }
  | ({ readonly name: string; readonly description: string; readonly status: 'ok' } & RepositoryData);

/** A successful read of one repository. */
export interface RepositoryData {
  readonly readAt: Date;
  readonly catalog: Catalog;
  readonly window: RecoveryWindow;
  /** Newest first. */
  readonly backups: readonly BackupEntry[];
  /** Every drill recorded in the repository, oldest first. */
  readonly drills: readonly DrillRecord[];
}

/** The application_name of pgwarden's pg_receivewal, as pg_stat_replication shows it. */
export { RECEIVER_APPLICATION };

/** The streaming settings of the cluster's backup plan, as the screen needs them (docs/wal-streaming.md). */
export interface StreamingPlan {
  /** `pgwarden --watch` runs pg_receivewal for this cluster. */
  readonly enabled: boolean;
  /** The replication slot it streams on: the plan's, else pgwarden_<cluster>. */
  readonly slot: string;
}

/** What the Backups screen shows. */
export type BackupsView =
  | { readonly kind: 'unconfigured'; readonly cluster: string }
  | {
    readonly kind: 'configured';
    readonly cluster: string;
    readonly encrypted: boolean;
    /** Why the keys could not be loaded (encrypted timeline histories are then inferred), or null. */
    readonly keyProblem: string | null;
    readonly repositories: readonly RepositoryState[];
    /** A read is in flight. */
    readonly reading: boolean;
    /** Absent (views made by hand): streaming not enabled, on the default slot. */
    readonly streaming?: StreamingPlan | undefined;
  };

/** The streaming settings of a configured view. */
export function streamingPlanOf(view: Extract<BackupsView, { kind: 'configured' }>): StreamingPlan {
  return view.streaming ?? { enabled: false, slot: defaultSlotName(view.cluster) };
}

/** The streaming settings of a plan, with the slot the receiver would use. */
export function streamingPlan(plan: BackupPlan): StreamingPlan {
  return { enabled: plan.streaming.enabled, slot: plan.streaming.slot ?? defaultSlotName(plan.cluster) };
}

/** The backup monitor as the console shell uses it (the real one below; tests give their own). */
export interface BackupDesk {
  view(): BackupsView;
  /** Called whenever the view changes. Returns the unsubscribe function. */
  subscribe(listener: (view: BackupsView) => void): () => void;
  /** Reads the catalogs now (joins a read in flight); resolves when it is done. */
  refresh(): Promise<void>;
  /** Follows another cluster of the config (reads its repositories at once). */
  select(cluster: string): void;
  close(): Promise<void>;
}

export interface BackupMonitorOptions {
  readonly config: Pick<Config, 'backups'>;
  readonly cluster: string;
  readonly intervalMs?: number;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly now?: () => Date;
}

/** The entries of a catalog, newest first. */
export function backupEntries(repository: string, catalog: Catalog, window: RecoveryWindow, drills: readonly DrillRecord[] = []): BackupEntry[] {
  return catalog.backups
    .map((backup): BackupEntry => {
      const { manifest } = backup;
      const reach = window.backups.find((b) => b.id === manifest.id);
      return {
        repository,
        id: manifest.id,
        finishedAt: manifest.stoppedAt,
        storedBytes: backup.storedBytes,
        originalBytes: manifest.originalBytes,
        durationMs: manifest.durationMs,
        node: manifest.source.node,
        fromStandby: manifest.source.standby,
        verified: backup.verifications[backup.verifications.length - 1] ?? null,
        drilled: drills.filter((drill) => drill.backupId === manifest.id).pop() ?? null,
        restorable: reach?.restorable ?? false,
        problem: reach?.problem ?? null,
      };
    })
    .reverse();
}

/** What to do about a repository that cannot be read. */
export function repositoryFix(repository: RepositoryConfig, error: unknown): string {
  if (isUserError(error) && error.hint !== undefined) return error.hint;
  const spec = repository.spec;
  if (spec.type === 'local') {
    const code = (error as { code?: unknown } | null)?.code;
    if (code === 'EACCES' || code === 'EPERM') return `let the user running pgwarden read ${spec.path} (chmod/chown), or run the console as the backup user`;
    return `check that ${spec.path} exists and holds the repository (backups.repositories "${repository.name}"); \`pgwarden backups\` reads the same catalog`;
  }
  return `check the endpoint ${spec.endpoint ?? '(AWS default)'}, bucket ${spec.bucket} and credentials of backups.repositories "${repository.name}"; \`pgwarden backups\` reads the same catalog`;
}

function describe(repository: RepositoryConfig): string {
  const spec = repository.spec;
  return spec.type === 'local' ? `local ${spec.path}` : `s3://${spec.bucket}${spec.prefix === '' ? '' : `/${spec.prefix}`}`;
}

class ConsoleBackups implements BackupDesk {
  private readonly listeners = new Set<(view: BackupsView) => void>();
  private readonly intervalMs: number;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly now: () => Date;
  private plan: BackupPlan | undefined;
  /** The plan's streaming settings, made once per cluster so the view keeps one object. */
  private streaming: StreamingPlan | undefined;
  private cluster: string;
  private keyring: Keyring | undefined;
  private keyProblem: string | null = null;
  private states: RepositoryState[] = [];
  private reading: Promise<void> | undefined;
  /** Bumped on select(): a read of the previous cluster publishes nothing. */
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private current: BackupsView;

  constructor(private readonly options: BackupMonitorOptions) {
    this.intervalMs = options.intervalMs ?? backupRefreshMs;
    this.env = options.env ?? process.env;
    this.now = options.now ?? (() => new Date());
    this.cluster = options.cluster;
    this.setUp(options.cluster);
    this.current = this.makeView();
  }

  private setUp(cluster: string): void {
    this.cluster = cluster;
    this.plan = resolveBackupPlan(this.options.config, cluster);
    this.streaming = this.plan === undefined ? undefined : streamingPlan(this.plan);
    this.keyring = undefined;
    this.keyProblem = null;
    if (this.plan !== undefined && this.plan.keys.length > 0) {
      try {
        this.keyring = loadKeyring(this.plan.keys, this.env);
      } catch (error) {
        this.keyProblem = isUserError(error) && error.hint !== undefined ? `${error.message}: ${error.hint}` : messageOf(error);
      }
    }
    this.states = (this.plan?.repositories ?? []).map((repository) => ({ name: repository.name, description: describe(repository), status: 'loading' }));
  }

  private makeView(): BackupsView {
    if (this.plan === undefined) return { kind: 'unconfigured', cluster: this.cluster };
    return {
      kind: 'configured', cluster: this.cluster, encrypted: this.plan.encrypted, keyProblem: this.keyProblem, repositories: this.states,
      reading: this.reading !== undefined, streaming: this.streaming,
    };
  }

  private publish(): void {
    if (this.stopped) return;
    this.current = this.makeView();
    for (const listener of this.listeners) listener(this.current);
  }

  start(): void {
    if (this.plan !== undefined) void this.refresh();
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.refresh().finally(() => this.schedule());
    }, this.intervalMs);
    this.timer.unref();
  }

  refresh(): Promise<void> {
    if (this.stopped || this.plan === undefined) return Promise.resolve();
    if (this.reading !== undefined) return this.reading;
    const generation = this.generation;
    const plan = this.plan;
    this.reading = Promise.all(plan.repositories.map((repository, index) => this.readOne(repository, index, generation))).then(() => {
      if (generation !== this.generation) return;
      this.reading = undefined;
      this.publish();
    });
    this.publish();
    return this.reading;
  }

  private async readOne(repository: RepositoryConfig, index: number, generation: number): Promise<void> {
    let state: RepositoryState;
    let open: OpenRepository | undefined;
    try {
      open = openRepository(repository.spec, this.env, repository.name);
      const catalog = await readCatalog(open, this.keyring === undefined ? {} : { keyring: this.keyring });
      const window = recoveryWindow(catalog);
      const drills = await readDrills(open);
      state = { name: repository.name, description: describe(repository), status: 'ok', readAt: this.now(), catalog, window, drills, backups: backupEntries(repository.name, catalog, window, drills) };
    } catch (error) {
      const previous = this.states[index];
      const last = previous?.status === 'ok' ? previous : previous?.status === 'error' ? previous.last : null;
      state = {
        name: repository.name, description: describe(repository), status: 'error',
        reason: messageOf(error), fix: repositoryFix(repository, error), failedAt: this.now(),
        last: last === null ? null : { readAt: last.readAt, catalog: last.catalog, window: last.window, backups: last.backups, drills: last.drills },
      };
    } finally {
      open?.close();
    }
    if (generation !== this.generation || this.stopped) return;
    this.states = this.states.map((old, at) => (at === index ? state : old));
    this.publish();
  }

  select(cluster: string): void {
    if (cluster === this.cluster) return;
    this.generation += 1;
    this.reading = undefined;
    this.setUp(cluster);
    this.publish();
    if (this.plan !== undefined) void this.refresh();
  }

  view(): BackupsView {
    return this.current;
  }

  subscribe(listener: (view: BackupsView) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    const reading = this.reading;
    this.stopped = true;
    clearTimeout(this.timer);
    this.listeners.clear();
    await reading;
  }
}

/** Starts the backup monitor for `cluster` (reading begins at once when it has a backup plan). */
export function createBackupMonitor(options: BackupMonitorOptions): BackupDesk {
  const monitor = new ConsoleBackups(options);
  monitor.start();
  return monitor;
}
