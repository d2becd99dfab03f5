// Checks the client module ssehub serves at /ssehub.js in headless Chromium,
// where EventSource gives up:
//   - a proxy answers 502 for 3 s: ssehub.js comes back and gets every event
//     published meanwhile, no gap, no duplicate; a native EventSource on the
//     same page ends CLOSED;
//   - the token expires and the hub answers 401: the token callback gives a
//     new one and the stream resumes without a gap;
//   - a proxy stops forwarding bytes but keeps the connection: ssehub.js
//     notices within its stall timeout (twice the announced heartbeat) and
//     reconnects;
//   - with `storageKey`, a reloaded page resumes from the id it had;
//   - 204 and a `close` event stop it for good: no further requests.
//
//   node browser_client.mjs HUB_BASE AUTH_HUB_BASE AUTH_SECRET [CHROMIUM]
//
// HUB_BASE is ssehub with --heartbeat 1s --retry 500ms --retry-jitter 200ms;
// AUTH_HUB_BASE the same with --subscriber-jwt-key AUTH_SECRET. Each is
// reached through a proxy of this script's, which also serves the test page,
// so the page, /ssehub.js and the streams share one origin. Tokens are
// minted here with node's crypto (HS256), not by ssehub's code.
// Prints `ok NAME` / `FAIL NAME: why`; exits 1 on any failure.

import { check, fail, finish, hs256, launch, ok, run, show, sleep, until } from './common.mjs';
import http from 'node:http';

const [hub, authHub, secret, exe = '/usr/bin/chromium'] = process.argv.slice(2);
if (!hub || !authHub || !secret) {
  console.error('usage: node browser_client.mjs HUB_BASE AUTH_HUB_BASE AUTH_SECRET [CHROMIUM]');
  process.exit(2);
}

async function publish(base, topic, data) {
  const res = await fetch(`${base}/publish?topic=${encodeURIComponent(topic)}`, { method: 'POST', body: data });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`publish -> ${res.status} ${show(text)}`);
  return text.trim();
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>ssehub.js test</title>
<link rel="icon" href="data:,">
<script type="module">
import { SSEHub } from '/ssehub.js';
window.SSEHub = SSEHub;
window.ready = true;
</script>`;

// An HTTP/1.1 proxy in front of one hub. `mode` '502' answers every
// /events request as a failing load balancer would; stall() stops
// forwarding on the streams open now, keeping their connections open.
function proxy(target) {
  const p = { mode: 'pass', log: [], live: new Set() };
  p.server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/__test/page.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(PAGE);
    }
    if (url.pathname === '/__test/token') {
      const ttl = Number(url.searchParams.get('ttl'));
      const exp = Math.floor(Date.now() / 1000) + ttl;
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      return res.end(hs256(secret, { mercure: { subscribe: ['*'] }, exp }));
    }
    const entry = { path: req.url, lastEventId: req.headers['last-event-id'] || '', at: Date.now(), status: 0 };
    if (url.pathname === '/events') p.log.push(entry);
    if (p.mode === '502' && url.pathname === '/events') {
      entry.status = 502;
      res.writeHead(502, { 'content-type': 'text/html' });
      return res.end('<html><body><h1>502 Bad Gateway</h1></body></html>\n');
    }
    const up = http.request(new URL(req.url, target), { method: req.method, headers: req.headers }, (ur) => {
      entry.status = ur.statusCode;
      res.writeHead(ur.statusCode, ur.headers);
      res.flushHeaders();
      const conn = { ur, res, stalled: false };
      p.live.add(conn);
      ur.on('data', (c) => { if (!conn.stalled) res.write(c); });
      ur.on('end', () => { p.live.delete(conn); if (!conn.stalled) res.end(); });
      ur.on('error', () => res.destroy());
      res.on('close', () => { p.live.delete(conn); ur.destroy(); });
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    req.pipe(up);
  });
  p.drop = () => { for (const c of p.live) { c.res.destroy(); c.ur.destroy(); } p.live.clear(); };
  p.stall = () => { for (const c of p.live) c.stalled = true; };
  p.requests = (topic) => p.log.filter((e) => new URL(e.path, 'http://x').searchParams.getAll('topic').includes(topic));
  return new Promise((r) => p.server.listen(0, '127.0.0.1', () => {
    p.base = `http://127.0.0.1:${p.server.address().port}`;
    r(p);
  }));
}

