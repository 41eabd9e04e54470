import { describe, expect, it } from 'vitest';
import { alertRowDetail } from '../../src/app/alert-detail.js';
import { alertCounts, alertRowKey, alertToasts, eventRowKey, silenceRowKey, timeOfDay, topAlerts, valueAgainst, type AlertsView } from '../../src/app/alerts-view.js';
import { parseFilter } from '../../src/app/state.js';
import { initialEngineState, stepEngine, defaultEngineConfig, silence } from '../../src/alerts/engine.js';
import { alertKey } from '../../src/alerts/state.js';
import { makeTheme } from '../../src/components/theme.js';
import { displayWidth } from '../../src/format/text-table.js';
import { alertSectionHeights, alertSelection, alertsScreen, type AlertRow } from '../../src/screens/Alerts.js';
import { overviewScreen } from '../../src/screens/Overview.js';
import type { ScreenProps } from '../../src/screens/types.js';
import { alertFinding, alertsViewOf, incidentView, longSubject, quietView } from '../fixtures/alerts.js';
import { fixtureNow, renderScreen, screenProps, type PropsOptions } from '../fixtures/snapshots.js';

const minute = 60_000;
const at = (minutesAgo: number): string => timeOfDay(fixtureNow.getTime() - minutesAgo * minute);

function props(view: AlertsView | undefined, options: PropsOptions = {}): ScreenProps {
  return { ...screenProps('alerts', options), alerts: view };
}

function rendered(view: AlertsView | undefined, options: PropsOptions = {}): readonly string[] {
  return renderScreen(alertsScreen, props(view, options)).text;
}

function rows(view: AlertsView, options: PropsOptions = {}): readonly AlertRow[] {
  return alertsScreen.model!(props(view, options)).rows;
}

