import { execFile, ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml } from 'yaml';
import { Kafka } from 'kafkajs';
import { loadSettings, Settings } from '@psp/config';
import { ensureTopics } from '@psp/messaging';
import { dropIsolated, isolatedEnv, isolatedSettings, openDatabase } from '../support/isolated-stack';
import { freePort, startProcess, stopProcess, waitForHttp } from '../support/processes';

/**
 * Issue 22, item 2: the dashboard, the alert rules and the scrape config of deploy/ are checked, not
 * copied from a page. promtool (Debian's prometheus package, installed by scripts/promtool-install.sh
 * from scripts/services-start.sh) checks the config and the rules, runs the rules' unit tests and
 * checks every dashboard query; the three processes, run for real, export every metric (and every
 * label value matched with `=`) the dashboard and the rules name; docker-compose.yml's Prometheus and
 * Grafana mount files that exist; every alert of docs/operations.md has its rules.
 */

const ROOT = join(__dirname, '..', '..');
const DEPLOY = join(ROOT, 'deploy');
const RULES = join(DEPLOY, 'prometheus', 'alerts.yml');
const RULE_TESTS = join(DEPLOY, 'prometheus', 'alerts.test.yml');
const CONFIG = join(DEPLOY, 'prometheus', 'prometheus.yml');
const DASHBOARD = join(DEPLOY, 'grafana', 'dashboards', 'psp-connections.json');
const COMPOSE = join(ROOT, 'docker-compose.yml');
const JOBS = { 'psp-writer': 'writer', 'psp-projector': 'projector', 'psp-api': 'api' } as const;
type Job = keyof typeof JOBS;
/** Series Prometheus makes itself, not scraped from a process. */
const PROMETHEUS_OWN = new Set(['up']);

// ---- promtool --------------------------------------------------------------------------------------

/** promtool: $PROMTOOL, then scripts/promtool-install.sh's copy, then PATH; or why there is none. */
function findPromtool(): { path: string } | { missing: string } {
  const candidates = [process.env.PROMTOOL, join(ROOT, 'tools', 'prometheus', 'bin', 'promtool')];
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir) candidates.push(join(dir, 'promtool'));
  for (const path of candidates) {
    if (!path) continue;
    try {
      accessSync(path, constants.X_OK);
      return { path };
    } catch {
      // not this one
    }
  }
  const why = join(ROOT, 'tools', 'prometheus', 'UNAVAILABLE');
  return {
    missing: existsSync(why)
      ? `promtool not found: scripts/promtool-install.sh could not install it: ${readFileSync(why, 'utf8').trim()}`
      : 'promtool not found: run `bash scripts/promtool-install.sh` (`npm run stack:up` runs it), or set PROMTOOL',
  };
}

const promtool = findPromtool();
async function runPromtool(...args: string[]): Promise<{ code: number; output: string }> {
  if (!('path' in promtool)) throw new Error('no promtool');
  try {
    const { stdout, stderr } = await promisify(execFile)(promtool.path, args, { cwd: ROOT, timeout: 60000 });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

// ---- what the files name -------------------------------------------------------------------------

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
}
const rules = (): Rule[] =>
  (parseYaml(readFileSync(RULES, 'utf8')) as { groups: { name: string; rules: Rule[] }[] }).groups.flatMap(
    (g) => g.rules,
  );

interface Panel {
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: { expr: string; legendFormat?: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string }[] };
}
const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
/** Grafana's interval variables, replaced by a duration so that the query is plain PromQL. */
const plainPromql = (expr: string) => expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m');
const dashboardQueries = (): { panel: string; expr: string }[] =>
  allPanels(dashboard().panels).flatMap((p) =>
    (p.targets ?? []).map((t) => ({ panel: p.title, expr: plainPromql(t.expr) })),
  );

/** One vector selector of a query: the metric's name and its label matchers. */
interface Selector {
  name: string;
  matchers: { label: string; op: string; value: string }[];
}

/** The vector selectors of a PromQL query, from Prometheus's own grammar (lezer-promql). */
function selectors(expr: string): Selector[] {
  const tree = parser.parse(expr);
  const found: Selector[] = [];
  const errors: number[] = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name !== 'VectorSelector') return;
      const ident = node.node.getChild('Identifier');
      const matchers: Selector['matchers'] = [];
      const list = node.node.getChild('LabelMatchers');
      for (const m of list?.getChildren('UnquotedLabelMatcher') ?? []) {
        const label = m.getChild('LabelName');
        const op = m.getChild('MatchOp');
        const value = m.getChild('StringLiteral');
        if (!label || !op || !value) continue;
        matchers.push({
          label: expr.slice(label.from, label.to),
          op: expr.slice(op.from, op.to),
          value: JSON.parse(expr.slice(value.from, value.to)) as string,
        });
      }
      if (ident) found.push({ name: expr.slice(ident.from, ident.to), matchers });
    },
  });
  if (errors.length > 0) throw new Error(`PromQL does not parse at ${errors.join(', ')}: ${expr}`);
  return found;
}

