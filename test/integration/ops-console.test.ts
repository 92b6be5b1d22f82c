import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChildProcess } from 'node:child_process';
import { BrowserContext, chromium, Page } from 'playwright-core';
import { ConnectionEvent, PROJECTION_SHARDS, shardOfOrg } from '@psp/domain';
import { createBuildingGeneration } from '@psp/read-model';
import { eventually, IsolatedStack, openIsolatedStack } from '../support/isolated-stack';
import { freePort, spawnOps, startProcess, stopProcess } from '../support/processes';
import { seedLog } from '../support/seed';

const ROOT = join(__dirname, '..', '..');

/** Debian's chromium (scripts/chromium-install.sh), or CHROMIUM; why not, when it is missing. */
function findChromium(): { path: string } | { missing: string } {
  const path = process.env.CHROMIUM || '/usr/bin/chromium';
  try {
    accessSync(path, constants.X_OK);
    return { path };
  } catch {
    const why = join(ROOT, 'tools', 'chromium', 'UNAVAILABLE');
    return {
      missing: existsSync(why)
        ? `${path} not found: scripts/chromium-install.sh could not install it: ${readFileSync(why, 'utf8').trim()}`
        : `${path} not found: run \`bash scripts/chromium-install.sh\` (\`npm run stack:up\` runs it), or set CHROMIUM`,
    };
  }
}

const browser = findChromium();
const withChromium = 'path' in browser ? describe : describe.skip;
if (!('path' in browser)) console.warn(`ops-console.test.ts: SKIPPED: ${browser.missing}`);

const ORG = 'org_console';
const NOW = Date.now();
const MINUTE = 60_000;
/** Three connections: steady, failing (most calls fail: unhealthy), and one with few calls (unknown). */
const CONNECTIONS = [
  { id: 'paystack_gh', provider: 'paystack', calls: 40, failures: 0 },
  { id: 'hubtel_gh', provider: 'hubtel', calls: 40, failures: 30 },
  { id: 'mpesa_ke', provider: 'mpesa', calls: 3, failures: 0 },
] as const;

function seedEvents(): ConnectionEvent[] {
  const events: ConnectionEvent[] = [];
  for (const c of CONNECTIONS) {
    events.push({
      eventId: randomUUID(),
      type: 'connection.configured',
      orgId: ORG,
      connectionId: c.id,
      occurredAt: NOW - 30 * MINUTE,
      data: {
        provider: c.provider,
        mode: 'live',
        status: 'active',
        capabilities: { cards: true },
        routing_hints: { country_preference: ['GH'], method_bias: {}, fallback_only: false },
        labels: ['primary'],
        fee_structure: { percentage: 1.5, fixed: 100, per_method: {}, per_currency: {} },
      },
    });
    for (let i = 0; i < c.calls; i++) {
      const occurredAt = NOW - 20 * MINUTE + Math.floor((i * 20 * MINUTE) / c.calls);
      events.push({
        eventId: randomUUID(),
        type: 'psp.call.completed',
        orgId: ORG,
        connectionId: c.id,
        occurredAt,
        data:
          i < c.failures
            ? { outcome: 'failure', latency_ms: 900, error_code: 'gateway_error' }
            : { outcome: 'success', latency_ms: 120 },
      });
    }
  }
  return events;
}

