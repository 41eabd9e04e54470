/**
 * bench/render: what drawing costs the console. Prints figures against the goals of the console
 * issue; asserts nothing.
 *
 *   1. frame time: the Activity screen with 5,000 sessions through Ink at 200×50 and 80×24, a new
 *      snapshot every frame (and the whole App per refresh, counting its commits);
 *   2. keypress-to-frame latency of the built console (dist/) in tmux, against the local server and
 *      against a throwaway cluster with many idle connections;
 *   3. RSS of the App fed a 5,000-session snapshot every 100 ms (20× the real rate) for ~6,000
 *      refreshes, sampled every 500.
 *
 *   npm run build && npx tsx bench/render.ts
 *   BENCH_PARTS=frames,keys,rss  BENCH_CONNECTIONS=2000  BENCH_RSS_REFRESHES=6000  BENCH_RSS_INTERVAL_MS=100
 *   BENCH_DSN=postgresql://postgres@127.0.0.1:5432/test
 */
import { cpus } from 'node:os';

// React's development build is slower and leaks timing entries: production, as the launcher
// sets it, before anything loads React (hence the dynamic imports below).
process.env['NODE_ENV'] ??= 'production';

const parts = new Set((process.env['BENCH_PARTS'] ?? 'frames,keys,rss').split(','));
const dsn = process.env['BENCH_DSN'] ?? 'postgresql://postgres@127.0.0.1:5432/test';
const idleConnections = Number(process.env['BENCH_CONNECTIONS'] ?? 2000);
const rssRefreshes = Number(process.env['BENCH_RSS_REFRESHES'] ?? 6000);
const rssIntervalMs = Number(process.env['BENCH_RSS_INTERVAL_MS'] ?? 100);
const presses = 30;

const ms = (value: number): string => `${value.toFixed(1)} ms`;
const goal = (ok: boolean): string => (ok ? 'meets the goal' : 'MISSES the goal');

if (process.env['BENCH_RSS_CHILD'] !== '1') console.log(`bench/render on ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown cpu'}), Node ${process.version}, NODE_ENV=${process.env['NODE_ENV'] ?? ''}`);

if (parts.has('frames')) {
  const { activityFrames, appRefreshes, keypressInProcess } = await import('./render-frames.js');
  console.log('\n1. frame time: Activity screen, 5,000 sessions, a new snapshot every frame, 200 frames after 20 to warm up');
  for (const [columns, rows] of [[200, 50], [80, 24]] as const) {
    const frame = activityFrames(columns, rows, 200);
    console.log(
      `   ${columns}×${rows}: mean ${ms(frame.wall.mean)}  p95 ${ms(frame.wall.p95)}  max ${ms(frame.wall.max)}  ` +
        `cpu/frame ${ms(frame.cpu.mean)}  ${(frame.bytesPerFrame / 1024).toFixed(1)} KiB written/frame  (goal ≤ 30 ms: ${goal(frame.wall.p95 <= 30)})`,
    );
  }
  const small = activityFrames(200, 50, 200, 50);
  console.log(`   200×50 with 50 sessions (for comparison): mean ${ms(small.wall.mean)}  p95 ${ms(small.wall.p95)}`);
  const app = await appRefreshes(200, 50, 100);
  console.log(
    `   whole App per refresh at 200×50 (header, tabs, footer, history): mean ${ms(app.wall.mean)}  p95 ${ms(app.wall.p95)}  max ${ms(app.wall.max)}  ` +
      `cpu ${ms(app.cpu.mean)}  commits per refresh ${app.commitsPerRefresh.toFixed(2)}`,
  );
  for (const [columns, rows] of [[80, 24], [200, 50]] as const) {
    const keys = await keypressInProcess(columns, rows, presses);
    console.log(
      `   keypress (j/k) to frame written, in-process, Ink throttled as in the console, ${columns}×${rows}: median ${ms(keys.latency.p50)}  ` +
        `p95 ${ms(keys.latency.p95)}  renders per key ${keys.rendersPerKey.toFixed(2)}`,
    );
  }
}

