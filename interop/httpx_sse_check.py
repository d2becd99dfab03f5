"""Checks ssehub against httpx + httpx-sse (PyPI).

    python httpx_sse_check.py BASE_URL RETRY_MIN_MS RETRY_MAX_MS

Prints `ok NAME` / `FAIL NAME: why` lines; exits 1 if any check failed.
"""

import random
import string
import sys
import threading
import time

import httpx
from httpx_sse import connect_sse

BASE = sys.argv[1]
RETRY_MIN, RETRY_MAX = int(sys.argv[2]), int(sys.argv[3])
RUN = "".join(random.choice(string.ascii_lowercase) for _ in range(6))
failures = 0


def ok(name, note=""):
    print(f"ok {name}" + (f" ({note})" if note else ""), flush=True)


def fail(name, why):
    global failures
    failures += 1
    print(f"FAIL {name}: {why}", flush=True)


def publish(client, topic, data, event=None, batch=False):
    params = {"topic": topic}
    if event:
        params["event"] = event
    headers = {"Content-Type": "text/event-stream"} if batch else {}
    r = client.post(f"{BASE}/publish", params=params, content=data.encode(), headers=headers)
    if r.status_code != 200:
        raise AssertionError(f"publish -> {r.status_code} {r.text!r}")
    return r.text.strip().split("\n")


class Reader(threading.Thread):
    """Reads one stream with connect_sse until `want` real events or the deadline."""

    def __init__(self, client, url, want, headers=None, deadline=5.0):
        super().__init__(daemon=True)
        self.client, self.url, self.want, self.headers = client, url, want, headers or {}
        self.deadline = time.monotonic() + deadline
        self.events, self.first = [], None
        self.response = None
        self.error = None
        self.ended = False  # the server ended the stream
        self.ready = threading.Event()

    def run(self):
        try:
            with connect_sse(self.client, "GET", self.url, headers=self.headers) as es:
                self.response = es.response
                if es.response.status_code != 200:
                    self.ready.set()
                    return
                for sse in es.iter_sse():
                    if self.first is None:
                        self.first = sse  # the opening `retry:` field
                        self.ready.set()
                        continue
                    self.events.append(sse)
                    if len(self.events) >= self.want or time.monotonic() > self.deadline:
                        return
                self.ended = True
        except Exception as e:  # noqa: BLE001 - reported as the check's failure
            self.error = e
        finally:
            self.ready.set()


def triples(events):
    return [(e.event, e.id, e.data) for e in events]


def stream_check(name, http2):
    client = httpx.Client(http1=not http2, http2=http2, timeout=httpx.Timeout(5.0))
    pub = httpx.Client(timeout=5.0)
    topic = f"py-{'h2' if http2 else 'h1'}-{RUN}"
    try:
        reader = Reader(client, f"{BASE}/events?topic={topic}", want=6)
        reader.start()
        if not reader.ready.wait(3) or reader.first is None:
            raise AssertionError(f"stream did not open: response={reader.response} error={reader.error!r}")
        r = reader.response
        version = r.http_version
        want_version = "HTTP/2" if http2 else "HTTP/1.1"
        if version != want_version:
            raise AssertionError(f"http_version {version}, want {want_version}")
        if r.headers.get("content-type") != "text/event-stream":
            raise AssertionError(f"content-type {r.headers.get('content-type')!r}")
        retry = reader.first.retry
        if retry is None or not RETRY_MIN <= retry <= RETRY_MAX:
            raise AssertionError(f"first SSE {reader.first!r}: retry {retry}, want {RETRY_MIN}..{RETRY_MAX}")
        want = []
        (i,) = publish(pub, topic, "line one\r\nline two\r\nline three", event="greet")
        want.append(("greet", i, "line one\nline two\nline three"))
        (i,) = publish(pub, topic, "ünïcødé ✓ 日本語 🚀")
        want.append(("message", i, "ünïcødé ✓ 日本語 🚀"))
        (i,) = publish(pub, topic, "cr\ronly\rlines", event="greet")
        want.append(("greet", i, "cr\nonly\nlines"))
        ids = publish(
            pub,
            topic,
            "event: alpha\ndata: a1\r\n\r\nevent: beta\ndata: b1\ndata: b2\n\ndata: plain\n\n",
            batch=True,
        )
        if len(ids) != 3:
            raise AssertionError(f"batch publish answered {ids!r}, want 3 ids one per line")
        want += [("alpha", ids[0], "a1"), ("beta", ids[1], "b1\nb2"), ("message", ids[2], "plain")]
        reader.join(5)
        got = triples(reader.events)
        if reader.error:
            raise AssertionError(f"reader error {reader.error!r}; got {got!r}")
        if got != want:
            raise AssertionError(f"got {got!r}, want {want!r}")
        ok(name, f"{version}, retry {retry}, {len(got)} events: names, ids, CRLF/CR multi-line, unicode, batch")
    except Exception as e:  # noqa: BLE001
        fail(name, str(e))
    finally:
        client.close()
        pub.close()


