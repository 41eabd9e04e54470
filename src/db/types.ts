/** What the db layer hands upward: plain rows, never driver objects. */
export type Row = Readonly<Record<string, unknown>>;

export interface Query {
  readonly text: string;
  readonly values?: readonly unknown[];
}

/** The facts about a server that select SQL and decide what is supported. */
export interface ServerInfo {
  /** server_version_num, e.g. 150004. */
  readonly versionNum: number;
  readonly version: string;
  readonly inRecovery: boolean;
  readonly currentUser: string;
  readonly database: string;
  readonly superuser: boolean;
  /** Member of pg_monitor (or superuser). */
  readonly monitor: boolean;
  /** Extensions installed in the connected database, name → version. */
  readonly extensions: Readonly<Record<string, string>>;
  /** shared_preload_libraries, or null when this role may not read it. */
  readonly preloadLibraries: readonly string[] | null;
}

/** Something probes can run queries against. */
export interface Queryable {
  readonly label: string;
  query(query: Query, timeoutMs?: number): Promise<readonly Row[]>;
}
