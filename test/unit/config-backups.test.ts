// The `backups` config section (issue 5 items 1, 5, 7): defaults, the "*" and per-cluster layers of
// resolveBackupPlan, and every validation error naming the file, the key, the problem and the fix.
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeBackupPlan, fullBackupOverdueAt, parseBackups, resolveBackupPlan } from '../../src/config/backups.js';
import type { Json } from '../../src/config/load.js';
import { parseConfig, Validator } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';

const probes = ['server', 'activity'];
const file = '/etc/pgwarden.json';
const clusters = [
  { name: 'prod', nodes: [{ name: 'db1', dsn: 'postgresql://monitor@db1/postgres' }] },
  { name: 'staging', nodes: [{ name: 'db9', dsn: 'postgresql://monitor@db9/postgres' }] },
];
const local = { name: 'local', type: 'local', path: '/var/lib/pgwarden/repo' };
const offsite = {
  name: 'offsite', type: 's3', endpoint: 'https://s3.example.com', region: 'eu-west-1', bucket: 'db-backups', prefix: 'prod/',
  access_key_id_env: 'OFFSITE_KEY_ID', secret_access_key_env: 'OFFSITE_SECRET',
};

function parse(backups: Json): ReturnType<typeof parseConfig> {
  return parseConfig({ clusters, backups }, file, probes);
}

function errorOf(backups: Json): UserError {
  try {
    parse(backups);
  } catch (error) {
    if (error instanceof UserError) return error;
    throw error;
  }
  throw new Error('expected a UserError');
}

describe('backups defaults', () => {
  it('has no backups without the section, and says so by giving no plan', () => {
    const config = parseConfig({ clusters }, file, probes);
    expect(config.backups).toBeUndefined();
    expect(resolveBackupPlan(config, 'prod')).toBeUndefined();
  });

  it('backs up every cluster with the issue-5 defaults when only repositories are given', () => {
    const config = parse({ repositories: [local, offsite] });
    const plan = resolveBackupPlan(config, 'staging');
    expect(plan).toEqual({
      cluster: 'staging',
      repositories: [
        { name: 'local', spec: { type: 'local', path: '/var/lib/pgwarden/repo' } },
        expect.objectContaining({ name: 'offsite', spec: expect.objectContaining({ type: 's3', bucket: 'db-backups', prefix: 'prod' }) }),
      ],
      keys: [],
      encrypted: false,
      compression: 'zstd',
      schedule: { full: '0 3 * * *', logical: '0 * * * *', drill: '30 4 * * *', timeZone: 'UTC' },
      retention: { days: 14, minCount: 1, maxCount: null },
      drill: { tables: [], targetDir: join(tmpdir(), 'pgwarden-drill') },
      marginMinutes: 60,
      streaming: { enabled: false, spoolDir: undefined, slot: undefined },
    });
    expect(describeBackupPlan(plan!).join('\n')).toContain('encryption: OFF');
  });

  it('streaming: off by default; enabled per cluster with its spool and slot, validated', () => {
    const v = new Validator('/etc/pgwarden.json');
    const backups = parseBackups(v, {
      repositories: [{ name: 'local', type: 'local', path: '/var/lib/pgwarden/repo' }],
      clusters: { '*': {}, prod: { streaming: { enabled: true, spool_dir: '/var/lib/pgwarden/spool', slot: 'pgwarden_prod' } } },
    }, ['prod', 'qa']);
    expect(resolveBackupPlan({ backups }, 'prod')?.streaming).toEqual({ enabled: true, spoolDir: '/var/lib/pgwarden/spool', slot: 'pgwarden_prod' });
    expect(resolveBackupPlan({ backups }, 'qa')?.streaming.enabled).toBe(false);
    expect(() => parseBackups(new Validator('/etc/pgwarden.json'), {
      repositories: [{ name: 'local', type: 'local', path: '/r' }],
      clusters: { prod: { streaming: { enabled: true, slot: 'Prod-Slot' } } },
    }, ['prod'])).toThrow(/backups\.clusters\.prod\.streaming\.slot: "Prod-Slot" is not a valid replication slot name/);
  });

  it('layers the cluster entry over "*" over the defaults, field by field', () => {
    const config = parse({
      repositories: [local, offsite],
      keys: [{ id: '2026-11', file: '/etc/pgwarden/keys/2026-11.key' }, { id: '2026-05', env: 'OLD_KEY' }],
      clusters: {
        '*': { compression: 'gzip', schedule: { full: '0 2 * * *', time_zone: 'Europe/Paris' }, retention: { days: 30, min_count: 2 } },
        prod: {
          repositories: ['offsite', 'local'],
          schedule: { logical: null },
          retention: { max_count: 10 },
          drill: { tables: ['public.orders'], target_dir: '/var/tmp/pgwarden-drill' },
          margin_minutes: 90,
        },
      },
    });
    const prod = resolveBackupPlan(config, 'prod');
    expect(prod?.repositories.map((repository) => repository.name)).toEqual(['offsite', 'local']);
    expect(prod?.compression).toBe('gzip');
    expect(prod?.schedule).toEqual({ full: '0 2 * * *', logical: null, drill: '30 4 * * *', timeZone: 'Europe/Paris' });
    expect(prod?.retention).toEqual({ days: 30, minCount: 2, maxCount: 10 });
    expect(prod?.drill).toEqual({ tables: ['public.orders'], targetDir: '/var/tmp/pgwarden-drill' });
    expect(prod?.marginMinutes).toBe(90);
    expect(prod?.encrypted).toBe(true);
    expect(prod?.keys.map((key) => key.id)).toEqual(['2026-11', '2026-05']);
    const lines = describeBackupPlan(prod!).join('\n');
    expect(lines).toContain('encryption: on, current key 2026-11 (2 keys)');
    expect(lines).toContain('logical off');
    expect(lines).not.toContain('OFFSITE_SECRET');

    const staging = resolveBackupPlan(config, 'staging');
    expect(staging?.repositories.map((repository) => repository.name)).toEqual(['local', 'offsite']);
    expect(staging?.schedule.logical).toBe('0 * * * *');
    expect(staging?.marginMinutes).toBe(60);
  });

  it('gives no plan to a cluster that neither "*" nor its own entry covers', () => {
    const config = parse({ repositories: [local], clusters: { prod: {} } });
    expect(resolveBackupPlan(config, 'prod')?.repositories).toHaveLength(1);
    expect(resolveBackupPlan(config, 'staging')).toBeUndefined();
  });

  it('puts the backups check at the next scheduled full backup plus the margin', () => {
    const config = parse({ repositories: [local], clusters: { prod: { schedule: { full: '0 3 * * *' }, margin_minutes: 30 } } });
    const plan = resolveBackupPlan(config, 'prod')!;
    expect(fullBackupOverdueAt(plan, new Date('2026-11-27T03:10:00Z'))?.toISOString()).toBe('2026-11-28T03:30:00.000Z');
    const off = resolveBackupPlan(parse({ repositories: [local], clusters: { prod: { schedule: { full: null } } } }), 'prod')!;
    expect(fullBackupOverdueAt(off, new Date())).toBeUndefined();
  });
});

