// Runs pgwarden's probe runner against one server, as the console would, until SIGTERM, printing
// one line per refresh. Plain JS over the built dist/ so that the measured process carries no
// TypeScript loader. Usage: node bench/refresher.mjs DSN REFRESH_MS
import { loadConfig } from '../dist/config/load.js';
import { openTargets } from '../dist/db/targets.js';
import { probes, probeIds } from '../dist/probes/index.js';
import { ProbeRunner } from '../dist/probes/runner.js';

const [dsn, refreshMs = '2000'] = process.argv.slice(2);
const config = loadConfig({ configFile: undefined, dsn, knownProbes: probeIds, defaultPath: '/nonexistent' });
const targets = openTargets(config);
const runner = new ProbeRunner(probes, targets, { refreshMs: Number(refreshMs), timeoutMs: config.statementTimeoutMs });
runner.on('refresh', (results) => {
  const failed = [...results].filter(([, result]) => result.status === 'error').map(([id, result]) => `${id}: ${result.error.message}`);
  process.stdout.write(failed.length === 0 ? 'refresh\n' : `refresh failed ${failed.join('; ')}\n`);
});
process.on('SIGTERM', () => {
  void runner.stop().then(() => targets.close()).then(() => process.exit(0));
});
runner.start();