def resume_check(name):
    client = httpx.Client(timeout=5.0)
    topic = f"py-resume-{RUN}"
    try:
        ids = [publish(client, topic, f"e{n}")[0] for n in range(1, 6)]
        reader = Reader(client, f"{BASE}/events?topic={topic}", want=3, headers={"Last-Event-ID": ids[1]}, deadline=1.5)
        reader.start()
        reader.join(5)
        got = triples(reader.events)
        want = [("message", ids[n], f"e{n + 1}") for n in (2, 3, 4)]
        if reader.error or got != want:
            raise AssertionError(f"after {ids[1]} got {got!r} (error {reader.error!r}), want {want!r}")
        ok(name, f"Last-Event-ID {ids[1]} replayed exactly {len(got)} events")
    except Exception as e:  # noqa: BLE001
        fail(name, str(e))
    finally:
        client.close()


def close_check(name):
    client = httpx.Client(timeout=5.0)
    pub = httpx.Client(timeout=5.0)
    topic = f"py-close-{RUN}"
    try:
        # want=99: read on until the server ends the stream itself.
        reader = Reader(client, f"{BASE}/events?topic={topic}", want=99, deadline=4)
        reader.start()
        if not reader.ready.wait(3) or reader.first is None:
            raise AssertionError(f"stream did not open: {reader.response} {reader.error!r}")
        (i,) = publish(pub, topic, "last words")
        r = pub.post(f"{BASE}/close", params={"topic": topic})
        if r.status_code != 200:
            raise AssertionError(f"close -> {r.status_code} {r.text!r}")
        reader.join(4)
        if reader.is_alive():
            raise AssertionError(f"stream still open 4s after close; got {triples(reader.events)!r}")
        got = triples(reader.events)
        want = [("message", i, "last words"), ("close", i, topic)]
        # The close event carries no id: httpx-sse keeps the last id seen.
        if got != want or not reader.ended:
            raise AssertionError(f"got {got!r} ended={reader.ended} error={reader.error!r}, want {want!r} then end of stream")
        again = client.get(f"{BASE}/events", params={"topic": topic}, headers={"Last-Event-ID": i})
        if again.status_code != 204:
            raise AssertionError(f"reconnect -> {again.status_code} {again.text!r}, want 204")
        late = pub.post(f"{BASE}/publish", params={"topic": topic}, content=b"too late")
        if late.status_code != 410:
            raise AssertionError(f"publish to closed topic -> {late.status_code}, want 410")
        ok(name, f"close event data {topic!r}, stream ended, reconnect 204, publish 410")
    except Exception as e:  # noqa: BLE001
        fail(name, str(e))
    finally:
        client.close()
        pub.close()


stream_check("httpx-sse-h1", http2=False)
stream_check("httpx-sse-h2c", http2=True)
resume_check("httpx-sse-resume")
close_check("httpx-sse-close")
sys.exit(1 if failures else 0)
