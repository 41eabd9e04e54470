/**
 * Evaluates checks against a real server the way the watcher does: one ProbeRunner with the
 * probes the checks read (probesForChecks), thresholds resolved with per-test overrides, and each
 * check's state (nextState) carried from one evaluation to the next.
 */
import { resolveThresholds } from '../../src/checks/catalogue.js';
import type { Check, Finding, Thresholds } from '../../src/checks/types.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import { PgNode } from '../../src/db/node.js';
import { PgBouncerAdmin } from '../../src/db/pgbouncer.js';
import { resultOf, type SnapshotMap } from '../../src/probes/index.js';
import { ProbeRunner, type Results } from '../../src/probes/runner.js';
import type { ProbeId } from '../../src/probes/types.js';
import { probesForChecks } from '../../src/watch/watcher.js';
import { waitFor } from './cluster.js';

export type Overrides<T extends Thresholds> = Partial<Record<keyof T, number>>;

export interface CheckWatchOptions {
  /** The node's connection pool size: 1 makes pgwarden's own slots a known figure. */
  readonly poolSize?: number;
  /** The PgBouncer admin console, for the pooler check. */
  readonly pgbouncerDsn?: string;
}

/** A watcher of one node reduced to what a test needs: evaluate a check now, or until a condition holds. */
export class CheckWatch {
  private readonly node: PgNode;
  private readonly bouncer: PgBouncerAdmin | undefined;
  private readonly runner: ProbeRunner;
  private readonly states = new Map<string, unknown>();
  private last: Results = new Map();

  constructor(dsn: string, private readonly checks: readonly Check[], options: CheckWatchOptions = {}) {
    this.node = new PgNode(resolveConnection(dsn, 'test'), { statementTimeoutMs: 10_000, lockTimeoutMs: 1000, poolSize: options.poolSize ?? 3 });
    this.bouncer = options.pgbouncerDsn === undefined ? undefined : new PgBouncerAdmin(resolveConnection(options.pgbouncerDsn, 'test'));
    this.runner = new ProbeRunner(probesForChecks(checks), { server: this.node, pgbouncer: this.bouncer }, { refreshMs: 1000, timeoutMs: 10_000 });
  }

  /** Runs the check's probes now and evaluates it; its state carries over to the next evaluation. */
  async evaluate<T extends Thresholds>(check: Check<T>, overrides: Overrides<T> = {}): Promise<Finding[]> {
    // The runner runs only the probes of the checks it was made for.
    if (!this.checks.some((known) => known.id === check.id)) throw new Error(`check ${check.id} is not among this watch's checks: add it to the list`);
    const ids = probesForChecks([check as unknown as Check]).map((probe) => probe.id);
    this.last = await this.runner.refresh(ids);
    const input = { results: this.last, thresholds: resolveThresholds(check, overrides), now: new Date(), previous: this.states.get(check.id) };
    const findings = check.evaluate(input);
    if (check.nextState !== undefined) this.states.set(check.id, check.nextState(input));
    return findings;
  }

  /** Evaluates the check until `condition` holds for its findings, and returns them. */
  async until<T extends Thresholds>(check: Check<T>, overrides: Overrides<T>, what: string, condition: (findings: Finding[]) => boolean, timeoutMs = 20_000): Promise<Finding[]> {
    let seen: Finding[] = [];
    try {
      return await waitFor(what, async () => {
        seen = await this.evaluate(check, overrides);
        return condition(seen) ? seen : undefined;
      }, { timeoutMs });
    } catch (error) {
      throw new Error(`${error instanceof Error ? error.message : String(error)}; the last findings: ${JSON.stringify(seen.map((f) => [f.severity, f.subject, f.message]))}`, { cause: error });
    }
  }

  /** The snapshot of a probe from the last evaluation (it must be ok). */
  snapshot<K extends ProbeId>(id: K): SnapshotMap[K] {
    const result = resultOf(this.last, id);
    if (result.status !== 'ok') throw new Error(`probe ${id} is ${result.status}: ${JSON.stringify(result)}`);
    return result.snapshot;
  }

  async close(): Promise<void> {
    await this.runner.stop();
    await Promise.all([this.node.close(), this.bouncer?.close()]);
  }
}

/** The one finding with this subject, failing with the findings there are otherwise. */
export function findingFor(findings: readonly Finding[], subject: string): Finding {
  const found = findings.filter((f) => f.subject === subject);
  if (found.length !== 1) throw new Error(`expected one finding about ${subject}, got ${JSON.stringify(findings.map((f) => [f.severity, f.subject, f.message]))}`);
  return found[0]!;
}

/** The finding with this subject and severity, or undefined. */
export function has(findings: readonly Finding[], subject: string, severity: Finding['severity']): Finding | undefined {
  return findings.find((f) => f.subject === subject && f.severity === severity);
}

/** [severity, subject] of every finding, for "nothing else fired" assertions. */
export function severities(findings: readonly Finding[]): [string, string][] {
  return findings.map((f) => [f.severity, f.subject]);
}