if (parts.has('keys')) {
  const { start, killAll } = await import('../test/support/terminal.js');
  const { consoleRss, keypressLatency } = await import('./render-terminal.js');
  const { stats } = await import('./render-frames.js');
  const { createPrimary, destroyAll } = await import('../test/support/cluster.js');
  const pg = (await import('pg')).default;

  const report = async (label: string, terminal: Awaited<ReturnType<typeof start>>, judged = true): Promise<void> => {
    const latency = await keypressLatency(terminal, presses);
    const figures = stats(latency.samples);
    const rss = await consoleRss(terminal);
    console.log(
      `   ${label}: median ${ms(figures.p50)}  p95 ${ms(figures.p95)}  max ${ms(figures.max)}  ` +
        `(${latency.pollsPerPress.toFixed(1)} polls/press; RSS ${rss === null ? '?' : `${rss.toFixed(0)} MB`}${judged ? `; goal ≤ 50 ms: ${goal(figures.p50 <= 50)}` : ''})`,
    );
  };
  const measure = async (label: string, target: string, sessions: () => Promise<string>, columns = 200, rows = 50): Promise<void> => {
    const terminal = await start(`node bin/pgwarden.js --audit-log /dev/null --dsn ${target}`, { columns, rows });
    try {
      await terminal.waitForText(/^pgwarden/m, 20_000);
      await terminal.press('2');
      await terminal.waitForScreen('the activity list', (screen) => /^>/m.test(screen), 20_000);
      await report(`${columns}×${rows}, ${label} (${await sessions()})`, terminal);
    } finally {
      await terminal.kill();
    }
  };

  console.log(`\n2. keypress-to-frame in tmux, Activity view, refreshing live: ${presses} presses of j/k, capture-pane polled every 2 ms`);
  console.log('   (includes tmux: reading the pty, updating its grid, answering capture-pane over a control-mode client)');
  const echo = await start('node --import tsx bench/render-echo.ts', { columns: 80, rows: 24 });
  try {
    await echo.waitForText(/^>/m, 20_000);
    await report('floor: a raw-mode program that redraws at once (tmux + polling only)', echo, false);
  } finally {
    await echo.kill();
  }
  const countOn = async (uri: string): Promise<string> => {
    const client = new pg.Client({ connectionString: uri });
    await client.connect();
    const rows = await client.query<{ n: number }>('select count(*)::int as n from pg_stat_activity');
    await client.end();
    return `${rows.rows[0]?.n ?? '?'} sessions`;
  };
  const local = `local server ${dsn.replace(/^postgresql:\/\//, '')}`;
  await measure(local, dsn, () => countOn(dsn));
  await measure(local, dsn, () => countOn(dsn), 80, 24);

  const clients: InstanceType<typeof pg.Client>[] = [];
  try {
    const cluster = await createPrimary({ name: 'bench-render', maxConnections: idleConnections + 50, settings: { shared_buffers: '128MB' } });
    const opened = Date.now();
    for (let i = 0; i < idleConnections; i += 100) {
      const batch = Array.from({ length: Math.min(100, idleConnections - i) }, () => new pg.Client({ connectionString: cluster.dsn(), application_name: 'bench-idle' }));
      for (const client of batch) client.on('error', () => undefined);
      await Promise.all(batch.map((client) => client.connect()));
      clients.push(...batch);
    }
    console.log(`   (opened ${clients.length} idle connections in ${((Date.now() - opened) / 1000).toFixed(1)} s)`);
    await measure('throwaway cluster', cluster.dsn(), () => countOn(cluster.dsn()));
    await measure('throwaway cluster', cluster.dsn(), () => countOn(cluster.dsn()), 80, 24);
  } finally {
    await Promise.allSettled(clients.map((client) => client.end()));
    await killAll();
    await destroyAll();
  }
}

if (parts.has('rss') && process.env['BENCH_RSS_CHILD'] !== '1') {
  // A process of its own (what the other parts allocated must not count), able to force a GC.
  const { spawnSync } = await import('node:child_process');
  spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], {
    env: { ...process.env, BENCH_PARTS: 'rss', BENCH_RSS_CHILD: '1' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
} else if (parts.has('rss')) {
  const { rssOverRefreshes, slopePerThousand } = await import('./render-frames.js');
  console.log(`\n3. RSS: the App on Activity at 200×50 (Ink's normal throttled output), a new 5,000-session snapshot every ${rssIntervalMs} ms, ${rssRefreshes} refreshes`);
  console.log('   refreshes   rss MB   heap used MB   heap total MB   external MB   live after GC MB');
  const samples = await rssOverRefreshes(rssRefreshes, rssIntervalMs, 500, (sample) => {
    const column = (value: number, width: number): string => value.toFixed(1).padStart(width);
    console.log(`   ${String(sample.refreshes).padStart(9)}   ${column(sample.rssMb, 6)}   ${column(sample.heapMb, 12)}   ${column(sample.heapTotalMb, 13)}   ${column(sample.externalMb, 11)}   ${sample.liveMb === null ? '(no --expose-gc)'.padStart(16) : column(sample.liveMb, 16)}`);
  });
  const settled = samples.filter((sample) => sample.refreshes >= 1000);
  const peak = Math.max(...samples.map((sample) => sample.rssMb));
  console.log(
    `   slope: ${slopePerThousand(samples).toFixed(2)} MB per 1,000 refreshes overall, ${slopePerThousand(settled).toFixed(2)} after the first 1,000; ` +
      `peak ${peak.toFixed(0)} MB (goal ≤ 150 MB and flat: ${goal(peak <= 150 && Math.abs(slopePerThousand(settled)) < 1)})`,
  );
  const live = settled.flatMap((sample) => (sample.liveMb === null ? [] : [sample.liveMb]));
  if (live.length > 1) console.log(`   live heap after a full GC: ${live[0]?.toFixed(1) ?? ''} → ${live[live.length - 1]?.toFixed(1) ?? ''} MB from 1,000 refreshes on (a leak would grow it)`);
}
