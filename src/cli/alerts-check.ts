/**
 * `pgwarden alerts check [--json] [--checks a,b]`: runs every check once against one node and
 * reports like a Nagios plugin (docs/alerts-check.md): a status line with performance data, one
 * line per finding that is not OK, and the exit code 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
 */
import { applicationCheckIds } from '../checks/application.js';
import { checkById, checks as catalogue } from '../checks/catalogue.js';
import type { Check, Finding, Severity } from '../checks/types.js';
import type { Config } from '../config/types.js';
import { openTargets, type OpenTargets } from '../db/targets.js';
import { isUserError, messageOf } from '../errors.js';
import { toJsonValue } from '../format/json.js';
import { evaluateApplication, healthChecksOf } from '../health/application.js';
import { probeById, probes as allProbes } from '../probes/index.js';
import { runProbe } from '../probes/run-probe.js';
import type { AnyProbe, Results } from '../probes/runner.js';
import type { ProbeId, ProbeResult } from '../probes/types.js';
import type { CommandOutput } from './show.js';

export interface AlertsCheckOptions {
  readonly cluster?: string | undefined;
  readonly node?: string | undefined;
  readonly json: boolean;
  /** Check ids to run (default: the whole catalogue). */
  readonly checks?: readonly string[] | undefined;
}

export type NagiosState = 'OK' | 'WARNING' | 'CRITICAL' | 'UNKNOWN';

/** The Nagios exit code of each state. */
export const nagiosExitCode: Readonly<Record<NagiosState, number>> = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 };

/** Rate and delta probes need two snapshots; the second is taken this long after the first (as `show` does). */
const deltaIntervalMs = 1000;
const deltaProbes: ReadonlySet<ProbeId> = new Set<ProbeId>(['databases', 'statements', 'pgbouncer']);

/** Order of the finding lines, worst first. */
const severityRank: Readonly<Record<Severity, number>> = { critical: 0, warning: 1, unknown: 2, info: 3, ok: 4 };

/**
 * The overall state, as the monitoring-plugins' max_state_alt: CRITICAL > WARNING > UNKNOWN > OK.
 * A check that cannot be evaluated must not hide a real problem found by another, and info is OK.
 */
export function overallState(findings: readonly Finding[]): NagiosState {
  const has = (severity: Severity): boolean => findings.some((finding) => finding.severity === severity);
  if (has('critical')) return 'CRITICAL';
  if (has('warning')) return 'WARNING';
  if (has('unknown')) return 'UNKNOWN';
  return 'OK';
}

/** Every probe the checks read, with the probes those derive from, in the catalogue's (dependency) order. */
function probesFor(selected: readonly Check[]): AnyProbe[] {
  // The server probe always runs: it is what tells a down server from a failing check.
  const needed = new Set<ProbeId>(['server', ...selected.flatMap((check) => check.probes)]);
  for (const id of [...needed]) for (const input of probeById(id)?.inputs ?? []) needed.add(input);
  return allProbes.filter((probe) => needed.has(probe.id));
}

/** One pass over the probes; inputs (activity for connections and locks) come from this pass. */
async function runPass(
  config: Config,
  targets: OpenTargets,
  selected: readonly AnyProbe[],
  previous: Results | undefined,
): Promise<Map<ProbeId, ProbeResult<unknown>>> {
  const results = new Map<ProbeId, ProbeResult<unknown>>(previous ?? []);
  const taken: Partial<Record<ProbeId, unknown>> = {};
  for (const probe of selected) {
    const before = previous?.get(probe.id);
    const result = await runProbe(probe, targets, {
      timeoutMs: config.probes[probe.id]?.timeoutMs ?? config.statementTimeoutMs,
      previous: before?.status === 'ok' ? { snapshot: before.snapshot, at: before.at } : undefined,
      inputs: taken,
    });
    if (result.status === 'ok') taken[probe.id] = result.snapshot;
    results.set(probe.id, result);
    // A server that cannot be reached fails every probe the same way: stop at the first.
    if (result.status === 'error' && targets.server.state === 'down') break;
  }
  return results;
}