describe('backups validation: every error names the file, the key, the problem and the fix', () => {
  const cases: { name: string; backups: Json; key: string; problem: RegExp; fix: RegExp }[] = [
    { name: 'unknown top key', backups: { repositories: [local], cluster: {} }, key: 'backups.cluster', problem: /unknown key/, fix: /did you mean "clusters"/ },
    { name: 'no repositories', backups: { clusters: {} }, key: 'backups.repositories', problem: /no repository/, fix: /"type": "local"/ },
    { name: 'bad repository type', backups: { repositories: [{ name: 'x', type: 'ftp' }] }, key: 'backups.repositories[0].type', problem: /"local" or "s3"/, fix: /set backups.repositories\[0\].type/ },
    {
      name: 'secret in the file', backups: { repositories: [{ ...offsite, secret_access_key: 'abc' }] },
      key: 'backups.repositories[0].secret_access_key', problem: /never read from the config file/, fix: /environment|AWS_ACCESS_KEY_ID/,
    },
    { name: 'empty key list', backups: { repositories: [local], keys: [] }, key: 'backups.keys', problem: /empty/, fix: /list at least one key/ },
    { name: 'unknown cluster', backups: { repositories: [local], clusters: { prd: {} } }, key: 'backups.clusters.prd', problem: /no cluster named "prd"/, fix: /prod, staging/ },
    { name: 'empty clusters', backups: { repositories: [local], clusters: {} }, key: 'backups.clusters', problem: /nothing would be backed up/, fix: /"\*": \{\}/ },
    {
      name: 'unknown repository', backups: { repositories: [local], clusters: { prod: { repositories: ['offsite'] } } },
      key: 'backups.clusters.prod.repositories[0]', problem: /no repository named "offsite"/, fix: /use one of local/,
    },
    {
      name: 'repository twice', backups: { repositories: [local], clusters: { prod: { repositories: ['local', 'local'] } } },
      key: 'backups.clusters.prod.repositories[1]', problem: /listed twice/, fix: /once/,
    },
    {
      name: 'misspelt cluster setting', backups: { repositories: [local], clusters: { prod: { schedules: {} } } },
      key: 'backups.clusters.prod.schedules', problem: /unknown key/, fix: /did you mean "schedule"/,
    },
    {
      name: 'misspelt schedule job', backups: { repositories: [local], clusters: { prod: { schedule: { Full: '0 3 * * *' } } } },
      key: 'backups.clusters.prod.schedule.Full', problem: /unknown key/, fix: /did you mean "full"/,
    },
    {
      name: 'compression', backups: { repositories: [local], clusters: { '*': { compression: 'lz5' } } },
      key: 'backups.clusters.*.compression', problem: /expected one of zstd, gzip, none, found "lz5"/, fix: /"zstd", "gzip" or "none"/,
    },
    {
      name: 'cron minute out of range', backups: { repositories: [local], clusters: { prod: { schedule: { full: '60 3 * * *' } } } },
      key: 'backups.clusters.prod.schedule.full', problem: /minute field has 60, outside 0–59/, fix: /values from 0 to 59.*or null to turn the full job off/,
    },
    {
      name: 'cron field count', backups: { repositories: [local], clusters: { prod: { schedule: { logical: '0 * * *' } } } },
      key: 'backups.clusters.prod.schedule.logical', problem: /has 4 fields, not 5/, fix: /minute hour day-of-month month day-of-week/,
    },
    {
      name: 'cron impossible date', backups: { repositories: [local], clusters: { prod: { schedule: { drill: '0 4 30 feb *' } } } },
      key: 'backups.clusters.prod.schedule.drill', problem: /never runs: day 30 does not occur in feb/, fix: /choose a day that the month has/,
    },
    {
      name: 'time zone', backups: { repositories: [local], clusters: { prod: { schedule: { time_zone: 'Europe/Pariss' } } } },
      key: 'backups.clusters.prod.schedule.time_zone', problem: /unknown time zone "Europe\/Pariss"/, fix: /IANA zone name/,
    },
    {
      name: 'min_count 0', backups: { repositories: [local], clusters: { prod: { retention: { min_count: 0 } } } },
      key: 'backups.clusters.prod.retention.min_count', problem: /newest restorable backup is always kept/, fix: /1 or more/,
    },
    {
      name: 'max below min', backups: { repositories: [local], clusters: { prod: { retention: { min_count: 3, max_count: 2 } } } },
      key: 'backups.clusters.prod.retention.max_count', problem: /below min_count 3/, fix: /raise max_count/,
    },
    {
      name: 'days', backups: { repositories: [local], clusters: { prod: { retention: { days: 0 } } } },
      key: 'backups.clusters.prod.retention.days', problem: /whole number from 1/, fix: /set backups.clusters.prod.retention.days/,
    },
    {
      name: 'drill table', backups: { repositories: [local], clusters: { prod: { drill: { tables: ['orders'] } } } },
      key: 'backups.clusters.prod.drill.tables[0]', problem: /not a schema-qualified table name/, fix: /schema.table/,
    },
    {
      name: 'drill dir', backups: { repositories: [local], clusters: { prod: { drill: { target_dir: 'drill' } } } },
      key: 'backups.clusters.prod.drill.target_dir', problem: /relative path/, fix: /absolute path/,
    },
    {
      name: 'margin', backups: { repositories: [local], clusters: { prod: { margin_minutes: -5 } } },
      key: 'backups.clusters.prod.margin_minutes', problem: /whole number from 0 to 10080/, fix: /set backups.clusters.prod.margin_minutes/,
    },
  ];
  for (const testCase of cases) {
    it(testCase.name, () => {
      const error = errorOf(testCase.backups);
      expect(error.message.startsWith(`${file}: ${testCase.key}: `)).toBe(true);
      expect(error.message).toMatch(testCase.problem);
      expect(error.hint).toMatch(testCase.fix);
    });
  }

  it('accepts any cluster name when the file declares no clusters (the default target is "default")', () => {
    const config = parseConfig({ backups: { repositories: [local], clusters: { default: {} } } }, file, probes);
    expect(resolveBackupPlan(config, 'default')?.repositories.map((repository) => repository.name)).toEqual(['local']);
  });
});

describe('docs/configuration.md', () => {
  it('parses the backups example of the Backups section', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const example = /```json\n("backups": \{[\s\S]*?\n\})\n```/.exec(doc);
    expect(example).not.toBeNull();
    const { backups } = JSON.parse(`{${example?.[1] ?? ''}}`) as { backups: Json };
    const plan = resolveBackupPlan(parse(backups), 'prod');
    expect(plan?.repositories.map((repository) => repository.name)).toEqual(['local', 'offsite']);
    expect(plan?.schedule.timeZone).toBe('Europe/Paris');
    expect(plan?.retention).toEqual({ days: 14, minCount: 2, maxCount: null });
    expect(plan?.encrypted).toBe(true);
  });
});
