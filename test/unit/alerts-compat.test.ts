import { describe, expect, it } from 'vitest';
import { alertLines } from '../../src/alerts/grouping.js';
import { applyEvaluations, defaultStateOptions } from '../../src/alerts/state.js';
import type { FindingInput } from '../../src/alerts/types.js';
import type { Finding } from '../../src/checks/types.js';

describe('the checks contract', () => {
  it('a Finding of src/checks is a FindingInput of the engine, context included', () => {
    const found: Finding = {
      checkId: 'lock_waits',
      severity: 'critical',
      subject: 'pid 77',
      value: 400,
      threshold: 300,
      warningThreshold: 60,
      unit: 's',
      message: 'pid 77 waits for a lock for 6m40s',
      context: { sessions: [{ pid: 77, user: 'app', application: 'billing', client: '10.0.0.7', query: 'update t set x = 1' }], lockTree: ['pid 12', '  pid 77'] },
      runbook: 'docs/alerts.md#lock_waits',
    };
    const input: FindingInput = found;
    const first = applyEvaluations({}, [{ cluster: 'prod', node: 'db1', findings: [input] }], defaultStateOptions, new Date(0));
    const second = applyEvaluations(first.alerts, [{ cluster: 'prod', node: 'db1', findings: [input] }], defaultStateOptions, new Date(60_000));
    expect(second.events.map((event) => event.kind)).toEqual(['firing']);
    const lines = alertLines({
      key: 'k', cluster: 'prod', node: 'db1', checkId: found.checkId, subject: found.subject, status: 'firing', severity: 'critical',
      value: found.value, threshold: found.threshold, unit: found.unit, message: found.message, context: found.context, runbook: found.runbook,
      firstSeen: 0, acknowledgedBy: null, escalatedFrom: null,
    });
    expect(lines).toContain('  lockTree: ["pid 12","  pid 77"]');
  });
});