describe('Alerts screen at 80×24', () => {
  it('shows every section, worst first, each row with severity, check, subject, node, value against limit and since', () => {
    const lines = rendered(incidentView());
    expect(lines).toEqual([
      '3 firing (1 critical, 2 warning) · 1 pending · 1 unknown · 2 silenced or acked …',
      "no watcher state in /var/lib/pgwarden: these alerts are this console's own and …",
      'firing (3)',
      ' severi…▼ check               subject       node        value / limit      since',
      '>critical idle-in-transaction pid 4242      prod/db1    25m40s / 15m00s   19m00s',
      ' warning  long-running-query  pid 5151      prod/db2    7m00s / 5m00s      7m00s',
      ' warning  replication-lag     replica db3   prod/db2    150 MB / 100 MB    7m00s',
      'pending: failing, not yet for long enough to fire (1)',
      ' severity check               subject       node        value / limit      since',
      ' warning  lock-waits          pid 777       prod/db1    1m15s / 1m00s      1m00s',
      'unknown: checks that could not be evaluated (1)',
      ' severity check               subject       node        value / limit      since',
      ' unknown  slow-queries        cluster       prod/db2    -                  7m00s',
      'silenced or acknowledged (4)',
      ' severity check               subject      node        state               since',
      ` warning  bloat               table publi… prod/db1    silenced to ${at(-60).slice(0, 5)}  19m00s`,
      ' warning  connection-saturat… cluster      prod/db1    acknowledged by a… 19m00s',
      ` silence  bloat               table publi… prod/db1    until ${at(-60).slice(0, 5)} by bo…  1m00s`,
      ` silence  deadlocks           *            prod/*      until ${at(-239).slice(0, 5)} by bo…  1m00s`,
      'recent history (9)',
      ' time     event        severity check               subject          node',
      ` ${at(7)} firing       warning  long-running-query  pid 5151         prod/db2`,
      ` ${at(7)} firing       warning  replication-lag     replica db3      prod/db2`,
      ` ${at(7)} unknown      unknown  slow-queries        cluster          prod/db2`,
    ]);
  });

  it('cuts long subjects with the ellipsis and never draws a line wider than the screen', () => {
    for (const theme of [makeTheme({ color: false, ascii: false }), makeTheme({ color: true, ascii: true })]) {
      const { lines } = renderScreen(alertsScreen, props(incidentView(), { theme }));
      expect(lines.length).toBeLessThanOrEqual(24);
      for (const line of lines) expect(displayWidth(line), line).toBeLessThanOrEqual(80);
      expect(lines.some((line) => line.includes(longSubject))).toBe(false);
    }
    const ascii = rendered(incidentView(), { theme: makeTheme({ color: false, ascii: true }) });
    expect(ascii).toContain(` warning  bloat               table publi~ prod/db1    silenced to ${at(-60).slice(0, 5)}  19m00s`);
    expect(ascii.join('\n')).not.toMatch(/[─│├└…▼▲]/);
  });

  it('says when nothing is wrong, and while the first evaluation is awaited', () => {
    expect(rendered(quietView)).toEqual([
      `0 firing · 0 pending · 0 unknown · 0 silenced or acked · evaluated ${at(1)}`,
      "no watcher state in /var/lib/pgwarden: these alerts are this console's own and …",
      'no alert: every check passed at the last evaluation (27 checks on 2 nodes)',
      ...Array<string>(21).fill(''),
    ]);
    expect(rendered({ ...quietView, evaluatedAt: null, nodes: 1 }).slice(0, 3)).toEqual([
      '0 firing · 0 pending · 0 unknown · 0 silenced or acked · no evaluation yet',
      "no watcher state in /var/lib/pgwarden: these alerts are this console's own and …",
      'waiting for the first evaluation: 27 checks on 1 node…',
    ]);
    expect(rendered(undefined).filter((line) => line !== '')).toEqual(['the alert engine is not running in this console']);
  });

  it('says that acknowledgements and silences reach a watcher when its state is there', () => {
    expect(rendered({ ...quietView, watcher: true }, { width: 200 })[1]).toBe('watcher state in /var/lib/pgwarden: acknowledgements and silences are also queued for the watcher');
  });

  it('shows the firing section (empty) with the others when only history is left', () => {
    const { state, events } = (() => {
      const config = defaultEngineConfig([]);
      let engine = initialEngineState();
      const all: ReturnType<typeof stepEngine>['events'][number][] = [];
      const finding = alertFinding('lock-waits', 'pid 7', 'warning', 70, 60);
      for (const [offset, findings] of [[-3, [finding]], [-2, [finding]], [-1, []]] as const) {
        const result = stepEngine(engine, [{ cluster: 'prod', node: 'db1', checks: ['lock-waits'], findings }], config, new Date(fixtureNow.getTime() + offset * minute));
        engine = result.state;
        all.push(...result.events);
      }
      return { state: engine, events: all };
    })();
    expect(rendered(alertsViewOf(state, events)).slice(2, 8)).toEqual([
      'firing (0)',
      ' severi…▼ check               subject       node        value / limit      since',
      ' nothing is firing',
      'recent history (2)',
      ' time     event        severity check               subject          node',
      // The only row is selected.
      `>${at(1)} resolved     warning  lock-waits          pid 7            prod/db1`,
    ]);
  });
});

describe('Alerts screen at 200×50', () => {
  it('shows every column: the note, the full state of muted alerts, values in the history', () => {
    const lines = rendered(incidentView(), { width: 200, height: 50 });
    expect(lines[0]).toBe(`3 firing (1 critical, 2 warning) · 1 pending · 1 unknown · 2 silenced or acked · evaluated ${at(1)}`);
    expect(lines[1]).toBe("no watcher state in /var/lib/pgwarden: these alerts are this console's own and no notice is sent (pgwarden --watch sends them)");
    expect(lines[3]).toMatch(/^ severi…▼ check {15}subject {96}node {8}value \/ limit {6}since note$/);
    expect(lines[4]).toMatch(/^>critical idle-in-transaction pid 4242 +prod\/db1 {4}25m40s \/ 15m00s {3}19m00s$/);
    expect(lines.find((line) => line.includes('connection-saturat'))).toMatch(/ acknowledged by ann \(console\) +19m00s$/);
    expect(lines.find((line) => line.startsWith(' silence  bloat'))).toContain(`until ${at(-60).slice(0, 5)} by bob (console): vacuum full tonight`);
    const history = lines.slice(lines.indexOf('recent history (9)') + 2).filter((line) => line !== '');
    expect(history).toHaveLength(9);
    expect(history[3]).toMatch(new RegExp(`^ ${at(10)} escalated    critical idle-in-transaction pid 4242 +prod/db1 {4}16m40s / 15m00s$`));
    expect(history[4]).toMatch(new RegExp(`^ ${at(15)} resolved     warning  oldest-transaction  pid 99 +prod/db1 {4}- / 15m00s$`));
    // The long subject is whole at this width in the history, cut in the muted section.
    expect(history[6]).toContain(longSubject);
    expect(lines).toHaveLength(50);
    for (const line of lines) expect(displayWidth(line)).toBeLessThanOrEqual(200);
  });
});

