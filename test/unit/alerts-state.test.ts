import { describe, expect, it } from 'vitest';
import { acknowledgeAlert, alertKey, applyEvaluations, defaultStateOptions, settleAlerts } from '../../src/alerts/state.js';
import type { AlertRecord, Evaluation, FindingInput, FindingSeverity } from '../../src/alerts/types.js';

const t0 = Date.parse('2026-03-02T10:00:00Z');
const minute = 60_000;
const at = (minutes: number): Date => new Date(t0 + minutes * minute);

function finding(severity: FindingSeverity, subject = 'pid 42', checkId = 'idle_in_transaction', value: number | null = 400): FindingInput {
  return {
    checkId,
    severity,
    subject,
    value,
    threshold: 300,
    unit: 's',
    message: `${subject} idle in transaction`,
    context: { pid: 42, user: 'app' },
    runbook: 'docs/alerts.md#idle-in-transaction',
  };
}

function evaluation(...findings: FindingInput[]): Evaluation {
  return { cluster: 'prod', node: 'db1', checks: ['idle_in_transaction'], findings };
}

type Alerts = Readonly<Record<string, AlertRecord>>;

/** Runs evaluations one minute apart and collects the event kinds of each. */
function run(steps: readonly Evaluation[], start: Alerts = {}, from = 0): { alerts: Alerts; kinds: string[][] } {
  let alerts = start;
  const kinds: string[][] = [];
  steps.forEach((step, index) => {
    const result = applyEvaluations(alerts, [step], defaultStateOptions, at(from + index));
    alerts = settleAlerts(result.alerts, defaultStateOptions, at(from + index));
    kinds.push(result.events.map((event) => `${event.kind}:${event.severity}`));
  });
  return { alerts, kinds };
}

const key = alertKey('prod', 'db1', 'idle_in_transaction', 'pid 42');

