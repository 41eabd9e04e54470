// Switchover, failover and rejoin from the console (src/app/cluster-jobs.ts): the command lines
// they run, the typed confirmation, every refusal, and the dry run's output turned into the plan.
import { describe, expect, it } from 'vitest';
import { clusterJobPlan, isClusterJob, previewSteps, type ClusterJobSource } from '../../src/app/cluster-jobs.js';
import { planStepLines } from '../../src/components/ConfirmDialog.js';
import { defaultFailover } from '../../src/config/failover.js';
import { resolveConnection } from '../../src/config/conninfo.js';
import type { ClusterConfig } from '../../src/config/types.js';

const launcher = { execPath: '/usr/bin/node', script: '/opt/pgwarden/bin/pgwarden.js' };
const node = (name: string, port: number): ClusterConfig['nodes'][number] => ({ name, connection: resolveConnection(`postgresql://postgres@127.0.0.1:${port}/postgres`, 'test'), dataDir: undefined });
const cluster: ClusterConfig = { name: 'prod', nodes: [node('p1', 5432), node('s1', 5433), node('s2', 5434)], pgbouncer: undefined, failover: defaultFailover };

function source(overrides: Partial<ClusterJobSource> = {}): ClusterJobSource {
  return { kind: 'switchover', configFile: '/etc/pgwarden/config.json', cluster, clusterName: 'prod', node: 'p1', standby: 's1', readOnly: false, launcher, ...overrides };
}

describe('clusterJobPlan', () => {
  it('switchover: the command line with --yes, its dry run, and the standby\'s name to type', () => {
    const plan = clusterJobPlan(source());
    expect(plan.refused).toBeNull();
    expect(plan.danger).toBe('high');
    expect(plan.confirmToken).toBe('s1');
    expect(plan.commandLine).toBe('/usr/bin/node /opt/pgwarden/bin/pgwarden.js switchover --config /etc/pgwarden/config.json --cluster prod --to s1 --yes');
    expect(plan.previewArgs).toEqual(['/opt/pgwarden/bin/pgwarden.js', 'switchover', '--config', '/etc/pgwarden/config.json', '--cluster', 'prod', '--to', 's1', '--dry-run']);
    expect(plan.steps[0]).toMatchObject({ command: plan.commandLine });
    expect(plan.target).toBe('cluster prod: switch over to s1');
  });

  it('failover: no target of its own, the cluster\'s name to type', () => {
    const plan = clusterJobPlan(source({ kind: 'failover', standby: undefined }));
    expect(plan.confirmToken).toBe('prod');
    expect(plan.args).toEqual(['/opt/pgwarden/bin/pgwarden.js', 'failover', '--config', '/etc/pgwarden/config.json', '--cluster', 'prod', '--yes']);
  });

  it('rejoin: the node the console shows', () => {
    const plan = clusterJobPlan(source({ kind: 'rejoin', node: 'p1' }));
    expect(plan.confirmToken).toBe('p1');
    expect(plan.args).toEqual(['/opt/pgwarden/bin/pgwarden.js', 'rejoin', '--config', '/etc/pgwarden/config.json', '--cluster', 'prod', 'p1', '--yes']);
  });

  it('refuses, saying why, without a config file, under --read-only, with one node, without a selected standby, or one outside the config', () => {
    expect(clusterJobPlan(source({ configFile: undefined, cluster: undefined })).refused).toContain('start the console with --config FILE');
    expect(clusterJobPlan(source({ readOnly: true })).refused).toBe('--read-only: a switchover changes which node is the primary');
    expect(clusterJobPlan(source({ cluster: { ...cluster, nodes: [node('p1', 5432)] } })).refused).toContain('one node in the config');
    expect(clusterJobPlan(source({ standby: undefined })).refused).toBe('select the standby to promote in the standbys list first');
    expect(clusterJobPlan(source({ standby: 'walreceiver' })).refused).toContain('walreceiver is not a node of cluster prod');
    expect(clusterJobPlan(source({ kind: 'rejoin', node: 'elsewhere' })).refused).toContain('node elsewhere is not in cluster prod');
    for (const refused of [clusterJobPlan(source({ readOnly: true })), clusterJobPlan(source({ standby: undefined }))]) {
      expect(refused.args).toEqual([]);
      expect(refused.previewArgs).toEqual([]);
    }
  });

  it('knows its kinds', () => {
    expect(['switchover', 'failover', 'rejoin'].every(isClusterJob)).toBe(true);
    expect(['backup', 'verify', 'drill'].some(isClusterJob)).toBe(false);
  });
});

describe('previewSteps', () => {
  it('shows what the dry run printed between the command and the progress note', () => {
    const plan = clusterJobPlan(source());
    const shown = previewSteps(plan, { code: 0, stdout: '1. PAUSE (PgBouncer)\n2. pg_ctl stop -D /data/p1 -m fast\n\n3. select pg_promote(true, 60)\n', stderr: '' });
    expect(shown.steps.map((step) => step.description)).toEqual([plan.steps[0]?.description, 'Its plan, as the dry run prints it:', plan.steps[1]?.description]);
    expect(shown.steps[1]?.detail).toEqual(['1. PAUSE (PgBouncer)', '2. pg_ctl stop -D /data/p1 -m fast', '3. select pg_promote(true, 60)']);
    expect(shown.refused).toBeNull();
    expect(shown.confirmToken).toBe('s1');
  });

  it('turns a refused dry run into a refused plan with its reason and hint', () => {
    const plan = clusterJobPlan(source({ kind: 'failover', standby: undefined }));
    const shown = previewSteps(plan, { code: 1, stdout: '', stderr: 'pgwarden: p1 answers as a writable primary: this is not a failover\nhint: use pgwarden switchover\n' });
    expect(shown.refused).toBe('p1 answers as a writable primary: this is not a failover (hint: use pgwarden switchover)');
    expect(shown.steps).toEqual([]);
    expect(shown.confirmToken).toBeNull();
  });
});

describe('the dry run in the confirmation dialog', () => {
  it('is shown verbatim under its step, indented as printed and never renumbered', () => {
    const lines = planStepLines([
      { description: 'the command', command: 'pgwarden switchover --to s1 --yes' },
      { description: 'Its plan, as the dry run prints it:', detail: ['Steps:', '  1. pause PgBouncer', '       psql -c PAUSE'] },
      { description: 'Progress: in a pane.' },
    ], 80).map((line) => line.text);
    expect(lines).toEqual([
      '1. pgwarden switchover --to s1 --yes',
      '   the command',
      '2. Its plan, as the dry run prints it:',
      '   Steps:',
      '     1. pause PgBouncer',
      '          psql -c PAUSE',
      '3. Progress: in a pane.',
    ]);
  });
});
