// ops console: plain JS, no framework. Reads /api/* of the console server (apps/ops/src/commands/console.ts)
// and the live feed of health changes (/api/feed, server-sent events). Data is put in the page as text
// (textContent), never as HTML.
/* global document, location, history, fetch, EventSource, Node, URLSearchParams, setTimeout, clearTimeout, setInterval, clearInterval */
'use strict';

(function () {
  const REFRESH_MS = 5000;
  const FEED_ITEMS = 50;
  const SVG = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id);

  let org = new URLSearchParams(location.search).get('org') || '';
  let windowMinutes = 60;
  let refreshTimer = null;
  let soonTimer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const fmt = (n, digits) => (n === null || n === undefined ? '–' : Number(n).toFixed(digits));
  const count = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
  const badge = (status) => el('span', { class: `badge ${status}` }, status);
  const time = (iso) => el('time', { datetime: iso }, iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z'));

  async function getJson(path) {
    const res = await fetch(path, { cache: 'no-store' });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
    return body;
  }

  // Sparkline of scores 0-100 (one a minute, oldest first), with its numbers as its text alternative.
  function sparkline(scores, connectionId) {
    const w = 180;
    const h = 36;
    const pad = 3;
    const figure = el('figure', { class: 'spark' });
    if (scores.length === 0) {
      figure.append(el('figcaption', {}, 'no stream time yet'));
      return figure;
    }
    const x = (i) => pad + (i * (w - 2 * pad)) / Math.max(1, scores.length - 1);
    const y = (s) => pad + (1 - s / 100) * (h - 2 * pad);
    const now = scores[scores.length - 1];
    const low = Math.min(...scores);
    const high = Math.max(...scores);
    const label =
      `Health score of ${connectionId} at each of the last ${scores.length} minutes: ` +
      `${fmt(scores[0], 2)} at the start, ${fmt(now, 2)} now, lowest ${fmt(low, 2)}, highest ${fmt(high, 2)}`;
    const chart = svg('svg', {
      class: 'spark',
      width: w,
      height: h,
      viewBox: `0 0 ${w} ${h}`,
      role: 'img',
      'aria-label': label,
    });
    const title = svg('title');
    title.textContent = label;
    chart.append(title);
    // The status thresholds: healthy from 90, unhealthy below 60.
    for (const t of [90, 60]) chart.append(svg('line', { class: 'band', x1: pad, x2: w - pad, y1: y(t), y2: y(t) }));
    chart.append(
      svg('polyline', {
        class: 'line',
        points: scores.map((s, i) => `${x(i).toFixed(1)},${y(s).toFixed(1)}`).join(' '),
      }),
    );
    chart.append(svg('circle', { class: 'now', cx: x(scores.length - 1), cy: y(now), r: 2.5 }));
    figure.append(chart, el('figcaption', { 'aria-hidden': 'true' }, `${fmt(low, 0)}–${fmt(high, 0)}`));
    return figure;
  }

  // `#7 healthy → degraded 84.20`, then ` at <time>` unless the time is shown apart.
  function changeText(c, withTime = true) {
    const text = [`#${c.sequence} `, c.from ? badge(c.from) : '(new)', ' → ', badge(c.to), ` ${fmt(c.healthScore, 2)}`];
    return withTime ? [...text, ' at ', time(c.occurredAt)] : text;
  }

  // Connections -------------------------------------------------------------------------------------

  async function loadConnections() {
    const body = $('connections-body');
    const meta = $('connections-meta');
    if (!org) {
      body.replaceChildren();
      meta.textContent = 'Choose an org above to see its connections.';
      return;
    }
    const data = await getJson(`/api/connections?org=${encodeURIComponent(org)}`);
    meta.replaceChildren(
      `${data.connections.length} connection(s) of `,
      el('strong', {}, data.org),
      ` in read-model generation ${data.generation}, stream time ${data.stream_time ?? 'none yet'}. ` +
        `The score is evaluated at each minute of the last ${windowMinutes} from the calls still in the window.`,
    );
    body.replaceChildren(
      ...data.connections.map((c) =>
        el(
          'tr',
          { 'data-connection': c.connection_id },
          el('th', { scope: 'row' }, el('code', {}, c.connection_id)),
          el('td', {}, c.provider ?? '–', c.mode ? ` (${c.mode})` : ''),
          el('td', {}, c.status ?? '–'),
          el('td', {}, badge(c.health_status), c.capped ? ' capped' : ''),
          el('td', { class: 'num' }, fmt(c.health_score, 2)),
          el('td', { class: 'num' }, count(c.calls)),
          el('td', {}, sparkline(c.series, c.connection_id)),
          el('td', { class: 'last-change' }, ...(c.last_change ? changeText(c.last_change) : ['none seen'])),
        ),
      ),
    );
  }

  // Live feed ---------------------------------------------------------------------------------------

  function onChange(c) {
    const list = $('feed-list');
    const item = el(
      'li',
      { class: 'fresh' },
      time(c.occurredAt),
      ' ',
      el('code', {}, `${c.orgId}/${c.connectionId}`),
      ' ',
      ...changeText(c, false),
      c.gap ? ' (after a gap)' : '',
    );
    list.prepend(item);
    setTimeout(() => item.classList.remove('fresh'), 50);
    while (list.children.length > FEED_ITEMS) list.lastElementChild.remove();
    if (c.orgId !== org) return;
    const row = [...$('connections-body').rows].find((r) => r.dataset.connection === c.connectionId);
    if (row) {
      row.querySelector('.last-change').replaceChildren(...changeText(c));
      row.classList.add('changed');
      setTimeout(() => row.classList.remove('changed'), 50);
    }
    // The read model has moved too (or will shortly): read the org again.
    clearTimeout(soonTimer);
    soonTimer = setTimeout(() => refresh(['connections']), 500);
  }

  function openFeed() {
    const state = $('feed-state');
    const source = new EventSource('/api/feed');
    source.addEventListener('state', (e) => {
      const s = JSON.parse(e.data);
      state.textContent =
        s.state === 'following'
          ? `Following ${s.topic} (newest first).`
          : `${s.topic}: ${s.state}${s.error ? ` (${s.error})` : ''}`;
      state.dataset.state = s.state;
    });
    source.addEventListener('change', (e) => onChange(JSON.parse(e.data)));
    source.onerror = () => {
      state.textContent = 'Feed disconnected; reconnecting…';
      state.dataset.state = 'disconnected';
    };
  }

  // Lag per shard and replays -----------------------------------------------------------------------

  function bar(value, max) {
    const w = 80;
    const chart = svg('svg', { class: 'bar', width: w, height: 10, 'aria-hidden': 'true' });
    chart.append(svg('rect', { class: 'track', x: 0, y: 0, width: w, height: 10 }));
    chart.append(
      svg('rect', {
        class: 'fill',
        x: 0,
        y: 0,
        width: max > 0 ? Math.max(value > 0 ? 2 : 0, (value / max) * w) : 0,
        height: 10,
      }),
    );
    return chart;
  }

  async function loadLag() {
    const data = await getJson('/api/lag');
    const box = $('generations');
    box.replaceChildren(
      ...data.generations.map((g) => {
        const section = el('div', { class: 'generation', 'data-generation': g.generation });
        section.append(
          el('h3', {}, `Generation ${g.generation} (${g.status}${g.served ? ', served' : ''})`),
          el(
            'p',
            { class: 'muted' },
            `${count(g.events_applied)} events applied, stream time ${g.stream_time ?? 'none'}` +
              (g.behind_events === null
                ? ' (retired: not projected any more)'
                : `, behind by ${g.behind_at_least ? 'at least ' : ''}${count(g.behind_events)} events / ${fmt(g.behind_seconds, 1)} s`),
          ),
        );
        if (g.progress !== null) {
          const pct = Math.floor(g.progress * 1000) / 10;
          const id = `replay-${g.generation}`;
          section.append(
            el(
              'p',
              {},
              el(
                'label',
                { for: id },
                `Replay into generation ${g.generation}: ${pct}% (${count(g.events_applied)} of ${count(g.events_applied + g.behind_events)} events) `,
              ),
              el('progress', { id, max: 100, value: pct }, `${pct}%`),
            ),
          );
        }
        if (g.stall)
          section.append(
            el(
              'p',
              { class: 'error' },
              `${g.stall.stuck ? 'Stuck' : 'Failing'} on event ${g.stall.event_id}: ${g.stall.error}`,
            ),
          );
        if (g.shards.length > 0) {
          const max = Math.max(...g.shards.map((s) => s.behind_events));
          section.append(
            el(
              'div',
              { class: 'scroll' },
              el(
                'table',
                { class: 'shards' },
                el('caption', { class: 'sr-only' }, `Generation ${g.generation}: lag per shard`),
                el(
                  'thead',
                  {},
                  el(
                    'tr',
                    {},
                    el('th', { scope: 'col' }, 'Shard'),
                    el('th', { scope: 'col', class: 'num' }, 'Events applied'),
                    el('th', { scope: 'col', class: 'num' }, 'Behind (events)'),
                    el('th', { scope: 'col', class: 'num' }, 'Behind (s)'),
                    el('th', { scope: 'col' }, 'Held by'),
                  ),
                ),
                el(
                  'tbody',
                  {},
                  ...g.shards.map((s) =>
                    el(
                      'tr',
                      { 'data-shard': s.shard },
                      el('th', { scope: 'row' }, String(s.shard)),
                      el('td', { class: 'num' }, count(s.events_applied)),
                      el(
                        'td',
                        { class: 'num' },
                        bar(s.behind_events, max),
                        ` ${s.behind_at_least ? '≥' : ''}${count(s.behind_events)}`,
                      ),
                      el('td', { class: 'num' }, fmt(s.behind_seconds, 1)),
                      el('td', {}, g.served ? (s.holder ?? 'nobody') : '–'),
                    ),
                  ),
                ),
              ),
            ),
          );
        }
        return section;
      }),
    );
  }

  // DLQ ---------------------------------------------------------------------------------------------

  async function loadDlq() {
    const data = await getJson('/api/dlq');
    const following = data.follower.state === 'following';
    $('dlq-meta').textContent = following
      ? `${count(data.total)} message(s) in ${data.topic}${data.newest ? `, newest at ${data.newest}` : ''}.`
      : `${data.topic}: ${data.follower.state}${data.follower.error ? ` (${data.follower.error})` : ''}`;
    $('dlq-body').replaceChildren(
      ...data.by_reason.map((r) =>
        el(
          'tr',
          {},
          el('th', { scope: 'row' }, el('code', {}, r.reason)),
          el('td', { class: 'num' }, count(r.messages)),
          el(
            'td',
            {},
            Object.entries(r.topics)
              .map(([t, n]) => `${t}: ${count(n)}`)
              .join(', '),
          ),
        ),
      ),
    );
  }

  // --------------------------------------------------------------------------------------------------

  const loaders = { connections: loadConnections, lag: loadLag, dlq: loadDlq };

  async function refresh(which) {
    const errors = [];
    await Promise.all(
      (which || Object.keys(loaders)).map((name) =>
        loaders[name]().catch((error) => errors.push(`${name}: ${error.message}`)),
      ),
    );
    const status = $('refreshed');
    status.classList.toggle('error', errors.length > 0);
    status.textContent =
      errors.length > 0
        ? `Could not read ${errors.join('; ')}`
        : `Updated ${new Date().toISOString().slice(11, 19)} UTC; every ${REFRESH_MS / 1000} s.`;
  }

  function schedule() {
    clearInterval(refreshTimer);
    refreshTimer = setInterval(() => refresh(), REFRESH_MS);
  }

  async function start() {
    const config = await getJson('/api/config');
    windowMinutes = config.window_minutes;
    if (!org && config.org) org = config.org;
    $('org').value = org;
    $('org-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const input = $('org');
      if (!input.reportValidity()) return;
      org = input.value.trim();
      history.replaceState(null, '', `?org=${encodeURIComponent(org)}`);
      refresh(['connections']);
    });
    openFeed();
    await refresh();
    schedule();
    document.body.dataset.ready = 'true';
  }

  start().catch((error) => {
    $('refreshed').textContent = `Could not start: ${error.message}`;
    $('refreshed').classList.add('error');
  });
})();
