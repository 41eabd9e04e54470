import { execFileSync } from 'node:child_process';
import { readFileSync, statSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { expect, it, afterAll } from 'vitest';
import { createPrimary, createStandby, destroyAll, waitFor } from '../support/cluster.js';

afterAll(destroyAll);

it('edge cases', { timeout: 120_000 }, async () => {
  const p = await createPrimary({ name: 'edge/x y', maxConnections: 50, archiveCommand: 'true', settings: { work_mem: '8MB', log_connections: true, 'pgwarden.x': "it's" } });
  const st = statSync(p.dataDir);
  console.log('data mode', (st.mode & 0o777).toString(8), st.uid, statSync(dirname(p.dataDir)).uid, dirname(p.dataDir));
  console.log(await p.psql("select name||'='||setting from pg_settings where name in ('max_connections','archive_mode','archive_command','work_mem','log_connections','fsync','shared_buffers','wal_level','unix_socket_directories','listen_addresses','port')"));
  console.log(await p.psql("show pgwarden.x"));
  console.log(await p.sql('select 1 as a; select 2 as b'));
  // standby inherits max_connections 50 and gets delay
  const s = await createStandby(p, { applyDelayMs: 500, settings: { work_mem: '16MB' } });
  const t0 = Date.now(); const lap = (l: string) => console.log("LAP", l, Date.now() - t0);
  console.log(await s.psql("select name||'='||setting from pg_settings where name in ('max_connections','work_mem','recovery_min_apply_delay','port','primary_slot_name','unix_socket_directories')"));
  // crash: kill postmaster -9, then destroy
  const pid = Number.parseInt(readFileSync(`${s.dataDir}/postmaster.pid`, 'utf8'), 10);
  process.kill(pid, 'SIGKILL');
  lap("before-destroy"); await s.destroy(); lap("crash-destroy");
  expect(existsSync(s.dataDir)).toBe(false);
  // restart, stop, start
  await p.restart(); lap("restart");
  await p.stop('immediate');
  await p.start(); lap("start");
  expect(await p.psql('select 1')).toBe('1');
  // bind race: occupy the port while stopped, start must move to a new port
  await p.stop();
  const old = p.port;
  const srv = createServer(); await new Promise<void>((r) => srv.listen(old, '127.0.0.1', () => r()));
  await p.start(); lap("start");
  console.log('moved', old, '->', p.port, p.dsn());
  srv.close(); lap("moved");
  expect(p.port).not.toBe(old);
  // startup failure shows log tail
  const bad = await createPrimary({ name: 'bad' });
  await bad.stop();
  execFileSync('sh', ['-c', `echo "shared_buffers = 'nonsense'" >> ${bad.dataDir}/postgresql.auto.conf`]);
  await expect(bad.start()).rejects.toThrow(/log tail/);
  lap("bad1"); await bad.start().catch((e: Error) => console.log(e.message));
  await expect(waitFor('nothing', async () => { throw new Error('boom'); }, { timeoutMs: 300 })).rejects.toThrow(/timed out after 300ms waiting for nothing \(last error: boom\)/);
  lap("bad2"); await createPrimary({ name: 'bad2', settings: { nonsense_setting: 1 } }).catch((e: Error) => console.log('create failure:', e.message.slice(0, 300)));
});
