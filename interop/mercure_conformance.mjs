// Mercure conformance cases in a real browser: headless Chromium (Debian's,
// driven by playwright-core; no browser download) loads a page on the
// hub's own origin and runs EventSource and fetch from there, as Mercure's
// own conformance suite (conformance-tests/ in dunglas/mercure, 0.x line)
// does. That suite is AGPL-3.0-or-later, which this MIT/Apache repository
// cannot vendor, so these are equivalent cases written anew: the same
// dataset of selectors and topics, the same checks (received or not, a
// 200 with text/plain, the publisher's id as the body).
//
//   node mercure_conformance.mjs HUB_BASE SECRET [CHROMIUM]
//
// HUB_BASE is ssehub started with --jwt-key SECRET --anonymous. Prints
// `ok NAME` / `FAIL NAME: why`; exits 1 on any failure.

import { fail, finish, hs256, launch, ok } from './common.mjs';
import { randomBytes } from 'node:crypto';

const [hub, secret, exe = '/usr/bin/chromium'] = process.argv.slice(2);
if (!hub || !secret) {
  console.error('usage: node mercure_conformance.mjs HUB_BASE SECRET [CHROMIUM]');
  process.exit(2);
}

// An HS256 token with Mercure's claims, as Mercure's tooling mints them.
const token = (claims) => hs256(secret, claims);
const publisher = token({ mercure: { publish: ['*'], subscribe: ['*'] } });

const rnd = () => randomBytes(20).toString('hex');
const r = Array.from({ length: 6 }, rnd);
const cases = [
  { name: 'raw string', received: true, topics: [r[0]], selectors: [r[0]] },
  { name: 'multiple topics', received: true, topics: [rnd(), r[1]], selectors: [r[1]] },
  { name: 'multiple topic selectors', received: true, topics: [r[2]], selectors: ['foo', r[2]] },
  { name: 'URI', received: true, topics: [`https://example.net/foo/${r[3]}`], selectors: [`https://example.net/foo/${r[3]}`] },
  { name: 'URI template', received: true, topics: [`https://example.net/foo/${r[4]}`], selectors: ['https://example.net/foo/{random}'] },
  { name: 'nonmatching raw string', received: false, topics: ['will-not-match}'], selectors: ['another-name'] },
  { name: 'nonmatching URI', received: false, topics: ['https://example.net/foo/will-not-match}'], selectors: ['https://example.net/foo/another-name'] },
  { name: 'nonmatching URI template', received: false, topics: ['https://example.net/foo/will-not-match}'], selectors: ['https://example.net/bar/{var}'] },
  { name: 'private raw string', received: false, private: true, topics: [r[5]], selectors: [r[5]] },
  { name: 'private URI', received: false, private: true, topics: [`https://example.net/foo/p${r[3]}`], selectors: [`https://example.net/foo/p${r[3]}`] },
  { name: 'private URI template', received: false, private: true, topics: [`https://example.net/foo/p${r[4]}`], selectors: ['https://example.net/foo/{random}'] },
];

const browser = await launch(exe, ['--disable-quic']);
const page = await (await browser.newContext()).newPage();
// Same origin as the hub: whatever `/` answers (ssehub's console page on a
// loopback listener), the page's scripts run there.
const landing = await page.goto(`${hub}/`);
console.log(`# / answered ${landing?.status()} ${landing?.headers()['content-type'] ?? ''}`);

// In the page: subscribe, wait for the open, publish a form with the
// case's own id, then wait up to 2 s for that exact update.
async function runCase(c, id) {
  return page.evaluate(async ({ c, id, publisher }) => {
    const url = new URL('/.well-known/mercure', window.origin);
    c.selectors.forEach((s) => url.searchParams.append('topic', s));
    const form = new URLSearchParams();
    c.topics.forEach((t) => form.append('topic', t));
    form.set('id', id);
    form.set('data', `data for\n\n        ${c.name}`);
    if (c.private) form.set('private', 'on');
    const es = new EventSource(url);
    let received;
    const got = new Promise((resolve) => { received = resolve; });
    es.onmessage = (e) => {
      if (e.lastEventId === id && e.data === form.get('data')) received(true);
    };
    await new Promise((resolve, reject) => {
      es.onopen = resolve;
      setTimeout(() => reject(new Error('EventSource did not open')), 5000);
    });
    const resp = await fetch('/.well-known/mercure', {
      method: 'POST',
      headers: { Authorization: `Bearer ${publisher}` },
      body: form,
    });
    const body = await resp.text();
    const result = await Promise.race([got, new Promise((r) => setTimeout(r, 2000, false))]);
    es.close();
    return { received: result, status: resp.status, type: resp.headers.get('Content-Type'), body };
  }, { c, id, publisher });
}

for (const [i, c] of cases.entries()) {
  const name = `mercure-${c.name.replaceAll(' ', '-')}`;
  // Every case its own id: a reused one would be refused (409) and a
  // "not received" case would pass without an update ever published.
  const id = `urn:ssehub:conformance:${i}-${rnd()}`;
  try {
    const got = await runCase(c, id);
    // Every publish, received or not, must have been accepted as sent.
    if (got.status !== 200 || !/^text\/plain(?:$|;)/.test(got.type ?? '') || got.body !== id) {
      fail(name, `publish answered ${got.status} ${got.type} ${JSON.stringify(got.body)}, expected 200 text/plain ${JSON.stringify(id)}`);
    } else if (got.received !== c.received) {
      fail(name, `received=${got.received}, expected ${c.received}`);
    } else {
      ok(name, `published (200, id echoed), ${c.received ? 'received' : 'not received'}`);
    }
  } catch (e) {
    fail(name, String(e));
  }
}

// Reconnection: EventSource resumes with the publisher's id as Last-Event-ID.
try {
  const topic = `resume-${rnd()}`;
  const got = await page.evaluate(async ({ topic, publisher }) => {
    const post = (data, id) => fetch('/.well-known/mercure', {
      method: 'POST',
      headers: { Authorization: `Bearer ${publisher}` },
      body: new URLSearchParams({ topic, data, id }),
    }).then(async (r) => `${r.status} ${await r.text()}`);
    const answers = [await post('one', `${topic}-1`), await post('two', `${topic}-2`)];
    if (answers.join() !== `200 ${topic}-1,200 ${topic}-2`) return `publish answered ${JSON.stringify(answers)}`;
    const url = new URL('/.well-known/mercure', window.origin);
    url.searchParams.set('topic', topic);
    url.searchParams.set('lastEventID', `${topic}-1`);
    const es = new EventSource(url);
    const data = await new Promise((resolve) => {
      es.onmessage = (e) => resolve(`${e.lastEventId} ${e.data}`);
      setTimeout(resolve, 3000, 'nothing');
    });
    es.close();
    return data;
  }, { topic, publisher });
  if (got === `${topic}-2 two`) ok('mercure-lastEventID', 'replayed after a custom id');
  else fail('mercure-lastEventID', `got ${JSON.stringify(got)}`);
} catch (e) {
  fail('mercure-lastEventID', String(e));
}

await browser.close();
finish();