const browser = await launch(exe);
const pageErrors = [];

async function open(px) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${px.base}/__test/page.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
  return { context, page };
}

// Starts an SSEHub (and optionally a native EventSource) on the page,
// recording what each gets in window.rec.
async function start(page, url, { native = false, tokenTtl = 0, options = {} } = {}) {
  await page.evaluate(({ url, native, tokenTtl, options }) => {
    const rec = (window.rec = { ids: [], data: [], states: [], errors: [], tokenCalls: [], named: [], nativeIds: [] });
    let cached = '';
    if (tokenTtl) {
      options.token = async ({ status }) => {
        rec.tokenCalls.push(status);
        // The first token is short-lived; a refresh asked for by a 401 is not.
        if (!cached || status === 401 || status === 403) {
          cached = await (await fetch(`/__test/token?ttl=${cached ? 60 : tokenTtl}`)).text();
        }
        return cached;
      };
    }
    const c = (window.client = new SSEHub(url, options));
    c.onmessage = (e) => { rec.ids.push(e.lastEventId); rec.data.push(e.data); };
    c.onevent = (e) => { if (e.type !== 'message') rec.named.push([e.type, e.data]); };
    c.addEventListener('statechange', () => rec.states.push(c.readyState));
    c.onerror = (e) => rec.errors.push(`${e.status} ${e.reason} @${Date.now()}`);
    if (native) {
      const es = (window.es = new EventSource(url));
      es.onmessage = (e) => rec.nativeIds.push(e.lastEventId);
    }
  }, { url, native, tokenTtl, options });
}
const rec = (page) => page.evaluate(() => ({ ...window.rec, state: window.client.readyState, nativeState: window.es?.readyState }));

const main = await proxy(hub);
const auth = await proxy(authHub);

// ---------------------------------------------------------------- 502
await check('client-survives-502', async () => {
  const topic = `outage-${run}`;
  const { context, page } = await open(main);
  await start(page, `/events?topic=${topic}`, { native: true, options: { maxRetry: 1000 } });
  const opened = await until(async () => {
    const r = await rec(page);
    return r.state === 1 && r.nativeState === 1;
  }, 5000);
  if (!opened) throw new Error(`did not open: ${show(await rec(page))}`);
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await publish(hub, topic, `before ${i}`));
  await until(async () => (await rec(page)).nativeIds.length === 3, 3000);
  // The load balancer fails for 3 s, dropping what it carried.
  main.mode = '502';
  main.drop();
  const outage = Date.now();
  let i = 0;
  while (Date.now() - outage < 3000) {
    ids.push(await publish(hub, topic, `during ${i++}`));
    await sleep(250);
  }
  main.mode = 'pass';
  for (let j = 0; j < 3; j++) ids.push(await publish(hub, topic, `after ${j}`));
  await until(async () => (await rec(page)).ids.length >= ids.length, 8000);
  await sleep(300);
  const r = await rec(page);
  const bad = main.requests(topic).filter((e) => e.status === 502).length;
  if (show(r.ids) !== show(ids)) {
    fail('client-survives-502', `got ${r.ids.length} of ${ids.length} events; got ${show(r.ids)}, want ${show(ids)}; errors ${show(r.errors)}`);
  } else if (bad < 1) {
    fail('client-survives-502', `no request met the 502 (${show(main.requests(topic))})`);
  } else {
    ok('client-survives-502', `${ids.length} events in order, no gap, no duplicate, across ${bad} answers of 502; state ${r.state}`);
  }
  if (r.nativeState === 2) {
    ok('eventsource-closed-by-502', `native EventSource on the same page: CLOSED after ${r.nativeIds.length} events`);
  } else {
    fail('eventsource-closed-by-502', `native EventSource readyState ${r.nativeState}, expected 2 (CLOSED)`);
  }
  await page.evaluate(() => { window.client.close(); window.es.close(); });
  await context.close();
});

