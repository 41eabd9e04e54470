// The measured process of bench/watch-scale: ONE Watcher over the given config, in a process of its
// own so that process.cpuUsage() and memoryUsage() are the watcher's alone. Plain JS over the built
// dist/ (like refresher.mjs): no TypeScript loader in the measured process.
//
//   node bench/watch-scale-child.mjs CONFIG_FILE '{"cadenceMs":{…},"tickMs":5000}'   (with an IPC channel)
//
// Reports over IPC: "started" (RSS before the watcher opened anything), "round" (CPU and memory at
// the first evaluation of each tick that starts evaluations, and how many evaluations began before), "eval" (one per node evaluation: start,
// end, cadences, whether it saw the server), "log" (the watcher's log lines) and "stopped". The NDJSON
// events go to stdout. The parent sends "stop".
//
// Timing evaluations needs a hook the Watcher does not expose: its (TypeScript-private) evaluateNode
// is wrapped here, the real method still doing the work. If it is renamed, this fails loudly.
import { readFileSync } from 'node:fs';
import { parseConfig } from '../dist/config/load.js';
import { probeIds } from '../dist/probes/index.js';
import { Watcher } from '../dist/watch/watcher.js';

const [configFile, optionsText] = process.argv.slice(2);
if (configFile === undefined || optionsText === undefined || process.send === undefined) {
  throw new Error('usage: node bench/watch-scale-child.mjs CONFIG_FILE OPTIONS_JSON, spawned with an IPC channel (bench/watch-scale.ts does this)');
}
const options = JSON.parse(optionsText);
const send = (message) => process.send?.(message);

function usage() {
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  return { cpuMs: (cpu.user + cpu.system) / 1000, rss: memory.rss, heapUsed: memory.heapUsed };
}

const prototype = Watcher.prototype;
if (typeof prototype.evaluateNode !== 'function') {
  throw new Error('Watcher.prototype.evaluateNode no longer exists: update bench/watch-scale-child.mjs to time evaluations through the new hook');
}
const evaluateNode = prototype.evaluateNode;
// All evaluations of one tick start in the same synchronous loop: the first one opens a round.
const roundGapMs = (options.tickMs ?? 5000) / 2;
let roundAt = -Infinity;
let started = 0;
prototype.evaluateNode = async function timedEvaluateNode(node, due) {
  const start = Date.now();
  if (start - roundAt > roundGapMs) {
    roundAt = start;
    send({ type: 'round', at: start, startedBefore: started, ...usage() });
  }
  started += 1;
  let evaluation;
  try {
    evaluation = await evaluateNode.call(this, node, due);
    return evaluation;
  } finally {
    const findings = evaluation?.findings ?? [];
    send({
      type: 'eval',
      cluster: node.cluster,
      due,
      start,
      end: Date.now(),
      failed: evaluation === undefined,
      // The server probe failed: only connectivity was evaluated.
      down: evaluation !== undefined && evaluation.checks.length === 1 && evaluation.checks[0] === 'connectivity' && due.length > 0 && node.runner !== undefined,
      unknown: findings.filter((finding) => finding.severity === 'unknown').map((finding) => ({ check: finding.checkId, message: finding.message })),
    });
  }
};

const config = parseConfig(JSON.parse(readFileSync(configFile, 'utf8')), configFile, probeIds);
const before = usage();
const watcher = new Watcher(config, {
  events: process.stdout,
  log: (line) => send({ type: 'log', line }),
  cadenceMs: options.cadenceMs,
  ...(options.tickMs === undefined ? {} : { tickMs: options.tickMs }),
});

let stopping;
function stop() {
  stopping ??= watcher.stop().then(() => {
    send({ type: 'stopped', ...usage(), maxRss: process.resourceUsage().maxRSS * 1024 });
    process.disconnect?.();
  });
  return stopping;
}
process.on('message', (message) => {
  if (message?.type === 'stop') void stop();
});
// The parent went away (Ctrl-C, crash): stop rather than watch forever.
process.on('disconnect', () => void stop().finally(() => process.exit(0)));
process.on('SIGINT', () => void stop().finally(() => process.exit(130)));
process.on('SIGTERM', () => void stop().finally(() => process.exit(143)));

await watcher.start();
send({ type: 'started', before, after: usage() });
