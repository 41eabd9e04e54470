// The pure parts of the switchover (src/cluster/switchover.ts): the steps shown before it runs, in
// order and with no password anywhere (DESIGN §7 rule 14), the plan's text, and the summary with
// what is left to do by hand.
import { describe, expect, it } from 'vitest';
import { defaultFailover } from '../../src/config/failover.js';
import type { ConnectionSpec, NodeConfig } from '../../src/config/types.js';
import { renderPlan, renderResult, switchoverSteps, type SwitchoverPlan } from '../../src/cluster/switchover.js';

const SECRET = 'Sw1tch-S3cret';

function node(name: string, port: number, dataDir?: string): NodeConfig {
  const connection: ConnectionSpec = { host: '10.0.0.1', port, user: 'postgres', database: 'postgres', password: SECRET, sslmode: 'prefer', sslrootcert: undefined, connectTimeoutMs: 5000 };
  return { name, connection, dataDir };
}

function plan(overrides: Partial<Omit<SwitchoverPlan, 'steps'>> = {}): SwitchoverPlan {
  const base: Omit<SwitchoverPlan, 'steps'> = {
    cluster: 'main',
    primary: node('p1', 5432, '/var/lib/postgresql/15/main'),
    candidate: node('s1', 5433),
    primaryDataDir: '/var/lib/postgresql/15/main',
    followers: [node('s2', 5434)],
    lagBytes: 2048,
    timeline: 3,
    pgbouncer: { config: { connection: { ...node('b', 6432).connection, database: 'pgbouncer' }, ini: '/etc/pgbouncer/pgbouncer.ini' }, entries: ['app', 'reports'] },
    rewindable: true,
    failover: { ...defaultFailover, replicationUser: 'replicator', passfile: '/var/lib/postgresql/.pgpass' },
    warnings: [],
    ...overrides,
  };
  return { ...base, steps: switchoverSteps(base) };
}

describe('switchoverSteps', () => {
  it('pauses, stops, waits for the replay, promotes, repoints, resumes, then the followers and the rejoin', () => {
    const titles = plan().steps.map((step) => step.title);
    const order = ['pause PgBouncer', 'stop the old primary p1', 'read its final checkpoint', 'wait until s1 has replayed it', 'promote s1', "point PgBouncer's [databases] app, reports at s1", 'resume PgBouncer', 'slot for s2 on s1', 's2 follows s1', 'rewind p1 from s1', 'p1 becomes a standby of s1', 'drop the slots left on p1'];
    expect(titles.map((title) => order.find((start) => title.startsWith(start)))).toEqual(order);
  });

  it('never shows a password; standbys connect as the replication user with the passfile', () => {
    const text = renderPlan(plan());
    expect(text).not.toContain(SECRET);
    expect(text).toContain("primary_conninfo = 'host=10.0.0.1 port=5433 user=replicator application_name=s2 sslmode=prefer passfile=/var/lib/postgresql/.pgpass'");
    expect(text).toContain('pg_ctl stop -D /var/lib/postgresql/15/main -m fast -w');
  });

  it('without PgBouncer neither pauses nor repoints; an old primary that cannot be rewound stays stopped', () => {
    const steps = plan({ pgbouncer: undefined, rewindable: false }).steps;
    expect(steps.some((step) => /PAUSE|RESUME|RELOAD/.test(step.command))).toBe(false);
    expect(steps.some((step) => step.command.startsWith('pg_rewind'))).toBe(false);
    expect(steps.at(-1)?.title).toMatch(/p1 stays stopped: it cannot be rewound/);
  });
});

describe('renderPlan and renderResult', () => {
  it('the plan names both nodes, the lag, PgBouncer, the followers and every warning', () => {
    const text = renderPlan(plan({ warnings: ['no PgBouncer is configured'] }));
    expect(text).toMatch(/^Switchover of cluster main: p1 \(primary, postgres@10\.0\.0\.1:5432\/postgres\) → s1/);
    expect(text).toContain('s1 is a streaming standby of p1 on timeline 3, 2.00 kB behind (limit 16.0 MB)');
    expect(text).toContain('other standbys that follow: s2');
    expect(text).toContain('  warning: no PgBouncer is configured');
    expect(text).toMatch(/ {2}1\. pause PgBouncer/);
  });

  it('the summary gives the stall and lists what is left to finish by hand', () => {
    const text = renderResult({
      cluster: 'main', oldPrimary: 'p1', newPrimary: 's1', stallMs: 412, checkpointLsn: '0/5000028', repointed: ['app'], followed: ['s2'], rejoined: false, totalMs: 3100,
      leftOver: [{ step: 'p1 rejoins as a standby', error: 'pg_rewind failed', manual: 'keep p1 stopped; rewind it' }],
    });
    expect(text).toContain('write stall: 0.41 s');
    expect(text).toContain('following s1: s2\n');
    expect(text).toContain('  - p1 rejoins as a standby: pg_rewind failed\n    by hand: keep p1 stopped; rewind it');
  });
});