/** A fresh profile each run, the flags of a quiet headless browser. */
async function openBrowser(executablePath: string): Promise<{ context: BrowserContext; profile: string }> {
  const profile = mkdtempSync(join(tmpdir(), 'psp-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return { context, profile };
}

/** What the functions run in the page use of it (this project compiles without the DOM library). */
interface PageElement {
  textContent: string | null;
  id: string;
  dataset: Record<string, string | undefined>;
}
interface PageDocument {
  querySelector(selector: string): PageElement | null;
  querySelectorAll(selector: string): { length: number };
  activeElement: PageElement | null;
}

/**
 * Waits until the text of the first element `selector` matches in the page satisfies `test` (a
 * function run in the page: functions, not strings, since the page's CSP forbids eval), or the
 * number of matches equals `count`.
 */
function waitFor(page: Page, selector: string, want: { includes: string } | { count: number }, timeout: number) {
  return page.waitForFunction(
    ({ selector: s, want: w }) => {
      const doc = (globalThis as unknown as { document: PageDocument }).document;
      if ('count' in w) return doc.querySelectorAll(s).length === w.count;
      return (doc.querySelector(s)?.textContent ?? '').includes(w.includes);
    },
    { selector, want },
    { timeout },
  );
}

/**
 * The lowest contrast ratio (WCAG 2 relative luminance) between the text of any element that holds
 * text and the first opaque background behind it, with the element's text, computed in the page.
 */
const lowestContrast = (page: Page) =>
  page.evaluate(() => {
    interface Styled {
      textContent: string | null;
      parentElement: Styled | null;
      childNodes: ArrayLike<{ nodeType: number; textContent: string | null }>;
    }
    const g = globalThis as unknown as {
      document: { querySelectorAll(s: string): ArrayLike<Styled> };
      getComputedStyle(e: Styled): { color: string; backgroundColor: string; visibility: string };
    };
    const rgba = (css: string) => (css.match(/[\d.]+/g) ?? []).map(Number);
    const luminance = ([r, gr, b]: number[]) => {
      const f = (c: number) => (c / 255 <= 0.03928 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4);
      return 0.2126 * f(r) + 0.7152 * f(gr) + 0.0722 * f(b);
    };
    let lowest = { ratio: Infinity, text: '' };
    for (const e of Array.from(g.document.querySelectorAll('body *'))) {
      const own = Array.from(e.childNodes).some((n) => n.nodeType === 3 && (n.textContent ?? '').trim() !== '');
      if (!own || g.getComputedStyle(e).visibility === 'hidden') continue;
      let back: Styled | null = e;
      let bg = [255, 255, 255, 1];
      while (back) {
        const c = rgba(g.getComputedStyle(back).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) {
          bg = c;
          break;
        }
        back = back.parentElement;
      }
      const [a, b] = [luminance(rgba(g.getComputedStyle(e).color)), luminance(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      if (ratio < lowest.ratio) lowest = { ratio, text: (e.textContent ?? '').trim().slice(0, 60) };
    }
    return lowest;
  });

/** The page's focused element. */
const focused = (page: Page) =>
  page.evaluate(() => {
    const e = (globalThis as unknown as { document: PageDocument }).document.activeElement;
    return { id: e?.id ?? null, text: e?.textContent ?? null };
  });

const cellTexts = (page: Page, selector: string) =>
  page.$$eval(selector, (cells) => cells.map((c) => (c.textContent ?? '').replace(/\s+/g, ' ').trim()));

/**
 * `npm run ops -- console` against a seeded stack (a real projector, Kafka, PostgreSQL), in headless
 * Chromium: the org's connections with their health, the lag of every shard, the DLQ by reason, and
 * the page updating when a health change arrives on the topic.
 */
withChromium(`ops console in a browser${'path' in browser ? '' : ' (SKIPPED: no Chromium)'}`, () => {
  let stack: IsolatedStack;
  let projector: ChildProcess & { output: string[] };
  let consoleProcess: ChildProcess & { output: string[] };
  let context: BrowserContext;
  let profile: string;
  let url: string;
  const events = seedEvents();

  beforeAll(async () => {
    stack = await openIsolatedStack('opsconsole');
    await seedLog(stack.db, events);
    projector = startProcess('projector', stack.env);
    // The console's port is its own: never HTTP_PORT.
    const port = await freePort();
    consoleProcess = spawnOps(stack.env, 'console', '--port', String(port), '--org', ORG);
    const line = await eventually(
      async () => consoleProcess.output.join(''),
      (out) => /ops console: http:\/\/127\.0\.0\.1:\d+\//.test(out),
      60000,
      `the console's URL (output: ${consoleProcess.output.join('')})`,
    );
    url = /ops console: (http:\/\/127\.0\.0\.1:\d+\/\S*)/.exec(line)![1];
    expect(url).toBe(`http://127.0.0.1:${port}/?org=${ORG}`);
    ({ context, profile } = await openBrowser((browser as { path: string }).path));
  });

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (consoleProcess) await stopProcess(consoleProcess);
    if (projector) await stopProcess(projector);
    await stack?.close();
  });

  it('shows the org, its shards and the DLQ, and updates live when a health change arrives', async () => {
    // Refused messages in the DLQ, as the writer leaves them: two for one reason, one for another.
    const refused = (reason: string, topic: string, offset: number) => ({
      key: `${ORG}:paystack_gh`,
      value: '{not json',
      headers: {
        'dlq-reason': reason,
        'dlq-detail': 'refused',
        'dlq-topic': topic,
        'dlq-partition': '0',
        'dlq-offset': String(offset),
      },
    });
    await stack.producer.send({
      topic: stack.settings.topics.dlq,
      acks: -1,
      messages: [
        refused('invalid_json', stack.settings.topics.calls, 7),
        refused('invalid_data', stack.settings.topics.validations, 3),
        refused('invalid_json', stack.settings.topics.validations, 4),
      ],
    });

    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
    expect(await page.inputValue('#org')).toBe(ORG);

    // The org's connections from the live read model, once the projector has applied the log.
    await waitFor(page, '#connections-body tr', { count: CONNECTIONS.length }, 60000);
    const rows = await page.$$eval('#connections-body tr', (trs) =>
      trs.map((tr) => ({
        id: tr.getAttribute('data-connection'),
        cells: [...tr.children].map((c) => (c.textContent ?? '').replace(/\s+/g, ' ').trim()),
        chart: tr.querySelector('svg[role="img"]')?.getAttribute('aria-label') ?? null,
      })),
    );
    expect(rows.map((r) => r.id)).toEqual(['hubtel_gh', 'mpesa_ke', 'paystack_gh']);
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get('paystack_gh')!.cells.slice(1, 4)).toEqual(['paystack (live)', 'active', 'healthy']);
    expect(byId.get('hubtel_gh')!.cells[3]).toBe('unhealthy');
    expect(byId.get('mpesa_ke')!.cells[3]).toBe('unknown');
    expect(byId.get('paystack_gh')!.cells[5]).toBe('40');
    // Each sparkline says its numbers: 60 minutes, the score now and its range.
    for (const r of rows) {
      expect(r.chart).toMatch(
        new RegExp(
          `^Health score of ${r.id} at each of the last 60 minutes: [\\d.]+ at the start, ${r.cells[4]} now, lowest [\\d.]+, highest [\\d.]+$`,
        ),
      );
    }
    expect(await page.$$eval('#connections-body svg polyline', (ls) => ls.length)).toBe(CONNECTIONS.length);

    // Lag per shard of the live generation: every shard listed, the org's shard with its events, none behind.
    const shard = shardOfOrg(ORG);
    await waitFor(
      page,
      `.generation[data-generation="1"] tr[data-shard="${shard}"] > td`,
      { includes: String(events.length) },
      60000,
    );
    expect(await cellTexts(page, '.generation[data-generation="1"] tbody tr > th')).toEqual(
      Array.from({ length: PROJECTION_SHARDS }, (_, i) => String(i)),
    );
    const orgShard = await cellTexts(page, `.generation[data-generation="1"] tr[data-shard="${shard}"] > *`);
    expect(orgShard.slice(0, 4)).toEqual([String(shard), String(events.length), '0', '0.0']);
    expect(orgShard[4]).not.toBe('nobody');
    expect(await page.textContent('.generation[data-generation="1"] h3')).toBe('Generation 1 (live, served)');

    // The DLQ by reason, the most frequent first.
    await waitFor(page, '#dlq-body tr', { count: 2 }, 30000);
    expect(await cellTexts(page, '#dlq-body tr > *')).toEqual([
      'invalid_json',
      '2',
      `${stack.settings.topics.calls}: 1, ${stack.settings.topics.validations}: 1`,
      'invalid_data',
      '1',
      `${stack.settings.topics.validations}: 1`,
    ]);
    expect(await page.textContent('#dlq-meta')).toMatch(
      new RegExp(`^3 message\\(s\\) in ${stack.settings.topics.dlq.replace(/[.]/g, '\\.')}, newest at `),
    );

    // A replay: a building generation is listed with its progress, a labelled progress bar.
    const building = await createBuildingGeneration(stack.db);
    await waitFor(page, `.generation[data-generation="${building}"] label`, { includes: 'Replay' }, 30000);
    // Label and bar read together (the page redraws every 5 s).
    const replay = await page.evaluate((g) => {
      const doc = (globalThis as unknown as { document: PageDocument }).document;
      const bar = doc.querySelector(`progress#replay-${g}`) as unknown as { value: number; max: number } | null;
      const label = doc.querySelector(`.generation[data-generation="${g}"] label`) as unknown as {
        textContent: string | null;
        htmlFor: string;
      } | null;
      return {
        label: (label?.textContent ?? '').trim(),
        labelFor: label?.htmlFor ?? null,
        value: bar?.value ?? null,
        max: bar?.max ?? null,
      };
    }, building);
    expect(replay.label).toMatch(
      new RegExp(`^Replay into generation ${building}: [\\d.]+% \\(\\d+ of ${events.length} events\\)$`),
    );
    expect(replay.value).toBe(Number(/: ([\d.]+)%/.exec(replay.label)![1]));
    expect(replay.max).toBe(100);
    expect(replay.labelFor).toBe(`replay-${building}`);

    // A health change on the topic reaches the page over server-sent events, without a reload.
    await waitFor(page, '#feed-state[data-state="following"]', { count: 1 }, 30000);
    await stack.producer.send({
      topic: stack.settings.topics.health,
      acks: -1,
      messages: [
        {
          key: `${ORG}:paystack_gh`,
          value: JSON.stringify({
            event_id: randomUUID(),
            type: 'connection.health_changed',
            schema_version: 1,
            org_id: ORG,
            connection_id: 'paystack_gh',
            occurred_at: new Date(NOW).toISOString(),
            data: { sequence: 1000, from: 'healthy', to: 'unhealthy', health_score: 12.34 },
          }),
        },
      ],
    });
    await waitFor(page, '#feed-list li', { includes: '#1000' }, 30000);
    const newest = ((await page.textContent('#feed-list li')) ?? '').replace(/\s+/g, ' ');
    expect(newest).toContain(`${ORG}/paystack_gh`);
    expect(newest).toContain('#1000 healthy → unhealthy 12.34');
    expect(newest).toContain('(after a gap)');
    await waitFor(page, 'tr[data-connection="paystack_gh"] .last-change', { includes: '#1000' }, 10000);
    expect(
      ((await page.textContent('tr[data-connection="paystack_gh"] .last-change')) ?? '').replace(/\s+/g, ' '),
    ).toMatch(/^#1000 healthy → unhealthy 12\.34 at /);

    // The README's picture (docs/ops-console.png): OPS_CONSOLE_SCREENSHOT=docs/ops-console.png.
    if (process.env.OPS_CONSOLE_SCREENSHOT)
      await page.screenshot({ path: process.env.OPS_CONSOLE_SCREENSHOT, fullPage: true });

    // Contrast: every text at least 4.5:1 on what is behind it (WCAG AA for normal text).
    const contrast = await lowestContrast(page);
    expect(contrast.ratio).toBeGreaterThanOrEqual(4.5);

    // Keyboard: the first Tab reaches the skip link, which moves focus to the console.
    await page.keyboard.press('Tab');
    expect((await focused(page)).text).toBe('Skip to the console');
    await page.keyboard.press('Enter');
    expect((await focused(page)).id).toBe('main');

    expect(errors).toEqual([]);
  });
});