// ---------------------------------------------------------------- token refresh
await check('client-token-refresh', async () => {
  const topic = `token-${run}`;
  const { context, page } = await open(auth);
  // The first token lives 1 s: the hub ends the stream then, and answers
  // 401 once the 5 s leeway is past; the callback must mint a new one.
  await start(page, `/events?topic=${topic}`, { tokenTtl: 1, options: { maxRetry: 1000 } });
  if (!(await until(async () => (await rec(page)).state === 1, 5000))) {
    throw new Error(`did not open: ${show(await rec(page))}`);
  }
  const ids = [];
  const started = Date.now();
  while (Date.now() - started < 9000) {
    ids.push(await publish(authHub, topic, `t${ids.length}`));
    await sleep(300);
    if ((await rec(page)).tokenCalls.includes(401) && auth.requests(topic).at(-1)?.status === 200) break;
  }
  for (let j = 0; j < 2; j++) ids.push(await publish(authHub, topic, `after ${j}`));
  await until(async () => (await rec(page)).ids.length >= ids.length, 6000);
  const r = await rec(page);
  const statuses = auth.requests(topic).map((e) => e.status);
  if (!statuses.includes(401)) {
    fail('client-token-refresh', `the hub never answered 401; statuses ${show(statuses)}`);
  } else if (!r.tokenCalls.includes(401)) {
    fail('client-token-refresh', `the token callback was not asked to refresh after the 401; calls ${show(r.tokenCalls)}`);
  } else if (show(r.ids) !== show(ids)) {
    fail('client-token-refresh', `got ${show(r.ids)}, want ${show(ids)}; statuses ${show(statuses)}`);
  } else if (r.state !== 1) {
    fail('client-token-refresh', `not open after the refresh: state ${r.state}`);
  } else {
    ok('client-token-refresh', `statuses ${statuses.join(',')}; token calls ${show(r.tokenCalls)}; ${ids.length} events, no gap`);
  }
  await page.evaluate(() => window.client.close());
  await context.close();
});

// ---------------------------------------------------------------- stall
await check('client-notices-stall', async () => {
  const topic = `stall-${run}`;
  const { context, page } = await open(main);
  await start(page, `/events?topic=${topic}`);
  if (!(await until(async () => (await rec(page)).state === 1, 5000))) {
    throw new Error(`did not open: ${show(await rec(page))}`);
  }
  const first = await publish(hub, topic, 'first');
  await until(async () => (await rec(page)).ids.length === 1, 3000);
  const before = main.requests(topic).length;
  main.stall();
  const stalled = Date.now();
  const during = await publish(hub, topic, 'during the stall');
  const back = await until(() => main.requests(topic).length > before && main.requests(topic).at(-1).status === 200, 8000);
  const took = Date.now() - stalled;
  await until(async () => (await rec(page)).ids.length === 2, 3000);
  const r = await rec(page);
  const again = main.requests(topic).at(-1);
  // --heartbeat 1s: ssehub-heartbeat 1000, so the stall timeout is 2 s
  // from the last byte, which came before the stall: the client must
  // give up on the connection within 2 s of it (plus timer slack), then
  // comes back after its retry: (500-700 ms).
  const gaveUp = r.errors.map((e) => / stalled @(\d+)$/.exec(e)).find(Boolean);
  const detected = gaveUp ? Number(gaveUp[1]) - stalled : NaN;
  if (!back) {
    fail('client-notices-stall', `no reconnect within 8 s of the stall; ${show(r)}`);
  } else if (!(detected <= 2600)) {
    fail('client-notices-stall', `gave up on the stalled connection ${detected} ms after the stall (errors ${show(r.errors)}), want within the 2 s stall timeout`);
  } else if (show(r.ids) !== show([first, during]) || again.lastEventId !== first) {
    fail('client-notices-stall', `got ${show(r.ids)} want ${show([first, during])}; reconnect sent Last-Event-ID ${show(again.lastEventId)}`);
  } else {
    ok('client-notices-stall', `gave up ${detected} ms after bytes stopped, back ${took} ms after (Last-Event-ID ${again.lastEventId}); the event sent during the stall arrived`);
  }
  await page.evaluate(() => window.client.close());
  await context.close();
});

