/**
 * Readable causes for the SQLSTATE codes a monitoring tool meets. The raw server message is kept
 * alongside; this adds what it means and what to do.
 */
export interface SqlStateCause {
  readonly cause: string;
  readonly fix: string;
}

const causes: Readonly<Record<string, SqlStateCause>> = {
  '28P01': { cause: 'password authentication failed', fix: 'check the password in ~/.pgpass, PGPASSWORD or the DSN' },
  '28000': { cause: 'no pg_hba.conf entry or authentication refused', fix: 'add a pg_hba.conf line for this host and user, then reload' },
  '3D000': { cause: 'the database does not exist', fix: 'name an existing database in the DSN (dbname=...)' },
  '42501': { cause: 'permission denied', fix: 'GRANT pg_monitor TO <user>; (pgwarden needs only pg_monitor to watch)' },
  '42P01': { cause: 'a relation does not exist', fix: 'the view or extension it belongs to is not installed in this database' },
  '42883': { cause: 'a function does not exist', fix: 'the extension that provides it is not installed in this database' },
  '55000': { cause: 'object not in prerequisite state', fix: 'see the server message; often an extension is installed but not preloaded' },
  '57014': { cause: 'the query was cancelled (statement_timeout)', fix: 'the server is slow or the probe too heavy; raise probes.<id>.timeout_ms' },
  '55P03': { cause: 'a lock could not be obtained in time (lock_timeout)', fix: 'another session holds a conflicting lock; retry later' },
  '53300': { cause: 'too many connections', fix: 'the server is out of connection slots; free some or raise max_connections' },
  '57P01': { cause: 'the server is shutting down (admin shutdown)', fix: 'wait for the server to come back; pgwarden reconnects on its own' },
  '57P02': { cause: 'crash shutdown', fix: 'the server crashed; check its log' },
  '57P03': { cause: 'the server is starting up or in recovery and not yet accepting connections', fix: 'wait; pgwarden reconnects on its own' },
  '08006': { cause: 'the connection failed', fix: 'check that the server is running and reachable' },
  '08001': { cause: 'could not establish a connection', fix: 'check host, port and that the server is running' },
  '0A000': { cause: 'feature not supported', fix: 'this server version or pooler does not support the operation' },
};

/** The readable cause for an SQLSTATE, or undefined when it is not one we explain. */
export function causeOf(sqlstate: string | undefined): SqlStateCause | undefined {
  if (sqlstate === undefined) return undefined;
  return causes[sqlstate];
}
