// Checks ssehub against a real browser EventSource: headless Chromium driven
// by playwright-core (no browser download; Debian's /usr/bin/chromium).
//
//   node browser.mjs HUB_BASE PAGE_BASE [CHROMIUM]
//
// HUB_BASE is ssehub (started with --cors-origin PAGE_BASE), PAGE_BASE serves
// page/es.html. Prints `ok NAME` / `FAIL NAME: why`; exits 1 on any failure.

import { check, fail, finish, launch, ok, run, show, sleep } from './common.mjs';
import net from 'node:net';

const [hub, pageBase, exe = '/usr/bin/chromium'] = process.argv.slice(2);
if (!hub || !pageBase) {
  console.error('usage: node browser.mjs HUB_BASE PAGE_BASE [CHROMIUM]');
  process.exit(2);
}

async function publish(topic, data, event) {
  const q = new URLSearchParams({ topic });
  if (event) q.set('event', event);
  const res = await fetch(`${hub}/publish?${q}`, { method: 'POST', body: data });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`publish -> ${res.status} ${show(text)}`);
  return text.trim();
}

// The page reaches ssehub through this TCP relay, so the test can cut the
// browser's connection (as a network failure would) and watch EventSource
// reconnect by itself. It is byte-transparent: ssehub sees a loopback peer.
const hubUrl = new URL(hub);
const relaySockets = new Set();
const relay = net.createServer((down) => {
  const up = net.connect(Number(hubUrl.port), hubUrl.hostname);
  relaySockets.add(down);
  relaySockets.add(up);
  down.pipe(up);
  up.pipe(down);
  const drop = () => { down.destroy(); up.destroy(); relaySockets.delete(down); relaySockets.delete(up); };
  down.on('error', drop).on('close', drop);
  up.on('error', drop).on('close', drop);
});
await new Promise((r) => relay.listen(0, '127.0.0.1', r));
const viaRelay = `http://127.0.0.1:${relay.address().port}`;
const cutConnections = () => { for (const s of [...relaySockets]) s.destroy(); };

const browser = await launch(exe);
const version = browser.version();

