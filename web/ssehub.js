// ssehub.js: an EventSource that does not give up. Served by ssehub at
// /ssehub.js; no dependencies, no build step. MIT OR Apache-2.0.
//
//   import { SSEHub } from '/ssehub.js';
//   const es = new SSEHub('/events?topic=news', { token: async () => myToken() });
//   es.onmessage = (e) => show(e.data);
//
// It speaks the same events as EventSource (open, message, named events,
// error) and also:
// - retries where EventSource gives up: 5xx, 408, 429, network errors, a
//   wrong content type, and 401/403 when `token` is a function (called again
//   to refresh); any other status stops it with an `error` event;
//   backoff with jitter, never sooner than the server's `retry:`;
// - stops for good only on 204, on a `close` event for its last topic, or
//   close();
// - sends Last-Event-ID itself on every reconnect, and with `storageKey`
//   keeps it in sessionStorage so a page reload resumes too;
// - sends `Authorization: Bearer` from `token` (a string, or a function
//   called before every connect with {status}: the 401/403 that caused
//   the call, else 0);
// - sees the heartbeat comments and reconnects after `stallTimeout` ms
//   without a byte (default: twice the heartbeat the server announces in
//   its `ssehub-heartbeat` header, else 45 s);
// - `reset` and `close` arrive as events (and onreset, onclose);
//   `statechange` fires whenever readyState changes; `onevent` sees every
//   event whatever its name.

export class SSEHub extends EventTarget {
  constructor(url, options = {}) {
    super();
    const o = (this.options = options);
    this.url = new URL(url, globalThis.location?.href).href;
    this.readyState = 0;
    this.retry = o.retry || 3000;
    this.topics = new Set(new URL(this.url).searchParams.getAll('topic'));
    this.lastEventId = o.lastEventId || (o.storageKey && sessionStorage.getItem(o.storageKey)) || '';
    this._fails = 0;
    this._refused = 0;
    this._stall = o.stallTimeout || 45000;
    this._connect();
  }

  close() {
    this._stop();
  }

  _emit(ev) {
    this.dispatchEvent(ev);
    this._call(this['on' + ev.type], ev);
  }

  // Like dispatchEvent, a throwing handler is reported, not let loose on
  // the connection loop (which would stop reconnecting).
  _call(f, ev) {
    try {
      if (typeof f === 'function') f.call(this, ev);
    } catch (e) {
      setTimeout(() => { throw e; });
    }
  }

  _state(s) {
    if (this.readyState !== s) {
      this.readyState = s;
      this._emit(new Event('statechange'));
    }
  }

  _error(status, reason) {
    this._emit(Object.assign(new Event('error'), { status, reason }));
  }

  _stop(status, reason) {
    if (this.readyState === 2) return;
    clearTimeout(this._timer);
    clearTimeout(this._wait);
    this._ctrl?.abort();
    if (reason) this._error(status, reason);
    this._state(2);
  }

  // Aborts the connection unless a byte arrives within the stall timeout.
  _arm() {
    clearTimeout(this._timer);
    const ctrl = this._ctrl;
    this._timer = setTimeout(() => ctrl.abort(new Error('stalled')), this._stall);
  }

  async _connect() {
    if (this.readyState === 2) return;
    this._state(0);
    const o = this.options;
    const ctrl = (this._ctrl = new AbortController());
    let opened = false;
    let status = 0;
    try {
      const headers = { Accept: 'text/event-stream' };
      if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
      const refresh = typeof o.token === 'function';
      const token = refresh ? await o.token({ status: this._refused }) : o.token;
      if (token) headers.Authorization = 'Bearer ' + token;
      if (this.readyState === 2) return;
      this._arm();
      const res = await fetch(this.url, {
        headers,
        signal: ctrl.signal,
        cache: 'no-store',
        credentials: o.withCredentials ? 'include' : 'same-origin',
      });
      status = res.status;
      if (status === 204) return this._stop();
      if ((status === 401 || status === 403) && refresh) {
        this._refused = status;
        throw new Error('refused; refreshing the token');
      }
      if (status !== 200 && status < 500 && status !== 408 && status !== 429) {
        return this._stop(status, `HTTP ${status}: ${(await res.text()).trim()}`);
      }
      if (status !== 200) throw new Error(`HTTP ${status}`);
      if (!/^text\/event-stream/i.test(res.headers.get('content-type') || '')) {
        throw new Error('not text/event-stream');
      }
      const beat = +res.headers.get('ssehub-heartbeat');
      this._stall = o.stallTimeout || (beat > 0 ? 2 * beat : 45000);
      this._refused = 0;
      this._fails = 0;
      opened = true;
      this._state(1);
      this._emit(new Event('open'));
      await this._read(res.body.getReader());
    } catch (e) {
      if (this.readyState === 2) return;
      this._error(status, String(ctrl.signal.reason || e.message || e));
    }
    clearTimeout(this._timer);
    if (this.readyState === 2) return;
    this._state(0);
    // A stream that ran comes back after the server's retry (already
    // jittered per connection); a failure backs off, with jitter above it.
    const n = opened ? 0 : ++this._fails;
    const spread = Math.min(o.maxRetry || 30000, this.retry * (2 ** n - 1));
    this._wait = setTimeout(() => this._connect(), this.retry + Math.random() * spread);
  }

  async _read(reader) {
    const decoder = new TextDecoder();
    const LINE = /\r\n|\r|\n/g;
    let buf = '';
    let start = true;
    this._data = [];
    this._type = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done || this.readyState === 2) return;
      this._arm();
      buf += decoder.decode(value, { stream: true });
      if (start && buf) {
        if (buf.charCodeAt(0) === 0xfeff) buf = buf.slice(1);
        start = false;
      }
      let pos = 0;
      let m;
      LINE.lastIndex = 0;
      while ((m = LINE.exec(buf))) {
        // A CR at the very end may be the first half of a CRLF.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        this._line(buf.slice(pos, m.index));
        pos = LINE.lastIndex;
        if (this.readyState === 2) return;
      }
      buf = buf.slice(pos);
    }
  }

  // One line, by the SSE parsing rules (HTML, "event stream interpretation").
  _line(line) {
    if (!line) return this._dispatch();
    if (line[0] === ':') return;
    const c = line.indexOf(':');
    const field = c < 0 ? line : line.slice(0, c);
    let value = c < 0 ? '' : line.slice(c + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this._data.push(value);
    else if (field === 'event') this._type = value;
    else if (field === 'id' && !value.includes('\0')) this._id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retry = +value;
  }

  _dispatch() {
    if (this._id !== undefined && this._id !== this.lastEventId) {
      this.lastEventId = this._id;
      if (this.options.storageKey) sessionStorage.setItem(this.options.storageKey, this._id);
    }
    const data = this._data;
    const type = this._type || 'message';
    this._data = [];
    this._type = '';
    if (!data.length) return;
    const ev = new MessageEvent(type, { data: data.join('\n'), lastEventId: this.lastEventId, origin: new URL(this.url).origin });
    this._emit(ev);
    this._call(this.onevent, ev);
    // ssehub's `close` names the topic closed: the last one ends us.
    if (type === 'close' && this.topics.delete(ev.data) && !this.topics.size) this._stop();
  }
}

SSEHub.CONNECTING = 0;
SSEHub.OPEN = 1;
SSEHub.CLOSED = 2;
export default SSEHub;
