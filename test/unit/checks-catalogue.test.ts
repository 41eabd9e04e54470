import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkById, checks, resolveThresholds } from '../../src/checks/catalogue.js';
import { alertsMarkdown } from '../../src/checks/doc.js';
import type { ProbeId } from '../../src/probes/types.js';
import { errorResult, resultsWith, run } from '../fixtures/checks.js';

describe('check catalogue', () => {
  it('has unique kebab-case ids, and runbooks with steps', () => {
    const ids = checks.map((check) => check.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const check of checks) {
      expect(check.id).toMatch(/^[a-z]+(-[a-z0-9]+)*$/);
      expect(check.runbook.steps.length).toBeGreaterThanOrEqual(3);
      // monitor alone reads no probe: the watcher describes its own health (src/checks/monitor.ts).
      if (check.id !== 'monitor') expect(check.probes.length).toBeGreaterThan(0);
    }
    expect(checkById('lock-waits')?.title).toBe('Lock waits');
    expect(checkById('nope')).toBeUndefined();
  });

  it('resolves thresholds: defaults, overrides, and errors for unknown names or non-numbers', () => {
    const check = checkById('idle-in-transaction')!;
    expect(resolveThresholds(check, undefined)).toEqual({ warningSeconds: 300, criticalSeconds: 900 });
    expect(resolveThresholds(check, { criticalSeconds: 600 })).toEqual({ warningSeconds: 300, criticalSeconds: 600 });
    expect(() => resolveThresholds(check, { critical: 600 })).toThrow('check idle-in-transaction has no threshold "critical" (known: warningSeconds, criticalSeconds)');
    expect(() => resolveThresholds(check, { criticalSeconds: '10m' })).toThrow('check idle-in-transaction: threshold "criticalSeconds" must be a number, not "10m"');
  });

  it('an override changes the evaluation', () => {
    const check = checkById('connectivity')!;
    const results = resultsWith({ server: { status: 'ok', durationMs: 600, snapshot: undefined as never, at: new Date() } });
    expect(run(check, results)[0]?.severity).toBe('ok');
    expect(run(check, results, { overrides: { warningSeconds: 0.5 } })[0]?.severity).toBe('warning');
  });

  it('every check reports UNKNOWN with the reason when its main probe has not run, failed or is unsupported', () => {
    for (const check of checks.filter((c) => c.id !== 'monitor')) {
      // The probe each check cannot do without (oldest-transaction only adds the slots of replication).
      const main = (check.id === 'oldest-transaction' ? 'activity' : check.probes[check.probes.length - 1]) as ProbeId;
      const pending = run(check, resultsWith({}));
      const failed = run(check, resultsWith({ [main]: errorResult(undefined, 'boom') }));
      const unsupported = run(check, resultsWith({ [main]: { status: 'unsupported', unsupported: { kind: 'privilege', reason: 'no privilege', fix: 'GRANT pg_monitor' } } }));
      if (check.id === 'connectivity') {
        expect(failed.map((f) => [f.severity, f.message])).toEqual([['critical', 'the server does not answer: boom']]);
      } else {
        expect(failed.map((f) => [f.severity, f.message]), check.id).toContainEqual(['unknown', `cannot evaluate: the ${main} probe failed: boom`]);
      }
      expect(pending.map((f) => [f.severity, f.message]), check.id).toContainEqual(['unknown', `cannot evaluate: the ${main} probe has not run yet`]);
      expect(unsupported.map((f) => [f.severity, f.message]), check.id).toContainEqual(['unknown', `cannot evaluate: the ${main} probe cannot run here: no privilege (fix: GRANT pg_monitor)`]);
      for (const finding of [...pending, ...failed, ...unsupported]) expect(finding.runbook).toBe(`docs/alerts.md#${check.id}`);
    }
  });

  it('docs/alerts.md is generated from the catalogue (run npm run docs when this fails)', () => {
    expect(readFileSync('docs/alerts.md', 'utf8')).toBe(alertsMarkdown());
  });

  it('docs/alerts.md has an anchor, thresholds and numbered steps for every check', () => {
    const doc = alertsMarkdown();
    for (const check of checks) {
      expect(doc).toContain(`<a id="${check.id}"></a>`);
      expect(doc).toContain(`| [${check.id}](#${check.id}) |`);
    }
    expect(doc).toContain('- **Thresholds:** `warningSeconds` = 300, `criticalSeconds` = 900.');
    expect(doc).toContain('1. Look at it: `select pid, usename');
  });
});