describe('Alerts model and selection', () => {
  it('orders rows as shown: firing worst first, pending, unknown, muted alerts then silences, history newest first', () => {
    const view = incidentView();
    const keys = rows(view).map((row) => row.key);
    const alert = (node: string, check: string, subject: string): string => alertRowKey(alertKey('prod', node, check, subject));
    expect(keys.slice(0, 8)).toEqual([
      alert('db1', 'idle-in-transaction', 'pid 4242'),
      alert('db2', 'long-running-query', 'pid 5151'),
      alert('db2', 'replication-lag', 'replica db3'),
      alert('db1', 'lock-waits', 'pid 777'),
      alert('db2', 'slow-queries', 'cluster'),
      alert('db1', 'bloat', longSubject),
      alert('db1', 'connection-saturation', 'cluster'),
      silenceRowKey('bloat-1'),
    ]);
    expect(keys[8]).toBe(silenceRowKey('deadlocks-1'));
    expect(keys.slice(9)).toEqual(view.history.map(eventRowKey));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it('sorts inside each section by the chosen column, and filters every section', () => {
    const ascending = rows(incidentView(), { viewState: { sort: { column: 'severity', descending: false } } }).map((row) => row.key);
    expect(ascending[0]).toBe(alertRowKey(alertKey('prod', 'db2', 'long-running-query', 'pid 5151')));
    expect(ascending[2]).toBe(alertRowKey(alertKey('prod', 'db1', 'idle-in-transaction', 'pid 4242')));
    const filtered = rows(incidentView(), { viewState: { filter: parseFilter('db2') } });
    expect(filtered.every((row) => (row.kind === 'silence' ? false : (row.kind === 'alert' ? row.entry.alert.node : row.event.node) === 'db2'))).toBe(true);
    expect(filtered.filter((row) => row.kind === 'alert')).toHaveLength(3);
    expect(rendered(incidentView(), { viewState: { filter: parseFilter('db2') }, width: 200 })[0]).toContain(' · filter db2: 6 rows');
  });

  it('designates the alert, its status, its acknowledgement and the silence covering it', () => {
    const all = rows(incidentView());
    const byKey = (key: string): AlertRow => all.find((row) => row.key === key)!;
    const idle = alertKey('prod', 'db1', 'idle-in-transaction', 'pid 4242');
    expect(alertSelection(byKey(alertRowKey(idle)))).toEqual({
      kind: 'alert', rowKey: alertRowKey(idle), status: 'firing', acknowledged: false, silenceId: null,
      target: { key: idle, cluster: 'prod', node: 'db1', checkId: 'idle-in-transaction', subject: 'pid 4242' },
    });
    const bloat = alertKey('prod', 'db1', 'bloat', longSubject);
    expect(alertSelection(byKey(alertRowKey(bloat)))).toMatchObject({ status: 'firing', silenceId: 'bloat-1' });
    expect(alertSelection(byKey(alertRowKey(alertKey('prod', 'db1', 'connection-saturation', 'cluster'))))).toMatchObject({ acknowledged: true });
    expect(alertSelection(byKey(silenceRowKey('deadlocks-1')))).toMatchObject({ target: null, silenceId: 'deadlocks-1' });
    // A history event designates its alert as it is now: the resolved one is no longer active.
    const resolved = all.find((row) => row.kind === 'event' && row.event.kind === 'resolved')!;
    expect(alertSelection(resolved)).toMatchObject({ status: 'resolved', target: { checkId: 'oldest-transaction', subject: 'pid 99' } });
  });

  it('gives each section its title, header and first row before the others get more', () => {
    expect(alertSectionHeights([3, 1, 1, 4, 9], 22)).toEqual([5, 3, 3, 6, 5]);
    expect(alertSectionHeights([3, 1], 40)).toEqual([5, 3]);
    expect(alertSectionHeights([0, 9], 4)).toEqual([3, 1]);
    expect(alertSectionHeights([3, 1, 1], 0)).toEqual([0, 0, 0]);
  });
});

describe('the detail pane of an Alerts row', () => {
  const view = incidentView();
  const idle = alertKey('prod', 'db1', 'idle-in-transaction', 'pid 4242');

  it('shows the message, value against threshold, state, session context and the runbook anchor with its steps', () => {
    const detail = alertRowDetail(view, alertRowKey(idle), fixtureNow);
    expect(detail.title).toBe('critical idle-in-transaction pid 4242 on prod/db1');
    const heads = detail.sections.map((section) => section.heading);
    expect(heads).toEqual(['finding', 'state', 'session', 'details', 'runbook: docs/alerts.md#idle-in-transaction']);
    expect(detail.sections[0]!.lines).toEqual(['idle-in-transaction pid 4242: critical', 'value 25m40s / 15m00s']);
    expect(detail.sections[1]!.lines[0]).toBe(`firing · first seen ${at(20)} (20m00s ago) · firing since ${at(19)} (19m00s)`);
    expect(detail.sections[2]!.lines).toEqual(['pid 4242  user alice  application billing  client 10.0.0.7', '  update accounts set balance = balance - 10 where id = 7']);
    expect(detail.sections[4]!.lines[0]).toMatch(/^A session opened a transaction/);
    expect(detail.sections[4]!.lines[1]).toMatch(/^1\. Look at it/);
  });

  it('says what holds an alert back, and shows lag context', () => {
    const bloat = alertRowDetail(view, alertRowKey(alertKey('prod', 'db1', 'bloat', longSubject)), fixtureNow);
    expect(bloat.sections[1]!.lines).toContain('notices held: silenced by bob (console): vacuum full tonight');
    const acked = alertRowDetail(view, alertRowKey(alertKey('prod', 'db1', 'connection-saturation', 'cluster')), fixtureNow);
    expect(acked.sections[1]!.lines).toContain(`acknowledged by ann (console) at ${at(1)}: adding a pooler`);
    const lag = alertRowDetail(view, alertRowKey(alertKey('prod', 'db2', 'replication-lag', 'replica db3')), fixtureNow);
    expect(lag.sections.find((section) => section.heading === 'lag')?.lines).toEqual(['150 MB behind, 42s']);
  });

  it('describes a silence, a history event, and a row that is gone', () => {
    const silenced = alertRowDetail(view, silenceRowKey('bloat-1'), fixtureNow);
    expect(silenced.title).toBe(`silence of bloat ${longSubject} on prod/db1`);
    expect(silenced.sections[0]!.lines).toEqual([`from ${at(1)} until ${at(-60)} (1h00m left)`, 'by bob (console): vacuum full tonight', 'id bloat-1']);
    expect(silenced.sections[1]!.lines).toEqual([`warning bloat ${longSubject} on prod/db1`]);
    const resolved = view.history.find((event) => event.kind === 'resolved')!;
    const event = alertRowDetail(view, eventRowKey(resolved), fixtureNow);
    expect(event.title).toBe('resolved: oldest-transaction pid 99 on prod/db1');
    expect(event.sections[0]!.lines).toEqual([`resolved (was warning) at ${at(15)}, warning; first seen ${at(20)}`]);
    expect(alertRowDetail(view, 'alert:["gone"]', fixtureNow).sections[0]!.heading).toBe('gone');
  });
});

describe('Overview alert counts', () => {
  it('counts alerts by severity and lists the worst firing ones under the counts', () => {
    const lines = renderScreen(overviewScreen, { ...screenProps('overview'), alerts: incidentView() }).text;
    expect(lines.slice(9, 13)).toEqual([
      'alerts       1 critical, 4 warning, 1 unknown, 1 pending (2 silenced or acknowl…',
      '             critical idle-in-transaction pid 4242 on prod/db1 25m40s / 15m00s,…',
      '             warning long-running-query pid 5151 on prod/db2 7m00s / 5m00s, 7m0…',
      '             warning replication-lag replica db3 on prod/db2 150 MB / 100 MB, 7…',
    ]);
    expect(lines[13]).toBe('');
    const quiet = renderScreen(overviewScreen, { ...screenProps('overview'), alerts: quietView }).text;
    expect(quiet[9]).toBe('alerts       0 critical, 0 warning, 0 unknown');
    expect(quiet[10]).toBe('');
    // No room for the top alerts on a short screen.
    expect(renderScreen(overviewScreen, { ...screenProps('overview', { height: 11 }), alerts: incidentView() }).text.filter((line) => line !== '')).toHaveLength(10);
  });

  it('counts muted and pending alerts apart, and puts unmuted alerts first', () => {
    const view = incidentView();
    expect(alertCounts(view, fixtureNow)).toEqual({ critical: 1, warning: 4, info: 0, unknown: 1, muted: 2, pending: 1 });
    expect(topAlerts(view, fixtureNow, 10).map((entry) => `${entry.alert.checkId}:${entry.section}`)).toEqual([
      'idle-in-transaction:firing', 'long-running-query:firing', 'replication-lag:firing', 'slow-queries:unknown',
      'bloat:muted', 'connection-saturation:muted',
    ]);
  });
});

describe('alert toasts', () => {
  const config = defaultEngineConfig([]);
  const finding = (severity: 'warning' | 'critical'): ReturnType<typeof alertFinding> => alertFinding('idle-in-transaction', 'pid 42', severity, severity === 'critical' ? 950 : 400, severity === 'critical' ? 900 : 300);
  const evaluation = (severity: 'warning' | 'critical'): { cluster: string; node: string; findings: ReturnType<typeof alertFinding>[] } => ({ cluster: 'prod', node: 'db1', findings: [finding(severity)] });

  it('announces an alert that fires, and one that escalates to critical, but not one that is silenced or resolves', () => {
    let state = initialEngineState();
    const step = (severity: 'warning' | 'critical' | null, offset: number) => {
      const result = stepEngine(state, severity === null ? [{ cluster: 'prod', node: 'db1', checks: ['idle-in-transaction'], findings: [] }] : [evaluation(severity)], config, new Date(fixtureNow.getTime() + offset));
      state = result.state;
      return alertToasts(alertsViewOf(state, []), result.events, new Date(fixtureNow.getTime() + offset));
    };
    expect(step('warning', 0)).toEqual([]);
    expect(step('warning', minute)).toEqual([{ level: 'warning', text: 'alert firing: idle-in-transaction pid 42 on prod/db1: 6m40s / 5m00s' }]);
    expect(step('critical', 2 * minute)).toEqual([{ level: 'error', text: 'CRITICAL alert escalated: idle-in-transaction pid 42 on prod/db1: 15m50s / 15m00s' }]);
    expect(step(null, 3 * minute)).toEqual([]);
    state = silence(state, { id: 's', checkId: 'idle-in-transaction', startsAt: 0, endsAt: fixtureNow.getTime() + 60 * minute, author: 'bob', comment: 'known' }, fixtureNow);
    expect(step('critical', 4 * minute)).toEqual([]);
    expect(step('critical', 5 * minute)).toEqual([]);
    expect(valueAgainst(null, null, 'seconds')).toBe('-');
  });
});