// ---------------------------------------------------------------- page reload
await check('client-resumes-after-reload', async () => {
  const topic = `reload-${run}`;
  const { context, page } = await open(main);
  const options = { storageKey: `ssehub-${topic}` };
  await start(page, `/events?topic=${topic}`, { options });
  if (!(await until(async () => (await rec(page)).state === 1, 5000))) {
    throw new Error(`did not open: ${show(await rec(page))}`);
  }
  const seen = await publish(hub, topic, 'before the reload');
  await until(async () => (await rec(page)).ids.length === 1, 3000);
  // The page goes away; two events are published before it is back.
  await page.goto('about:blank');
  const missed = [await publish(hub, topic, 'missed 1'), await publish(hub, topic, 'missed 2')];
  await page.goto(`${main.base}/__test/page.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
  await start(page, `/events?topic=${topic}`, { options });
  await until(async () => (await rec(page)).ids.length >= 2, 5000);
  const r = await rec(page);
  const sent = main.requests(topic).at(-1).lastEventId;
  if (sent !== seen || show(r.ids) !== show(missed)) {
    fail('client-resumes-after-reload', `after the reload sent Last-Event-ID ${show(sent)} (want ${seen}) and got ${show(r.ids)}, want ${show(missed)}`);
  } else {
    ok('client-resumes-after-reload', `storageKey kept ${seen} in sessionStorage; the reloaded page got exactly the 2 events it missed`);
  }
  await page.evaluate(() => window.client.close());
  await context.close();
});

// ---------------------------------------------------------------- stopping for good
await check('client-stops-on-close', async () => {
  const topic = `closing-${run}`;
  const { context, page } = await open(main);
  await start(page, `/events?topic=${topic}`);
  if (!(await until(async () => (await rec(page)).state === 1, 5000))) {
    throw new Error(`did not open: ${show(await rec(page))}`);
  }
  const res = await fetch(`${hub}/close?topic=${topic}`, { method: 'POST' });
  if (res.status !== 200) throw new Error(`close -> ${res.status}`);
  await until(async () => (await rec(page)).state === 2, 3000);
  const n = main.requests(topic).length;
  await sleep(2500);
  const r = await rec(page);
  const later = main.requests(topic).length - n;
  if (r.state !== 2 || show(r.named) !== show([['close', topic]]) || later !== 0) {
    fail('client-stops-on-close', `state ${r.state}, named events ${show(r.named)}, ${later} requests after the close`);
  } else {
    ok('client-stops-on-close', `close event, readyState CLOSED, no request in the 2.5 s after`);
  }
  // The topic is closed now: a new client gets 204 and stops at once.
  await start(page, `/events?topic=${topic}`);
  await until(async () => (await rec(page)).state === 2, 3000);
  const m = main.requests(topic).length;
  await sleep(2500);
  const r2 = await rec(page);
  const statuses = main.requests(topic).slice(n).map((e) => e.status);
  if (r2.state !== 2 || show(statuses) !== show([204]) || main.requests(topic).length !== m) {
    fail('client-stops-on-204', `state ${r2.state}, statuses after the close ${show(statuses)}`);
  } else {
    ok('client-stops-on-204', 'one request answered 204, readyState CLOSED, no request in the 2.5 s after');
  }
  await context.close();
});

if (pageErrors.length) fail('client-page-errors', show(pageErrors));
else ok('client-page-errors', 'no uncaught error on the test pages');

await browser.close();
main.server.close();
auth.server.close();
finish();