// Every /events request any page makes: url, method, headers, status.
const requests = [];
async function newPage() {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('request', (req) => {
    if (!req.url().startsWith(viaRelay)) return;
    const entry = { url: req.url().slice(viaRelay.length), method: req.method(), headers: req.headers(), status: null, t: Date.now() };
    requests.push(entry);
    // headers() has only what the page set; allHeaders() adds what the
    // network stack sent (Last-Event-ID on a reconnect).
    req.allHeaders().then((h) => { entry.headers = h; }, () => {});
    req.response().then((res) => {
      if (res) {
        entry.status = res.status();
        entry.acao = res.headers()['access-control-allow-origin'] ?? null;
      }
    }, () => {});
  });
  page.on('requestfailed', (req) => {
    const e = requests.find((r) => r.url === req.url().slice(viaRelay.length) && r.status === null);
    if (e) e.failure = req.failure()?.errorText;
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  return { context, page };
}
const consoleErrors = [];

async function entries(page) {
  const text = await page.locator('#log').textContent();
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function waitEntries(page, pred, ms) {
  const end = Date.now() + ms;
  let got = [];
  while (Date.now() < end) {
    got = await entries(page);
    if (pred(got)) return got;
    await sleep(50);
  }
  return got;
}

const events = (log) => log.filter((e) => e.kind === 'event').map(({ type, data, id }) => ({ type, data, id }));

const topic = `browser-${run}`;
const { context, page } = await newPage();
const pageUrl = (t, extra = '') => `${pageBase}/es.html?hub=${encodeURIComponent(viaRelay)}&topic=${t}${extra}`;
let sent = [];

await check('chromium-receive', async () => {
  await page.goto(pageUrl(topic));
  const opened = await waitEntries(page, (l) => l.some((e) => e.kind === 'open'), 5000);
  if (!opened.some((e) => e.kind === 'open'))
    throw new Error(`EventSource never opened: log ${show(opened)}, requests ${show(requests)}, console ${show(consoleErrors)}`);
  sent = [
    { type: 'greet', body: 'one\r\ntwo\r\nthree', data: 'one\ntwo\nthree' },
    { type: 'message', body: 'ünïcødé ✓ 日本語 🚀', data: 'ünïcødé ✓ 日本語 🚀' },
    { type: 'message', body: '  two leading spaces', data: '  two leading spaces' },
  ];
  for (const s of sent) s.id = await publish(topic, s.body, s.type === 'message' ? undefined : s.type);
  const log = await waitEntries(page, (l) => events(l).length >= sent.length, 3000);
  const want = sent.map(({ type, data, id }) => ({ type, data, id }));
  if (show(events(log)) !== show(want)) throw new Error(`got ${show(events(log))}, want ${show(want)}`);
  const first = requests.find((r) => r.url.includes(topic));
  ok('chromium-receive', `${version}; ${sent.length} events; response ACAO ${show(first?.acao)}`);
});

await check('chromium-resume-query', async () => {
  // A page loaded with ?last_event_id= (what a page can do on reload).
  const second = await context.newPage();
  await second.goto(pageUrl(topic, `&last_event_id=${sent[0].id}`));
  const log = await waitEntries(second, (l) => events(l).length >= 2, 3000);
  await sleep(300);
  const got = events(await entries(second));
  await second.close();
  const want = sent.slice(1).map(({ type, data, id }) => ({ type, data, id }));
  if (show(got) !== show(want)) throw new Error(`after ${sent[0].id} got ${show(got)} (log ${show(log)}), want ${show(want)}`);
  ok('chromium-resume-query', `last_event_id=${sent[0].id} replayed exactly ${got.length} events`);
});

await check('chromium-reconnect-last-event-id', async () => {
  // Cut the browser's connection at the relay, publish while it is away,
  // and let EventSource reconnect by itself after the retry delay: it must
  // send Last-Event-ID and get exactly the missed events.
  const before = requests.filter((r) => r.url.includes(topic)).length;
  const missed = [];
  cutConnections();
  for (let i = 1; i <= 2; i++) missed.push({ type: 'message', data: `while away ${i}`, id: await publish(topic, `while away ${i}`) });
  const n = sent.length + missed.length;
  const log = await waitEntries(page, (l) => events(l).length >= n, 8000);
  await sleep(300);
  const got = events(await entries(page)).slice(sent.length);
  const reconnects = requests.filter((r) => r.url.includes(topic)).slice(before);
  const ok200 = reconnects.find((r) => r.status === 200 && r.method === 'GET');
  const preflights = reconnects.filter((r) => r.method === 'OPTIONS');
  if (show(got) !== show(missed))
    throw new Error(`after reconnect got ${show(got)}, want ${show(missed)}; requests ${show(reconnects.map(({ method, status, failure, headers }) => ({ method, status, failure, lastEventId: headers['last-event-id'] })))}; log ${show(log.slice(-6))}`);
  ok('chromium-reconnect-last-event-id', `reconnect sent Last-Event-ID ${show(ok200?.headers['last-event-id'])}, ${preflights.length} preflight(s); got exactly the ${got.length} missed events`);
});

await check('chromium-close-204', async () => {
  const before = requests.filter((r) => r.url.includes(topic)).length;
  const logBefore = (await entries(page)).length;
  const res = await fetch(`${hub}/close?topic=${topic}`, { method: 'POST' });
  if (res.status !== 200) throw new Error(`close -> ${res.status}`);
  const log = await waitEntries(page, (l) => l.length > logBefore && l.at(-1).readyState === 2, 5000);
  await sleep(2000); // retry is <= 700ms: a browser that did not stop would be back by now
  const after = (await entries(page)).slice(logBefore);
  const state = await page.evaluate(() => window.es.readyState);
  const reqs = requests
    .filter((r) => r.url.includes(topic))
    .slice(before)
    .map(({ method, status, acao, failure, headers }) => ({ method, status, acao, failure, lastEventId: headers['last-event-id'] ?? null }));
  const detail = `log ${show(after)}, requests after close ${show(reqs)}, readyState ${state}`;
  const closeEv = after.find((e) => e.kind === 'event' && e.type === 'close');
  if (!closeEv) throw new Error(`no close event; ${detail}`);
  if (closeEv.data !== topic) throw new Error(`close data ${show(closeEv.data)}; ${detail}`);
  if (state !== 2) throw new Error(`EventSource not CLOSED; ${detail}`);
  const gets = reqs.filter((r) => r.method === 'GET');
  if (gets.length !== 1 || gets[0].status !== 204)
    throw new Error(`want exactly one reconnect answered 204; ${detail}`);
  ok('chromium-close-204', `close event, then one reconnect (Last-Event-ID ${show(gets[0].lastEventId)}) got 204 with ACAO ${show(gets[0].acao)}, readyState CLOSED, no further requests in 2s`);
});

await browser.close();
relay.close();
finish();
