/**
 * `pgwarden show <probe> [--json]`: one snapshot, printed as text or as the stable JSON form
 * (docs/json.md). Exit codes: 0 ok, 1 the probe failed (cannot connect…), 3 unsupported here.
 */
import type { Config } from '../config/types.js';
import { openTargets } from '../db/targets.js';
import { UserError } from '../errors.js';
import { renderReport } from '../format/report.js';
import { toJsonValue } from '../format/json.js';
import { probeById, probeIds, probes } from '../probes/index.js';
import { runProbe } from '../probes/run-probe.js';
import type { AnyProbe } from '../probes/runner.js';
import type { ProbeId, ProbeResult } from '../probes/types.js';

export interface CommandOutput {
  readonly stdout: string;
  readonly stderr: string;
  readonly exitCode: number;
}

export interface ShowOptions {
  readonly json: boolean;
  readonly cluster: string | undefined;
  readonly node: string | undefined;
  readonly width: number;
}

/** Probes whose figures are rates or deltas need two snapshots; `show` waits this long between them. */
const deltaIntervalMs = 1000;
const deltaProbes = new Set(['databases', 'statements', 'pgbouncer']);

function envelope(probe: AnyProbe, target: string, result: ProbeResult<unknown>): Record<string, unknown> {
  const base = { probe: probe.id, target, status: result.status };
  switch (result.status) {
    case 'ok':
      return { ...base, at: result.at, duration_ms: Math.round(result.durationMs * 10) / 10, snapshot: result.snapshot };
    case 'unsupported':
      return { ...base, unsupported: result.unsupported };
    case 'error':
      return { ...base, error: result.error };
    case 'pending':
      return base;
  }
}

/** Runs the named probes ("all" for every one) once and renders the results. */
export async function show(config: Config, names: readonly string[], options: ShowOptions): Promise<CommandOutput> {
  const selected = names.length === 0 || names.includes('all') ? probes : names.map((name) => {
    const probe = probeById(name);
    if (probe === undefined) throw new UserError(`unknown probe "${name}"`, `choose one of: ${probeIds.join(', ')}, all`);
    return probe;
  });
  const targets = openTargets(config, { cluster: options.cluster, node: options.node });
  const label = targets.server.label;
  try {
    const results: [AnyProbe, ProbeResult<unknown>][] = [];
    const taken: Partial<Record<ProbeId, unknown>> = {};
    const timeoutOf = (probe: AnyProbe): number => config.probes[probe.id]?.timeoutMs ?? config.statementTimeoutMs;
    for (const probe of selected) {
      // Probes that derive from others (connections and locks read activity) get them fresh.
      for (const id of probe.inputs ?? []) {
        const input = probeById(id);
        if (taken[id] !== undefined || input === undefined) continue;
        const inputResult = await runProbe(input, targets, { timeoutMs: timeoutOf(input), previous: undefined });
        if (inputResult.status === 'ok') taken[id] = inputResult.snapshot;
      }
      const timeoutMs = timeoutOf(probe);
      let result = await runProbe(probe, targets, { timeoutMs, previous: undefined, inputs: taken });
      if (result.status === 'ok' && deltaProbes.has(probe.id)) {
        await new Promise((resolve) => setTimeout(resolve, deltaIntervalMs));
        result = await runProbe(probe, targets, { timeoutMs, previous: { snapshot: result.snapshot, at: result.at } });
      }
      if (result.status === 'ok') taken[probe.id] = result.snapshot;
      results.push([probe, result]);
      // A server that cannot be reached fails every probe the same way: stop at the first.
      if (result.status === 'error' && targets.server.state === 'down') break;
    }
    const failed = results.filter(([, result]) => result.status === 'error');
    const info = targets.server.state === 'up' ? await targets.server.serverInfo() : undefined;
    const limited = info !== undefined && !info.monitor
      ? [`pgwarden: warning: role ${info.currentUser} is not a member of pg_monitor: other users' queries and some statistics are hidden\n  fix: GRANT pg_monitor TO ${info.currentUser};`]
      : [];
    const unsupported = results.filter(([, result]) => result.status === 'unsupported');
    const exitCode = failed.length > 0 ? 1 : unsupported.length === results.length ? 3 : 0;
    const stderr = [
      ...limited,
      ...failed.map(([probe, result]) => result.status === 'error'
        ? `pgwarden: ${probe.id}: ${result.error.message}${result.error.hint === undefined ? '' : `\n  hint: ${result.error.hint}`}`
        : ''),
      ...unsupported.map(([probe, result]) => result.status === 'unsupported'
        ? `pgwarden: ${probe.id}: not available here: ${result.unsupported.reason}\n  fix: ${result.unsupported.fix}`
        : ''),
    ].join('\n');
    if (options.json) {
      const documents = results.map(([probe, result]) => toJsonValue(envelope(probe, label, result)));
      const body = names.length === 1 && names[0] !== 'all' ? documents[0] : documents;
      return { stdout: `${JSON.stringify(body, null, 2)}\n`, stderr: stderr === '' ? '' : `${stderr}\n`, exitCode };
    }
    const text = results
      .filter(([, result]) => result.status === 'ok')
      .map(([probe, result]) => `== ${probe.title} (${label}) ==\n${result.status === 'ok' ? renderReport(result.snapshot, options.width) : ''}`)
      .join('\n\n');
    return { stdout: text === '' ? '' : `${text}\n`, stderr: stderr === '' ? '' : `${stderr}\n`, exitCode };
  } finally {
    await targets.close();
  }
}
