// Long-lived sessions that tests hold open to create activity, locks or idle transactions.
import pg from 'pg';

const sessions = new Set<pg.Client>();

export async function openSession(dsn: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: dsn, application_name: applicationName });
  // Tests terminate backends on purpose; an idle client would otherwise crash the run with an unhandled 'error'.
  client.on('error', () => undefined);
  await client.connect();
  sessions.add(client);
  return client;
}

export async function closeAll(): Promise<void> {
  const open = [...sessions];
  sessions.clear();
  await Promise.allSettled(open.map((client) => client.end()));
}

export async function backendPid(client: pg.Client): Promise<number> {
  const result = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  const row = result.rows[0];
  if (row === undefined) throw new Error('pg_backend_pid() returned no row');
  return row.pid;
}