/** Evaluates the checks on the second pass, each with the state its nextState() took from the first (so deltas compare the two). */
function evaluateAll(selected: readonly Check[], first: Results, second: Results, now: Date): Finding[] {
  const findings: Finding[] = [];
  for (const check of selected) {
    const thresholds = check.defaults;
    try {
      const previous = check.nextState?.({ results: first, thresholds, now });
      findings.push(...check.evaluate({ results: second, thresholds, now, previous }));
    } catch (error) {
      // A check that throws is a bug, but the plugin must still answer: UNKNOWN with the reason.
      findings.push({
        checkId: check.id, severity: 'unknown', subject: 'cluster', value: null, threshold: null, warningThreshold: null, unit: '',
        message: `cannot evaluate: ${messageOf(error)}`, context: {}, runbook: `docs/alerts.md#${check.id}`,
      });
    }
  }
  return findings;
}

/** Nagios units: s, ms, B and % are understood by graphers; other units are plain counts. */
function perfValue(finding: Finding, value: number): { readonly text: string; readonly scale: number } {
  switch (finding.unit) {
    case 'seconds':
      return { text: `${round(value)}s`, scale: 1 };
    case 'ms':
      return { text: `${round(value)}ms`, scale: 1 };
    case 'bytes':
      return { text: `${Math.round(value)}B`, scale: 1 };
    case 'fraction':
      return { text: `${round(value * 100)}%`, scale: 100 };
    default:
      return { text: String(round(value)), scale: 1 };
  }
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

/** 'label'=value[UOM];warn for every finding with a measured value. */
function perfdata(findings: readonly Finding[]): string {
  const seen = new Set<string>();
  const items: string[] = [];
  for (const finding of findings) {
    if (finding.value === null || !Number.isFinite(finding.value)) continue;
    const label = finding.subject === 'cluster' ? finding.checkId : `${finding.checkId} ${finding.subject}`;
    if (seen.has(label)) continue;
    seen.add(label);
    const { text, scale } = perfValue(finding, finding.value);
    const warn = finding.warningThreshold === null ? '' : String(round(finding.warningThreshold * scale));
    // Labels with spaces or '=' are quoted; a quote inside is doubled (the plugin guidelines).
    const quoted = /[\s'=]/.test(label) ? `'${label.replaceAll("'", "''")}'` : label;
    items.push(`${quoted}=${text};${warn}`);
  }
  return items.join(' ');
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

/** The Nagios text: status line with perfdata, then one line per finding that is not OK, worst first. */
export function renderNagios(findings: readonly Finding[], notes: readonly string[] = []): string {
  const state = overallState(findings);
  const count = (severity: Severity): number => findings.filter((finding) => finding.severity === severity).length;
  const data = perfdata(findings);
  const status = `PGWARDEN ${state} - ${count('critical')} critical, ${count('warning')} warning, ${count('unknown')} unknown${data === '' ? '' : ` | ${data}`}`;
  const lines = findings
    .filter((finding) => finding.severity !== 'ok')
    .sort((a, b) => severityRank[a.severity] - severityRank[b.severity])
    .map((finding) => `${finding.severity.toUpperCase()} ${finding.checkId} ${finding.subject}: ${oneLine(finding.message)}`);
  return [status, ...lines, ...notes].map((line) => `${line}\n`).join('');
}

function output(findings: readonly Finding[], json: boolean, notes: readonly string[] = []): CommandOutput {
  const exitCode = nagiosExitCode[overallState(findings)];
  if (json) return { stdout: `${JSON.stringify(toJsonValue(findings), null, 2)}\n`, stderr: notes.map((note) => `pgwarden: ${note}\n`).join(''), exitCode };
  return { stdout: renderNagios(findings, notes), stderr: '', exitCode };
}

/** A usage problem (unknown check, cluster or node) is UNKNOWN for a plugin, never a crash. */
function usageProblem(message: string, json: boolean): CommandOutput {
  const problem: Finding = {
    checkId: 'pgwarden', severity: 'unknown', subject: 'usage', value: null, threshold: null, warningThreshold: null, unit: '',
    message, context: {}, runbook: 'docs/alerts-check.md',
  };
  return output([problem], json);
}

/** Runs the selected checks (default: all) once against one node, with the default thresholds. */
export async function alertsCheck(config: Config, options: AlertsCheckOptions): Promise<CommandOutput> {
  const ids = options.checks ?? [];
  const unknownIds = ids.filter((id) => checkById(id) === undefined);
  if (unknownIds.length > 0) {
    return usageProblem(`unknown check ${unknownIds.map((id) => `"${id}"`).join(', ')}; known: ${catalogue.map((check) => check.id).join(', ')}`, options.json);
  }
  const chosen = ids.length === 0 ? catalogue : catalogue.filter((check) => ids.includes(check.id));
  // The application checks need no probe: src/health measures the cluster's endpoints and SQL checks.
  const selected = chosen.filter((check) => !applicationCheckIds.has(check.id));
  const appChecks = chosen.filter((check) => applicationCheckIds.has(check.id)).map((check) => check.id);
  let targets: OpenTargets;
  try {
    targets = openTargets(config, { cluster: options.cluster, node: options.node });
  } catch (error) {
    if (isUserError(error)) return usageProblem(`${error.message}${error.hint === undefined ? '' : ` (${error.hint})`}`, options.json);
    throw error;
  }
  // Measured while the probes run; a failure of the evaluation itself is UNKNOWN, never a crash.
  const application: Promise<readonly Finding[]> = appChecks.length === 0
    ? Promise.resolve([])
    : evaluateApplication(config, targets.clusterName, new Date(), { checks: appChecks }).then(
      (outcome) => outcome.findings,
      (error: unknown) => appChecks.map((id): Finding => ({
        checkId: id, severity: 'unknown', subject: 'cluster', value: null, threshold: null, warningThreshold: null, unit: '',
        message: `cannot evaluate: ${messageOf(error)}`, context: {}, runbook: `docs/alerts.md#${id}`,
      })),
    );
  try {
    if (selected.length === 0) {
      const findings = await application;
      const { http, sql } = healthChecksOf(config, targets.clusterName);
      const configured = (appChecks.includes('http-endpoint') ? http.length : 0) + (appChecks.includes('custom-sql') ? sql.length : 0);
      if (configured === 0) {
        return usageProblem(`nothing to check: no ${appChecks.map((id) => (id === 'http-endpoint' ? 'health.http endpoint' : 'health.sql check')).join(' or ')} for cluster "${targets.clusterName}" in ${config.source}`, options.json);
      }
      return output(findings, options.json);
    }
    const probes = probesFor(selected);
    const first = await runPass(config, targets, probes, undefined);
    let second: Results = first;
    const again = probes.filter((probe) => deltaProbes.has(probe.id) && first.get(probe.id)?.status === 'ok');
    if (again.length > 0 && targets.server.state !== 'down') {
      await new Promise((resolve) => setTimeout(resolve, deltaIntervalMs));
      second = await runPass(config, targets, again, first);
    }
    const findings = evaluateAll(selected, first, second, new Date());
    const server = second.get('server');
    if (server?.status === 'error') {
      // The server is unreachable: every other check would only say "cannot evaluate". Report the
      // connectivity failure alone (inhibition, as the alert engine does for an instance down).
      const connectivity: Finding[] = evaluateAll([checkById('connectivity') as Check], first, second, new Date());
      const muted = selected.filter((check) => check.id !== 'connectivity').length;
      // The application checks were measured on their own (an endpoint may well answer): they stay.
      return output([...connectivity, ...(await application)], options.json, muted > 0 ? [`${muted} other checks not evaluated: the server does not answer`] : []);
    }
    return output([...findings, ...(await application)], options.json);
  } finally {
    await targets.close();
  }
}
