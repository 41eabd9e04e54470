// Runs pgwarden's probe runner against one server, as the console would, for a number of seconds,
// and prints how many refreshes it made. Plain JS over the built dist/ so that the measured
// process carries no TypeScript loader. Usage: node bench/refresher.mjs DSN SECONDS REFRESH_MS
import { loadConfig } from '../dist/config/load.js';
import { openTargets } from '../dist/db/targets.js';
import { probes, probeIds } from '../dist/probes/index.js';
import { ProbeRunner } from '../dist/probes/runner.js';

const [dsn, seconds = '30', refreshMs = '2000'] = process.argv.slice(2);
const config = loadConfig({ configFile: undefined, dsn, knownProbes: probeIds, defaultPath: '/nonexistent' });
const targets = openTargets(config);
const runner = new ProbeRunner(probes, targets, { refreshMs: Number(refreshMs), timeoutMs: config.statementTimeoutMs });
let refreshes = 0;
const failures = new Set();
runner.on('refresh', (results) => {
  refreshes += 1;
  for (const [id, result] of results) if (result.status === 'error') failures.add(`${id}: ${result.error.message}`);
});
runner.start();
process.stdout.write('started\n');
await new Promise((resolve) => setTimeout(resolve, Number(seconds) * 1000));
await runner.stop();
await targets.close();
process.stdout.write(`${JSON.stringify({ refreshes, failures: [...failures] })}\n`);
