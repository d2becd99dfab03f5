// Checks ssehub against the npm `eventsource` package.
//
//   node eventsource.mjs BASE_URL [3|2]
//
// 3 (default) is eventsource@3 (fetch based; request headers only through a
// custom `fetch`), 2 is eventsource@2 installed under the alias `eventsource2`
// (node:http based; `headers` option). Prints `ok NAME` / `FAIL NAME: why`
// lines and exits non-zero if any check failed.

import { EventSource as ES3 } from 'eventsource';
import ES2 from 'eventsource2';

const base = process.argv[2];
const ver = process.argv[3] === '2' ? 2 : 3;
if (!base) {
  console.error('usage: node eventsource.mjs BASE_URL [3|2]');
  process.exit(2);
}
const prefix = `eventsource${ver}`;
const run = Math.random().toString(36).slice(2, 8);
let failures = 0;

const ok = (name, note) => console.log(`ok ${prefix}-${name}${note ? ` (${note})` : ''}`);
const fail = (name, why) => {
  failures++;
  console.log(`FAIL ${prefix}-${name}: ${why}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (v) => JSON.stringify(v);

async function waitFor(pred, ms, step = 20) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (pred()) return true;
    await sleep(step);
  }
  return pred();
}

async function publish(topic, data, event) {
  const q = new URLSearchParams({ topic });
  if (event) q.set('event', event);
  const res = await fetch(`${base}/publish?${q}`, { method: 'POST', body: data });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`publish to ${topic} -> ${res.status} ${show(text)}`);
  return text.trim();
}

async function closeTopic(topic) {
  const res = await fetch(`${base}/close?topic=${encodeURIComponent(topic)}`, { method: 'POST' });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`close ${topic} -> ${res.status} ${show(text)}`);
}

const NAMES = ['message', 'greet', 'last', 'close', 'reset'];

// Opens an EventSource and records everything it does. `lastEventId`, if
// given, is sent as the Last-Event-ID header of the first request.
function open(url, lastEventId) {
  const t0 = Date.now();
  const rec = { events: [], errors: [], opens: 0, requests: [], t0 };
  let es;
  if (ver === 3) {
    let first = true;
    const countingFetch = async (input, init) => {
      const headers = { ...(init.headers || {}) };
      if (first && lastEventId !== undefined) headers['Last-Event-ID'] = lastEventId;
      first = false;
      const req = { t: Date.now() - t0, lastEventId: headers['Last-Event-ID'] ?? null, status: null };
      rec.requests.push(req);
      const res = await fetch(input, { ...init, headers });
      req.status = res.status;
      return res;
    };
    es = new ES3(url, { fetch: countingFetch });
  } else {
    const opts = lastEventId !== undefined ? { headers: { 'Last-Event-ID': lastEventId } } : {};
    es = new ES2(url, opts);
  }
  for (const name of NAMES) {
    es.addEventListener(name, (e) =>
      rec.events.push({ type: e.type, data: e.data, id: e.lastEventId, t: Date.now() - t0 }),
    );
  }
  es.onopen = () => rec.opens++;
  es.onerror = (e) =>
    rec.errors.push({
      t: Date.now() - t0,
      code: e.code ?? e.status ?? null,
      message: e.message ?? null,
      readyState: es.readyState,
    });
  rec.es = es;
  return rec;
}

async function opened(rec, name) {
  if (!(await waitFor(() => rec.es.readyState === 1, 3000))) {
    rec.es.close();
    throw new Error(`${name}: never opened (readyState ${rec.es.readyState}, errors ${show(rec.errors)})`);
  }
  // ssehub registers the subscriber before it answers; nothing more to wait for.
}

async function check(name, fn) {
  try {
    await fn();
  } catch (e) {
    fail(name, e && e.message ? e.message : String(e));
  }
}

// 1. Events arrive with the right type, data and lastEventId.
await check('receive', async () => {
  const topic = `es${ver}-recv-${run}`;
  const rec = open(`${base}/events?topic=${topic}`);
  await opened(rec, 'receive');
  const sent = [
    { type: 'greet', body: 'first\r\nsecond\r\nthird', data: 'first\nsecond\nthird' },
    { type: 'message', body: 'plain ünïcødé ✓ 🚀', data: 'plain ünïcødé ✓ 🚀' },
    { type: 'last', body: ' spaced\n\nend\n', data: ' spaced\n\nend\n' },
    { type: 'message', body: '', data: '' },
  ];
  for (const s of sent) s.id = await publish(topic, s.body, s.type === 'message' ? undefined : s.type);
  await waitFor(() => rec.events.length >= sent.length, 3000);
  await sleep(100);
  rec.es.close();
  const got = rec.events.map(({ type, data, id }) => ({ type, data, id }));
  const want = sent.map(({ type, data, id }) => ({ type, data, id }));
  if (show(got) !== show(want)) throw new Error(`got ${show(got)}, want ${show(want)}`);
  ok('receive', `${got.length} events incl. CRLF multi-line, unicode, leading space, trailing LF, empty data`);
});

// 2. Resume: close, publish what the client misses, reopen with Last-Event-ID.
for (const how of ['header', 'query']) {
  await check(`resume-${how}`, async () => {
    const topic = `es${ver}-resume-${how}-${run}`;
    const first = open(`${base}/events?topic=${topic}`);
    await opened(first, 'first connection');
    const ids = [];
    for (let i = 1; i <= 5; i++) ids.push(await publish(topic, `before ${i}`));
    await waitFor(() => first.events.length >= 5, 3000);
    first.es.close();
    if (first.events.length !== 5) throw new Error(`first connection got ${show(first.events)}`);
    const last = first.events[4].id;
    if (last !== ids[4]) throw new Error(`lastEventId ${show(last)} is not the published id ${ids[4]}`);
    const missed = [];
    for (let i = 1; i <= 3; i++) missed.push({ data: `missed ${i}`, id: await publish(topic, `missed ${i}`) });
    const url = `${base}/events?topic=${topic}` + (how === 'query' ? `&last_event_id=${last}` : '');
    const second = open(url, how === 'header' ? last : undefined);
    await opened(second, 'second connection');
    await waitFor(() => second.events.length >= 3, 3000);
    await sleep(300); // anything extra (a duplicate, a reset) would show up by now
    second.es.close();
    const got = second.events.map(({ type, data, id }) => ({ type, data, id }));
    const want = missed.map(({ data, id }) => ({ type: 'message', data, id }));
    if (show(got) !== show(want)) throw new Error(`after ${last} got ${show(got)}, want exactly ${show(want)}`);
    if (ver === 3 && how === 'header' && second.requests[0]?.lastEventId !== last)
      throw new Error(`request did not carry Last-Event-ID: ${show(second.requests)}`);
    ok(`resume-${how}`, `got exactly the 3 missed events after ${last}`);
  });
}

// 3. An id the hub cannot honour starts the stream with a `reset` event.
await check('reset', async () => {
  const topic = `es${ver}-reset-${run}`;
  await publish(topic, 'something');
  const rec = open(`${base}/events?topic=${topic}`, 'not-an-id');
  await opened(rec, 'reset');
  await waitFor(() => rec.events.length >= 1, 2000);
  await sleep(200);
  rec.es.close();
  const resets = rec.events.filter((e) => e.type === 'reset');
  if (resets.length !== 1 || rec.events[0].type !== 'reset')
    throw new Error(`want one reset event first, got ${show(rec.events)}`);
  ok('reset', `reset data ${show(resets[0].data)}, lastEventId ${show(resets[0].id)}`);
});

// 4. POST /close: the `close` event, the stream ends, the automatic
// reconnect gets 204 and the EventSource stops for good.
await check('close-204', async () => {
  const topic = `es${ver}-close-${run}`;
  const rec = open(`${base}/events?topic=${topic}`);
  await opened(rec, 'close');
  const id = await publish(topic, 'before close');
  await waitFor(() => rec.events.length >= 1, 2000);
  const tClose = Date.now() - rec.t0;
  await closeTopic(topic);
  const gotClose = await waitFor(() => rec.events.some((e) => e.type === 'close'), 3000);
  const stopped = await waitFor(() => rec.es.readyState === 2, 4000);
  const tStopped = Date.now() - rec.t0;
  await sleep(1500); // a client that did not stop would reconnect again by now (retry is <= 700ms)
  const state = rec.es.readyState;
  rec.es.close();
  const detail = `events ${show(rec.events)}, errors ${show(rec.errors)}, requests ${show(rec.requests)}, close posted at ${tClose}ms, readyState ${state}`;
  const closeEv = rec.events.find((e) => e.type === 'close');
  if (!gotClose) throw new Error(`no close event; ${detail}`);
  if (closeEv.data !== topic) throw new Error(`close event data ${show(closeEv.data)}, want ${show(topic)}; ${detail}`);
  if (rec.events[0].id !== id) throw new Error(`first event id ${rec.events[0].id}, want ${id}; ${detail}`);
  if (!stopped || state !== 2) throw new Error(`readyState not CLOSED after the reconnect; ${detail}`);
  if (ver === 3) {
    const statuses = rec.requests.map((r) => r.status);
    if (show(statuses) !== show([200, 204]))
      throw new Error(`want one 200 then one 204 request, got ${show(statuses)}; ${detail}`);
    const gap = rec.requests[1].t - closeEv.t;
    if (gap < 400 || gap > 1500) throw new Error(`reconnect came ${gap}ms after the close event, retry is 500-700ms; ${detail}`);
    const last204 = rec.errors.at(-1);
    ok('close-204', `close event data ${show(closeEv.data)}; reconnect ${gap}ms later sent Last-Event-ID ${show(rec.requests[1].lastEventId)}, got 204; error event code=${last204?.code} message=${show(last204?.message)}; readyState CLOSED at ${tStopped}ms, no further request in 1.5s`);
  } else {
    const codes = rec.errors.map((e) => e.code);
    if (codes.at(-1) !== 204) throw new Error(`want the last error to carry status 204; ${detail}`);
    ok('close-204', `close event data ${show(closeEv.data)}; errors ${show(rec.errors)}; readyState CLOSED, stays closed`);
  }
});

process.exit(failures ? 1 : 0);