describe('alert state machine', () => {
  it('goes pending on the first failing evaluation and fires on the second', () => {
    const { alerts, kinds } = run([evaluation(finding('warning')), evaluation(finding('warning'))]);
    expect(kinds).toEqual([[], ['firing:warning']]);
    expect(alerts[key]?.status).toBe('firing');
    expect(alerts[key]?.firstSeen).toBe(at(0).getTime());
    expect(alerts[key]?.firingSince).toBe(at(1).getTime());
  });

  it('forgets a pending alert that recovers before firing', () => {
    const { alerts, kinds } = run([evaluation(finding('critical')), evaluation(finding('ok'))]);
    expect(kinds).toEqual([[], []]);
    expect(alerts[key]).toBeUndefined();
  });

  it('honours a configurable number of failures', () => {
    const options = { ...defaultStateOptions, failuresToFire: 3 };
    let alerts: Alerts = {};
    const kinds: string[] = [];
    for (let i = 0; i < 3; i++) {
      const result = applyEvaluations(alerts, [evaluation(finding('warning'))], options, at(i));
      alerts = result.alerts;
      kinds.push(result.events.map((event) => event.kind).join());
    }
    expect(kinds).toEqual(['', '', 'firing']);
  });

  it('escalates and de-escalates a firing alert, and resolves only below warning', () => {
    const { alerts, kinds } = run([
      evaluation(finding('warning')),
      evaluation(finding('warning')),
      evaluation(finding('critical')),
      evaluation(finding('warning')),
      evaluation(finding('warning')),
      evaluation(finding('ok')),
    ]);
    expect(kinds).toEqual([[], ['firing:warning'], ['escalated:critical'], ['de-escalated:warning'], [], ['resolved:warning']]);
    expect(alerts[key]?.status).toBe('resolved');
    expect(alerts[key]?.criticalSince).toBeNull();
  });

  it('resolves when the subject is no longer reported by a check that ran, not when the check did not run', () => {
    const firing = run([evaluation(finding('warning')), evaluation(finding('warning'))]).alerts;
    const otherCheck = applyEvaluations(firing, [{ cluster: 'prod', node: 'db1', checks: ['locks'], findings: [] }], defaultStateOptions, at(2));
    expect(otherCheck.events).toEqual([]);
    expect(otherCheck.alerts[key]?.status).toBe('firing');
    const gone = applyEvaluations(firing, [evaluation()], defaultStateOptions, at(2));
    expect(gone.events.map((event) => event.kind)).toEqual(['resolved']);
  });

  it('treats UNKNOWN as its own state, never as ok', () => {
    const { alerts, kinds } = run([evaluation(finding('unknown', 'pid 42', 'idle_in_transaction', null)), evaluation(finding('unknown'))]);
    expect(kinds).toEqual([[], ['unknown:unknown']]);
    expect(alerts[key]?.status).toBe('unknown');

    const firing = run([evaluation(finding('critical')), evaluation(finding('critical'))]).alerts;
    // One failed run keeps the last known severity; the second makes the alert UNKNOWN.
    const after = run([evaluation(finding('unknown')), evaluation(finding('unknown')), evaluation(finding('critical')), evaluation(finding('ok'))], firing, 2);
    // Firing, unknown, firing, resolved: four changes within minutes also make it flapping.
    expect(after.kinds).toEqual([[], ['unknown:unknown'], ['firing:critical'], ['resolved:critical', 'flapping:critical']]);
  });

  it('reports flapping once and clears it after 30 stable minutes', () => {
    const steps = [
      finding('warning'), finding('warning'), finding('ok'),
      finding('warning'), finding('warning'), finding('ok'),
      finding('warning'), finding('warning'), finding('ok'),
    ].map((item) => evaluation(item));
    const { alerts, kinds } = run(steps);
    const flat = kinds.flat();
    expect(flat.filter((kind) => kind.startsWith('flapping'))).toHaveLength(1);
    expect(kinds[5]).toEqual(['resolved:warning', 'flapping:warning']);
    expect(alerts[key]?.flapping).toBe(true);
    expect(settleAlerts(alerts, defaultStateOptions, at(8 + 29))[key]?.flapping).toBe(true);
    // Stable (resolved and quiet) for 30 minutes: forgotten altogether.
    expect(settleAlerts(alerts, defaultStateOptions, at(8 + 30))[key]).toBeUndefined();
  });

  it('keeps a firing flapping alert and clears its flag once stable', () => {
    const steps = [finding('warning'), finding('warning'), finding('ok'), finding('warning'), finding('warning'), finding('ok'), finding('warning'), finding('warning')];
    const { alerts } = run(steps.map((item) => evaluation(item)));
    expect(alerts[key]).toMatchObject({ status: 'firing', flapping: true });
    const settled = settleAlerts(alerts, defaultStateOptions, at(7 + 30));
    expect(settled[key]).toMatchObject({ status: 'firing', flapping: false });
  });

  it('acknowledges firing alerts only and drops the acknowledgement on resolve', () => {
    const pending = run([evaluation(finding('warning'))]).alerts;
    expect(acknowledgeAlert(pending, key, 'ann', 'looking', at(1))).toBe(pending);
    const firing = run([evaluation(finding('warning')), evaluation(finding('warning'))]).alerts;
    const acked = acknowledgeAlert(firing, key, 'ann', 'looking', at(2));
    expect(acked[key]?.acknowledged).toEqual({ by: 'ann', comment: 'looking', at: at(2).getTime() });
    const resolved = applyEvaluations(acked, [evaluation(finding('ok'))], defaultStateOptions, at(3));
    expect(resolved.alerts[key]?.acknowledged).toBeNull();
  });

  it('carries the finding with value, threshold and first seen in events', () => {
    const result = run([evaluation(finding('warning')), evaluation(finding('warning', 'pid 42', 'idle_in_transaction', 450))]);
    const events = applyEvaluations(result.alerts, [evaluation(finding('critical', 'pid 42', 'idle_in_transaction', 1000))], defaultStateOptions, at(2)).events;
    expect(events[0]).toMatchObject({ kind: 'escalated', previousSeverity: 'warning', firstSeen: at(0), finding: { value: 1000, threshold: 300, context: { pid: 42 } } });
  });
});