// ---- what the processes export -------------------------------------------------------------------

interface Scrape {
  /** Series names: a histogram's _bucket, _sum and _count, a summary's quantiles, _sum and _count. */
  names: Set<string>;
  samples: { name: string; labels: Record<string, string> }[];
}

function readScrape(text: string): Scrape {
  const names = new Set<string>();
  const samples: Scrape['samples'] = [];
  for (const line of text.split('\n')) {
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/.exec(line);
    if (type) {
      const [, name, kind] = type;
      names.add(name);
      if (kind === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
      if (kind === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!sample) continue;
    const labels: Record<string, string> = {};
    for (const m of (sample[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[m[1]] = JSON.parse(`"${m[2]}"`) as string;
    samples.push({ name: sample[1], labels });
  }
  return { names, samples };
}

// ---- the tests -----------------------------------------------------------------------------------

describe('deploy/: dashboard, alert rules, scrape config (issue 22)', () => {
  describe('the files', () => {
    it('the dashboard queries the Prometheus datasource chosen on import, through a variable', () => {
      const d = dashboard();
      expect(d.uid).toBe('psp-connections');
      expect(d.templating.list).toContainEqual(
        expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
      );
      const panels = allPanels(d.panels).filter((p) => p.type !== 'row');
      expect(panels.length).toBeGreaterThan(20);
      for (const p of panels) {
        expect({ panel: p.title, datasource: p.datasource?.uid }).toEqual({
          panel: p.title,
          datasource: '${datasource}',
        });
        expect(p.targets?.length).toBeGreaterThan(0);
        for (const t of p.targets ?? []) expect(t.datasource?.uid).toBe('${datasource}');
      }
      // No variable left but the intervals Grafana fills in.
      for (const q of dashboardQueries())
        expect({ ...q, variable: /\$/.test(q.expr) }).toEqual({ ...q, variable: false });
    });

    it('the dashboard shows what the issue asks for: ingest, DLQ by reason, append latency, lag per shard, freshness, API rate, latency and 429s, memory sheds', () => {
      const queries = dashboardQueries().map((q) => q.expr);
      const some = (re: RegExp) => queries.some((q) => re.test(q));
      expect(some(/rate\(psp_writer_events_appended_total\[/)).toBe(true);
      expect(some(/sum by \(reason\) \(rate\(psp_writer_dlq_messages_total\[/)).toBe(true);
      expect(some(/histogram_quantile\(0\.99, sum by \(le\) \(rate\(psp_writer_append_duration_seconds_bucket\[/)).toBe(
        true,
      );
      for (const gauge of ['psp_projector_lag_seconds', 'psp_projector_lag_events'])
        expect(some(new RegExp(`max by \\(shard\\) \\(${gauge}\\)`))).toBe(true);
      expect(some(/time\(\) - max by \(shard\) \(psp_projector_stream_time_seconds\)/)).toBe(true);
      expect(some(/sum by \(status\) \(rate\(psp_http_requests_total\[/)).toBe(true);
      expect(
        some(/histogram_quantile\(0\.99, sum by \(le, route\) \(rate\(psp_http_request_duration_seconds_bucket/),
      ).toBe(true);
      expect(some(/rate\(psp_http_rate_limited_total\[/)).toBe(true);
      expect(some(/increase\(psp_writer_memory_sheds_total\[/)).toBe(true);
    });

    it('every alert of docs/operations.md has its rules, one per level it gives (warn, page)', () => {
      const doc = readFileSync(join(ROOT, 'docs', 'operations.md'), 'utf8');
      const table = doc.split('### Alerts')[1].split('\n###')[0];
      const rows = table
        .split('\n')
        .filter((l) => l.startsWith('| ') && !l.startsWith('| what') && !l.startsWith('|---'))
        .map((l) =>
          l
            .split(/(?<!\\)\|/)
            .slice(1, -1)
            .map((cell) => cell.trim()),
        );
      expect(rows.length).toBeGreaterThanOrEqual(15);
      const all = rules();
      const used = all.map((r) => new Set(selectors(r.expr).map((s) => s.name)));
      for (const [what, expression, warn, page] of rows) {
        const metrics = [...expression.matchAll(/\b(psp_[a-z0-9_]+|nodejs_[a-z0-9_]+|up)\b/g)].map((m) => m[1]);
        expect({ what, metrics: metrics.length > 0 }).toEqual({ what, metrics: true });
        const covering = all.filter((_, i) => metrics.some((m) => used[i].has(m)));
        const levels = [warn, page].filter((cell) => cell !== '').length;
        expect({ what, rules: covering.length >= levels }).toEqual({ what, rules: true });
      }
      // Every rule alerts with a severity the routing can use, and a summary.
      for (const r of all) {
        expect(r.alert).toMatch(/^Psp[A-Za-z]+$/);
        expect(['warning', 'page']).toContain(r.labels?.severity);
      }
    });

    it('the scrape config has the three jobs, on the ports the processes listen on by default', () => {
      const config = parseYaml(readFileSync(CONFIG, 'utf8')) as {
        rule_files: string[];
        scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
      };
      const ports = Object.fromEntries(
        config.scrape_configs.map((s) => [
          s.job_name,
          s.static_configs.flatMap((c) => c.targets.map((t) => t.split(':')[1])),
        ]),
      );
      const defaultPort = (app: string) =>
        /MetricsServerModule\.forProcess\((\d+)\)/.exec(
          readFileSync(join(ROOT, 'apps', app, 'src', 'main.ts'), 'utf8'),
        )?.[1];
      expect(ports).toEqual({
        'psp-writer': [defaultPort('writer')],
        'psp-projector': [defaultPort('projector')],
        'psp-api': [String(loadSettings({}).httpPort)],
      });
      expect(defaultPort('writer')).toBe('9464');
      expect(config.rule_files).toEqual(['alerts.yml']);
    });

    it("docker-compose.yml's Prometheus and Grafana mount deploy/'s files at the paths they read", () => {
      const compose = parseYaml(readFileSync(COMPOSE, 'utf8')) as {
        services: Record<
          string,
          { image: string; command?: string[]; volumes?: string[]; environment?: Record<string, string> }
        >;
      };
      const { prometheus, grafana } = compose.services;
      expect(prometheus.image).toMatch(/^prom\/prometheus:v\d/);
      expect(grafana.image).toMatch(/^grafana\/grafana:\d/);
      /** The host file a container path is, through the service's bind mounts (or null). */
      const onHost = (service: { volumes?: string[] }, path: string): string | null => {
        const binds = (service.volumes ?? [])
          .map((v) => v.split(':'))
          .filter(([from]) => from.startsWith('./'))
          .sort((a, b) => b[1].length - a[1].length);
        for (const [from, to] of binds) {
          if (path === to || path.startsWith(`${to}/`)) return join(ROOT, from, posix.relative(to, path));
        }
        return null;
      };
      for (const service of [prometheus, grafana])
        for (const v of service.volumes ?? []) {
          const from = v.split(':')[0];
          if (from.startsWith('./')) expect({ v, exists: existsSync(join(ROOT, from)) }).toEqual({ v, exists: true });
        }
      const configFile = prometheus.command?.find((a) => a.startsWith('--config.file='))?.split('=')[1] ?? '';
      expect(onHost(prometheus, configFile)).toBe(CONFIG);
      expect(onHost(prometheus, posix.join(posix.dirname(configFile), 'alerts.yml'))).toBe(RULES);
      // Grafana: the provisioning folders hold the datasource and the dashboard provider, whose path
      // holds the dashboard; the home dashboard is that file.
      const datasources = onHost(grafana, '/etc/grafana/provisioning/datasources/prometheus.yml');
      const providers = onHost(grafana, '/etc/grafana/provisioning/dashboards/psp-connections.yml');
      expect(datasources && existsSync(datasources)).toBe(true);
      expect(providers && existsSync(providers)).toBe(true);
      const provider = parseYaml(readFileSync(providers!, 'utf8')) as { providers: { options: { path: string } }[] };
      expect(onHost(grafana, posix.join(provider.providers[0].options.path, 'psp-connections.json'))).toBe(DASHBOARD);
      expect(onHost(grafana, grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '')).toBe(DASHBOARD);
      const ds = parseYaml(readFileSync(datasources!, 'utf8')) as { datasources: { type: string; url: string }[] };
      expect(ds.datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://127.0.0.1:9090' });
      expect(prometheus.command).toContain('--web.listen-address=127.0.0.1:9090');
    });
  });

  const withPromtool = 'path' in promtool ? describe : describe.skip;
  if (!('path' in promtool)) console.warn(`deploy-files.test.ts: promtool checks SKIPPED: ${promtool.missing}`);
  withPromtool(`promtool${'path' in promtool ? '' : ` (SKIPPED: ${promtool.missing})`}`, () => {
    let scratch: string;
    beforeAll(() => {
      scratch = mkdtempSync(join(tmpdir(), 'psp-deploy-'));
    });
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    it('refuses a broken rule file (the checks below can fail)', async () => {
      const broken = join(scratch, 'broken.yml');
      writeFileSync(
        broken,
        'groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(psp_x_total[5m])\n',
      );
      const result = await runPromtool('check', 'rules', broken);
      expect(result.code).not.toBe(0);
      expect(result.output).toMatch(/parse error|unclosed|FAILED/i);
    });

    it('promtool check config: the scrape config and the rule files it loads', async () => {
      const result = await runPromtool('check', 'config', CONFIG);
      expect(result).toMatchObject({ code: 0 });
      expect(result.output).toMatch(/SUCCESS: 1 rule files found/);
    });

    it('promtool check rules: the alert rules', async () => {
      const result = await runPromtool('check', 'rules', RULES);
      expect(result).toMatchObject({ code: 0 });
      expect(result.output).toContain(`SUCCESS: ${rules().length} rules found`);
    });

    it("promtool test rules: the rules' unit tests (thresholds, for, with and without a shard label)", async () => {
      const result = await runPromtool('test', 'rules', RULE_TESTS);
      expect(result.output).toContain('SUCCESS');
      expect(result).toMatchObject({ code: 0 });
    });

    it('every dashboard query is valid PromQL (checked by promtool as recording rules)', async () => {
      const queries = dashboardQueries();
      const file = join(scratch, 'dashboard-queries.yml');
      writeFileSync(
        file,
        JSON.stringify({
          groups: [
            { name: 'dashboard', rules: queries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: q.expr })) },
          ],
        }),
      );
      const result = await runPromtool('check', 'rules', file);
      expect(result.output).toContain(`SUCCESS: ${queries.length} rules found`);
      expect(result).toMatchObject({ code: 0 });
    });

    it('the dashboard\'s per-shard panels show one series per shard, and one (shard "all") without a shard label', async () => {
      // Each per-shard query, evaluated by promtool on the same gauge unsharded and sharded.
      const perShard = dashboardQueries()
        .map((q) => /^label_replace\(max by \(shard\) \((psp_[a-z_]+)\), "shard", "all", "shard", ""\)$/.exec(q.expr))
        .filter((m): m is RegExpExecArray => m !== null);
      expect(perShard.map((m) => m[1]).sort()).toEqual(
        expect.arrayContaining([
          'psp_projector_lag_events',
          'psp_projector_lag_seconds',
          'psp_projector_stalled_seconds',
        ]),
      );
      const total = dashboardQueries().find((q) => q.expr === 'sum(max by (shard) (psp_projector_lag_events))');
      expect(total).toBeDefined();
      const tests = perShard.flatMap(([expr, gauge]) => [
        {
          interval: '1m',
          input_series: [
            { series: `${gauge}{job="psp-projector",instance="p1"}`, values: '7x5' },
            { series: `${gauge}{job="psp-projector",instance="p2"}`, values: '7x5' },
          ],
          promql_expr_test: [{ expr, eval_time: '2m', exp_samples: [{ labels: '{shard="all"}', value: 7 }] }],
        },
        {
          interval: '1m',
          input_series: [
            { series: `${gauge}{job="psp-projector",instance="p1",shard="0"}`, values: '3x5' },
            { series: `${gauge}{job="psp-projector",instance="p2",shard="0"}`, values: '3x5' },
            { series: `${gauge}{job="psp-projector",instance="p1",shard="1"}`, values: '9x5' },
          ],
          promql_expr_test: [
            {
              expr,
              eval_time: '2m',
              exp_samples: [
                { labels: '{shard="0"}', value: 3 },
                { labels: '{shard="1"}', value: 9 },
              ],
            },
            ...(gauge === 'psp_projector_lag_events'
              ? [{ expr: total!.expr, eval_time: '2m', exp_samples: [{ labels: '{}', value: 12 }] }]
              : []),
          ],
        },
      ]);
      const file = join(scratch, 'per-shard.test.yml');
      writeFileSync(file, JSON.stringify({ evaluation_interval: '1m', tests }));
      const result = await runPromtool('test', 'rules', file);
      expect(result.output).toContain('SUCCESS');
      expect(result).toMatchObject({ code: 0 });
    });
  });

  describe('every metric the dashboard and the rules name is exported by the processes', () => {
    let env: Record<string, string>;
    let settings: Settings;
    const children: ChildProcess[] = [];
    const scrapes = {} as Record<Job, Scrape>;

    beforeAll(async () => {
      env = isolatedEnv('deployfiles', { LOG_LEVEL: 'warn', KAFKAJS_NO_PARTITIONER_WARNING: '1' });
      settings = isolatedSettings('unused', env);
      const db = await openDatabase(settings);
      await db.destroy();
      await ensureTopics(
        new Kafka({ clientId: `${settings.kafkaClientId}-setup`, brokers: settings.kafkaBrokers, logLevel: 1 }),
        settings,
      );
      const [apiPort, writerPort, projectorPort] = await Promise.all([freePort(), freePort(), freePort()]);
      const urls: Record<Job, string> = {
        'psp-writer': `http://127.0.0.1:${writerPort}/metrics`,
        'psp-projector': `http://127.0.0.1:${projectorPort}/metrics`,
        'psp-api': `http://127.0.0.1:${apiPort}/metrics`,
      };
      const writer = startProcess('writer', { ...env, METRICS_PORT: String(writerPort) });
      const projector = startProcess('projector', { ...env, METRICS_PORT: String(projectorPort) });
      const api = startProcess('api', { ...env, HTTP_PORT: String(apiPort) });
      children.push(writer, projector, api);
      await Promise.all([
        waitForHttp(urls['psp-writer'], writer),
        waitForHttp(urls['psp-projector'], projector),
        waitForHttp(urls['psp-api'], api),
      ]);
      for (const job of Object.keys(JOBS) as Job[]) scrapes[job] = readScrape(await (await fetch(urls[job])).text());
    });

    afterAll(async () => {
      await Promise.all(children.map((c) => stopProcess(c)));
      if (settings) await dropIsolated(settings);
    });

    const named = (): { where: string; selector: Selector }[] => [
      ...rules().flatMap((r) => selectors(r.expr).map((selector) => ({ where: `rule ${r.alert}`, selector }))),
      ...dashboardQueries().flatMap((q) =>
        selectors(q.expr).map((selector) => ({ where: `panel ${q.panel}`, selector })),
      ),
    ];

    it('reads the names out of the queries (Prometheus grammar)', () => {
      const names = new Set(named().map((n) => n.selector.name));
      expect(names.size).toBeGreaterThan(25);
      expect(selectors('max by (shard) (psp_projector_lag_seconds{job="psp-projector"}) > 5 and on() up')).toEqual([
        { name: 'psp_projector_lag_seconds', matchers: [{ label: 'job', op: '=', value: 'psp-projector' }] },
        { name: 'up', matchers: [] },
      ]);
      expect(() => selectors('sum(rate(x[5m])')).toThrow(/does not parse/);
    });

    it('each metric is served by a process (by the one its job matcher names, if any)', () => {
      const missing: string[] = [];
      for (const { where, selector } of named()) {
        if (PROMETHEUS_OWN.has(selector.name)) continue;
        const job = selector.matchers.find((m) => m.label === 'job' && m.op === '=')?.value;
        const jobs = job === undefined ? (Object.keys(JOBS) as Job[]) : [job as Job];
        if (!jobs.some((j) => scrapes[j]?.names.has(selector.name)))
          missing.push(`${where}: ${selector.name}${job ? ` in ${job}` : ''}`);
      }
      expect(missing).toEqual([]);
    });

    it('each label value matched with = is one the metric has', () => {
      const missing: string[] = [];
      for (const { where, selector } of named()) {
        const exact = selector.matchers.filter((m) => m.op === '=' && m.label !== 'job' && m.label !== 'instance');
        if (exact.length === 0) continue;
        const samples = (Object.keys(JOBS) as Job[]).flatMap((j) =>
          scrapes[j].samples.filter((s) => s.name === selector.name),
        );
        if (!samples.some((s) => exact.every((m) => s.labels[m.label] === m.value)))
          missing.push(`${where}: ${selector.name}{${exact.map((m) => `${m.label}="${m.value}"`).join(',')}}`);
      }
      expect(missing).toEqual([]);
    });

    it("the job regex of the processes' default metrics matches the scrape config's jobs", () => {
      for (const { selector } of named()) {
        for (const m of selector.matchers.filter((x) => x.label === 'job')) {
          const re = new RegExp(`^(?:${m.value})$`);
          const matching = Object.keys(JOBS).filter((j) => re.test(j));
          expect({
            selector: selector.name,
            job: m.value,
            matches: m.op === '=~' ? matching.length === 3 : matching.length === 1,
          }).toEqual({
            selector: selector.name,
            job: m.value,
            matches: true,
          });
        }
      }
    });
  });
});
