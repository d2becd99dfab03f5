#!/usr/bin/env bash
# Interop checks: ssehub against real third-party clients.
#
#   interop/run.sh            (from anywhere; needs root for apt-get installs)
#
# Clients: curl (HTTP/1.1 and h2c prior knowledge), nghttp (nghttp2-client),
# npm `eventsource` 3.x and 2.x, Python httpx + httpx-sse (HTTP/1.1 and h2c),
# headless Chromium's EventSource driven by playwright-core, and PyJWT
# (tokens it mints for HS256, RS256 and ES256 accepted by --jwt-key-file).
# Chromium also checks a cross-origin EventSource withCredentials receiving
# private events on the authority of a cookie (browser_auth.mjs),
# Mercure's conformance cases on the hub's own origin (mercure_conformance.mjs,
# against --jwt-key '!ChangeThisMercureHubJWTSecretKey!' --anonymous), and over
# TLS (a certificate made per run by python cryptography): curl by ALPN, and
# Chromium with 20 EventSources on one page (HTTP/2 lifts the six-connection cap).
# The browser side: ssehub.js surviving a 502, token expiry and a stalled
# proxy, and stopping on 204 and close (browser_client.mjs); the console at /
# used as a person would, with screenshots (browser_console.mjs); --ui off.
# Installs what is missing from apt, npm and PyPI only (into interop/).
# Prints `ok NAME` / `FAIL NAME: why` per check, then `N passed, N failed`;
# exits non-zero if anything failed. Logs stay in $INTEROP_LOGS (printed).
#
# Environment: SSEHUB_BIN (binary to test; default target/release/ssehub,
# built if missing), INTEROP_KEEP_LOGS=1 (keep the log folder even on success).

set -uo pipefail
export LC_ALL=C.UTF-8

INTEROP=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$INTEROP")
BIN=${SSEHUB_BIN:-$ROOT/target/release/ssehub}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ssehub-interop.XXXXXX")
RESULTS=$WORK/results
RUN=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
RETRY_MIN=500 RETRY_MAX=700   # --retry 500ms --retry-jitter 200ms
: >"$RESULTS"
export INTEROP ROOT BIN WORK RESULTS RUN RETRY_MIN RETRY_MAX

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  if [[ -z ${INTEROP_KEEP_LOGS:-} ]] && ! grep -q '^FAIL' "$RESULTS" 2>/dev/null; then
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T_START=$SECONDS

# ---------------------------------------------------------------- reporting

pass() { echo "ok $1${2:+ ($2)}"; }
fail() { echo "FAIL $1: $2"; }
# The first bytes of a file, escaped, for failure messages.
esc() { python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); print(repr(d[:int(sys.argv[2])]) + ("..." if len(d) > int(sys.argv[2]) else ""))' "$1" "${2:-600}" 2>/dev/null || echo "(no file $1)"; }
export -f pass fail esc

# run_check NAME SECONDS COMMAND...: runs COMMAND under a timeout; its `ok` /
# `FAIL` lines are the results. A command that times out, or fails without
# saying why, is a FAIL for NAME with the tail of its output.
run_check() {
  local name=$1 secs=$2 log="$WORK/$1.log" rc lines
  shift 2
  timeout -k 5 "$secs" "$@" >"$log" 2>&1
  rc=$?
  lines=$(grep -E '^(ok|FAIL) ' "$log")
  [[ -n $lines ]] && echo "$lines" | tee -a "$RESULTS"
  if ((rc == 124 || rc == 137)); then
    echo "FAIL $name: timed out after ${secs}s; last output: $(tail -c 400 "$log" | tr '\n' '|')" | tee -a "$RESULTS"
  elif ((rc != 0)) && ! grep -q '^FAIL ' <<<"$lines"; then
    echo "FAIL $name: exited $rc; last output: $(tail -c 400 "$log" | tr '\n' '|')" | tee -a "$RESULTS"
  elif [[ -z $lines ]]; then
    echo "FAIL $name: reported nothing; output: $(tail -c 400 "$log" | tr '\n' '|')" | tee -a "$RESULTS"
  fi
}

# ---------------------------------------------------------------- installs

APT_UPDATED=
apt_install() { # PACKAGE COMMAND
  command -v "$2" >/dev/null && return 0
  echo "installing $1 (apt)"
  if [[ -z $APT_UPDATED ]]; then
    timeout 300 apt-get update >"$WORK/apt-update.log" 2>&1 || { echo "apt-get update failed: $(tail -3 "$WORK/apt-update.log")"; return 1; }
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y --no-install-recommends "$1" >"$WORK/apt-$1.log" 2>&1 \
    || { echo "apt-get install $1 failed: $(tail -3 "$WORK/apt-$1.log")"; return 1; }
  command -v "$2" >/dev/null
}

install_all() {
  if [[ ! -x $BIN ]]; then
    echo "building $BIN (cargo build --release)"
    (cd "$ROOT" && timeout 900 cargo build --release) >"$WORK/build.log" 2>&1 \
      || { fail build "cargo build --release failed: $(tail -5 "$WORK/build.log" | tr '\n' '|')" | tee -a "$RESULTS"; return 1; }
  fi
  HAVE_NGHTTP=1 HAVE_CHROMIUM=1 HAVE_NODE=1 HAVE_PY=1
  apt_install nghttp2-client nghttp || HAVE_NGHTTP=
  apt_install chromium chromium || HAVE_CHROMIUM=
  # npm: reinstall when package.json changed since the last install.
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs node && apt_install npm npm || HAVE_NODE=
  fi
  if [[ -n $HAVE_NODE ]] && { [[ ! -f $INTEROP/node_modules/.package-lock.json ]] || [[ $INTEROP/package.json -nt $INTEROP/node_modules/.package-lock.json ]]; }; then
    echo "installing npm packages into interop/node_modules"
    timeout 600 npm install --prefix "$INTEROP" --no-audit --no-fund >"$WORK/npm.log" 2>&1 \
      || { echo "npm install failed: $(tail -3 "$WORK/npm.log")"; HAVE_NODE=; }
  fi
  # Python: a venv with the pinned clients.
  local py=$INTEROP/.venv/bin/python
  if ! "$py" -c 'import httpx, httpx_sse, h2, jwt, cryptography' 2>/dev/null; then
    echo "installing httpx, httpx-sse, h2, PyJWT, cryptography into interop/.venv (pip)"
    { python3 -m venv "$INTEROP/.venv" && timeout 600 "$py" -m pip install -q -r "$INTEROP/requirements.txt"; } >"$WORK/pip.log" 2>&1 \
      || { echo "pip install failed: $(tail -3 "$WORK/pip.log")"; HAVE_PY=; }
  fi
  return 0
}

# ---------------------------------------------------------------- servers

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server LOGNAME EXTRA-ARGS...: starts ssehub on a free port, sets
# $PORT (SCHEME=https for a TLS server: its health check skips verification); fails if it does not answer /healthz as the process we started
# (another process may hold a guessed port: retried on a new one).
start_server() {
  local logname=$1 attempt pid i
  shift
  for attempt in 1 2 3; do
    PORT=$(free_port)
    # The command line wins over SSEHUB_* variables, but clear them anyway so
    # a token or origin from the caller's environment changes nothing.
    env $(env | sed -n 's/^\(SSEHUB_[A-Z0-9_]*\)=.*/-u \1/p') RUST_LOG=info \
      "$BIN" --listen "127.0.0.1:$PORT" --heartbeat 1s --retry 500ms --retry-jitter 200ms "$@" \
      >"$WORK/$logname.log" 2>&1 &
    pid=$!
    for i in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      if curl -sfk --max-time 1 "${SCHEME:-http}://127.0.0.1:$PORT/healthz" >/dev/null; then
        PIDS+=("$pid")
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  echo "ssehub did not start: $(tail -3 "$WORK/$logname.log" | tr '\n' '|')"
  return 1
}

# ---------------------------------------------------------------- curl / nghttp checks

# wait_grep FILE REGEX SECONDS
wait_grep() {
  local i
  for i in $(seq $((${3} * 20))); do
    grep -qE -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

post() { # URL [curl args...] -> body; fails on a non-200
  curl -sS --max-time 5 -f -X POST "$@"
}

# The body minus heartbeat comment lines and the opening `retry:` block;
# checks that block first. Writes the rest to $2.
split_opening() { # RAW OUT -> sets RETRY; non-zero with WHY set if malformed
  local raw=$1 out=$2 first second
  first=$(head -n1 "$raw")
  second=$(sed -n 2p "$raw")
  if [[ ! $first =~ ^retry:\ ([0-9]+)$ ]] || [[ -n $second ]]; then
    WHY="stream does not open with 'retry: N' and a blank line: $(esc "$raw" 200)"
    return 1
  fi
  RETRY=${BASH_REMATCH[1]}
  if ((RETRY < RETRY_MIN || RETRY > RETRY_MAX)); then
    WHY="retry: $RETRY is outside $RETRY_MIN..$RETRY_MAX (--retry 500ms --retry-jitter 200ms)"
    return 1
  fi
  sed '1,2d' "$raw" | grep -vx ':' >"$out"
  return 0
}

# curl subscribe + publish 3 events; byte-exact stream, ids, headers.
check_curl_stream() { # h1|h2
  local mode=$1 name=curl-$1 d topic=curl-$1-$RUN opts=(--http1.1) cpid id1 id2 id3
  [[ $mode == h2 ]] && opts=(--http2-prior-knowledge)
  d=$(mktemp -d "$WORK/$name.XXXX")
  curl -sN "${opts[@]}" --max-time 8 -D "$d/headers" -o "$d/raw" "$BASE/events?topic=$topic" &
  cpid=$!
  if ! wait_grep "$d/raw" '^retry: ' 3; then
    fail "$name-stream" "no 'retry:' within 3s; got $(esc "$d/raw") headers $(esc "$d/headers")"
    kill $cpid 2>/dev/null
    return 1
  fi
  id1=$(post "$BASE/publish?topic=$topic&event=greet" --data-binary $'first\r\nsecond\r\nthird') &&
    id2=$(post "$BASE/publish?topic=$topic" --data-binary 'plain ünïcødé ✓ 🚀') &&
    id3=$(post "$BASE/publish?topic=$topic&event=last" --data-binary $' spaced\n\nend\n') ||
    { fail "$name-stream" "publish failed"; kill $cpid; return 1; }
  wait_grep "$d/raw" "^id: $id3\$" 3
  sleep 0.2
  kill $cpid 2>/dev/null
  wait $cpid 2>/dev/null
  printf 'id: %s\nevent: greet\ndata: first\ndata: second\ndata: third\n\nid: %s\ndata: plain ünïcødé ✓ 🚀\n\nid: %s\nevent: last\ndata:  spaced\ndata: \ndata: end\ndata: \n\n' \
    "$id1" "$id2" "$id3" >"$d/want"
  if ! split_opening "$d/raw" "$d/events"; then
    fail "$name-stream" "$WHY"
  elif ! cmp -s "$d/events" "$d/want"; then
    fail "$name-stream" "events (heartbeats removed) $(esc "$d/events"), want $(esc "$d/want"); raw $(esc "$d/raw")"
  else
    pass "$name-stream" "retry $RETRY; 3 events byte-exact, ids $id1..$id3"
  fi

  # Headers.
  local h why=() status
  h=$(tr -d '\r' <"$d/headers" | tr 'A-Z' 'a-z')
  status=$(head -n1 <<<"$h")
  if [[ $mode == h1 ]]; then [[ $status == "http/1.1 200 ok" ]] || why+=("status line '$status'"); fi
  if [[ $mode == h2 ]]; then [[ $status =~ ^http/2\ 200 ]] || why+=("status line '$status'"); fi
  grep -qx 'content-type: text/event-stream' <<<"$h" || why+=("content-type: $(grep '^content-type:' <<<"$h" || echo missing)")
  grep -qx 'cache-control: no-cache' <<<"$h" || why+=("cache-control: $(grep '^cache-control:' <<<"$h" || echo missing)")
  grep -qx 'x-accel-buffering: no' <<<"$h" || why+=("x-accel-buffering: $(grep '^x-accel-buffering:' <<<"$h" || echo missing)")
  if [[ $mode == h2 ]]; then
    grep -q '^connection:' <<<"$h" && why+=("HTTP/2 response has '$(grep '^connection:' <<<"$h")'")
    grep -q '^transfer-encoding:' <<<"$h" && why+=("HTTP/2 response has '$(grep '^transfer-encoding:' <<<"$h")'")
  fi
  if ((${#why[@]})); then
    fail "$name-headers" "$(IFS=';'; echo "${why[*]}"); all headers: $(tr '\n' '|' <<<"$h")"
  else
    pass "$name-headers" "$(tail -n +2 <<<"$h" | grep -v '^date:' | grep -v '^$' | tr '\n' ',' | sed 's/,$//')"
  fi
}

# Heartbeats: an idle stream gets `:` comment lines about every second.
check_curl_heartbeat() {
  local d n
  d=$(mktemp -d "$WORK/curl-heartbeat.XXXX")
  curl -sN --max-time 2.6 -o "$d/raw" "$BASE/events?topic=idle-$RUN"
  split_opening "$d/raw" "$d/rest" || { fail curl-heartbeat "$WHY"; return 1; }
  n=$(grep -cx ':' "$d/raw")
  if ((n >= 2 && n <= 3)) && [[ ! -s $d/rest ]]; then
    pass curl-heartbeat "$n heartbeat lines ':' in 2.6s with --heartbeat 1s"
  else
    fail curl-heartbeat "$n heartbeat lines in 2.6s, want 2-3, nothing else: $(esc "$d/raw")"
  fi
}

# Resume with Last-Event-ID (header and query), over h1 and h2; batch publish.
check_curl_resume() {
  local d topic=curl-resume-$RUN ids mode opts how arg
  d=$(mktemp -d "$WORK/curl-resume.XXXX")
  ids=($(printf 'event: one\ndata: 1\n\ndata: 2a\ndata: 2b\n\nevent: three\ndata: 3\n\n' |
    post "$BASE/publish?topic=$topic" -H 'Content-Type: text/event-stream' --data-binary @-))
  if ((${#ids[@]} != 3)); then
    fail curl-batch "batch of 3 answered '${ids[*]}', want 3 ids one per line"
    return 1
  fi
  pass curl-batch "3 ids, one per line"
  printf 'id: %s\ndata: 2a\ndata: 2b\n\nid: %s\nevent: three\ndata: 3\n\n' "${ids[1]}" "${ids[2]}" >"$d/want"
  for mode in h1 h2; do
    opts=(--http1.1)
    [[ $mode == h2 ]] && opts=(--http2-prior-knowledge)
    for how in header query; do
      if [[ $how == header ]]; then
        curl -sN "${opts[@]}" --max-time 1 -H "Last-Event-ID: ${ids[0]}" -o "$d/raw-$mode-$how" "$BASE/events?topic=$topic"
      else
        curl -sN "${opts[@]}" --max-time 1 -o "$d/raw-$mode-$how" "$BASE/events?topic=$topic&last_event_id=${ids[0]}"
      fi
      if ! split_opening "$d/raw-$mode-$how" "$d/ev-$mode-$how"; then
        fail "curl-resume-$mode-$how" "$WHY"
      elif ! cmp -s "$d/ev-$mode-$how" "$d/want"; then
        fail "curl-resume-$mode-$how" "after ${ids[0]} got $(esc "$d/ev-$mode-$how"), want $(esc "$d/want")"
      else
        pass "curl-resume-$mode-$how" "replayed exactly the 2 events after ${ids[0]}"
      fi
    done
  done
  # An id that cannot be honoured: `reset` first.
  curl -sN --max-time 1 -H 'Last-Event-ID: not-a-real-id' -o "$d/raw-reset" "$BASE/events?topic=$topic"
  if split_opening "$d/raw-reset" "$d/ev-reset" && grep -qx 'event: reset' "$d/ev-reset" && [[ $(grep -c '^data: ' "$d/ev-reset") == 1 ]]; then
    pass curl-reset "$(esc "$d/ev-reset" 200)"
  else
    fail curl-reset "want a reset event; got $(esc "$d/raw-reset")"
  fi
}

# POST /close: `close` event, the stream ends by itself, reconnect 204 (h1
# and h2), publish 410, close again is fine.
check_curl_close() {
  local d topic=curl-close-$RUN cpid i code rc why=()
  d=$(mktemp -d "$WORK/curl-close.XXXX")
  { curl -sN --max-time 6 -o "$d/raw" "$BASE/events?topic=$topic"; echo $? >"$d/rc"; } &
  cpid=$!
  wait_grep "$d/raw" '^retry: ' 3 || { fail curl-close "stream did not open: $(esc "$d/raw")"; return 1; }
  local body
  body=$(post "$BASE/close?topic=$topic") || { fail curl-close "POST /close failed"; return 1; }
  wait $cpid
  rc=$(cat "$d/rc")
  split_opening "$d/raw" "$d/ev" || why+=("$WHY")
  printf 'event: close\ndata: %s\n\n' "$topic" >"$d/want"
  cmp -s "$d/ev" "$d/want" || why+=("stream after the opening was $(esc "$d/ev"), want $(esc "$d/want")")
  [[ $rc == 0 ]] || why+=("the stream did not end by itself (curl exit $rc, 28 = still open at --max-time 6)")
  if ((${#why[@]})); then
    fail curl-close "$(IFS=';'; echo "${why[*]}")"
  else
    pass curl-close "POST /close answered '$body'; stream got exactly 'event: close\\ndata: $topic\\n\\n' and ended"
  fi
  for mode in h1 h2; do
    local opts=(--http1.1)
    [[ $mode == h2 ]] && opts=(--http2-prior-knowledge)
    code=$(curl -s "${opts[@]}" --max-time 2 -o "$d/again-$mode" -w '%{http_code}' "$BASE/events?topic=$topic")
    if [[ $code == 204 && ! -s $d/again-$mode ]]; then
      pass "curl-closed-$mode-204"
    else
      fail "curl-closed-$mode-204" "GET /events on a closed topic answered $code body $(esc "$d/again-$mode")"
    fi
  done
  code=$(curl -s --max-time 2 -o "$d/pub" -w '%{http_code}' -X POST --data-binary x "$BASE/publish?topic=$topic")
  if [[ $code == 410 ]]; then pass curl-closed-publish-410 "body $(esc "$d/pub")"; else fail curl-closed-publish-410 "publish to a closed topic answered $code $(esc "$d/pub")"; fi
}

# nghttp: data over h2c (raw bytes), SETTINGS_MAX_CONCURRENT_STREAMS.
check_nghttp() {
  local d topic=ng-$RUN npid id why=()
  d=$(mktemp -d "$WORK/nghttp.XXXX")
  # nghttp block-buffers stdout into a file; stdbuf makes the data visible as it arrives.
  timeout 5 stdbuf -o0 nghttp "$BASE7/events?topic=$topic" >"$d/raw" 2>"$d/err" &
  npid=$!
  if ! wait_grep "$d/raw" '^retry: ' 3; then
    fail nghttp-data "no 'retry:' within 3s: $(esc "$d/raw") stderr $(esc "$d/err")"
  else
    id=$(post "$BASE7/publish?topic=$topic&event=greet" --data-binary $'over\r\nh2c ✓')
    wait_grep "$d/raw" "^data: h2c" 3
    sleep 0.1
    printf 'id: %s\nevent: greet\ndata: over\ndata: h2c ✓\n\n' "$id" >"$d/want"
    if split_opening "$d/raw" "$d/ev" && cmp -s "$d/ev" "$d/want"; then
      pass nghttp-data "retry $RETRY, event byte-exact"
    else
      fail nghttp-data "${WHY:-} got $(esc "$d/raw"), want after the opening $(esc "$d/want")"
    fi
  fi
  kill $npid 2>/dev/null
  wait $npid 2>/dev/null

  # -v shows the frames: the server's SETTINGS and the response headers.
  timeout 2 nghttp -v "$BASE7/events?topic=$topic-v" >"$d/v7" 2>&1
  timeout 2 nghttp -v "$BASE/events?topic=$topic-v" >"$d/vdefault" 2>&1
  local got7 gotdef
  got7=$(awk '/recv SETTINGS frame/{s=1} s&&/SETTINGS_MAX_CONCURRENT_STREAMS/{print; exit}' "$d/v7" | sed 's/.*:\([0-9]*\)\].*/\1/')
  gotdef=$(awk '/recv SETTINGS frame/{s=1} s&&/SETTINGS_MAX_CONCURRENT_STREAMS/{print; exit}' "$d/vdefault" | sed 's/.*:\([0-9]*\)\].*/\1/')
  if [[ $got7 == 7 ]]; then
    pass nghttp-max-concurrent-streams "server SETTINGS_MAX_CONCURRENT_STREAMS=7 with --h2-max-concurrent-streams 7 (default server: ${gotdef:-none})"
  else
    fail nghttp-max-concurrent-streams "server SETTINGS_MAX_CONCURRENT_STREAMS='${got7:-absent}' with --h2-max-concurrent-streams 7; frames: $(grep -A6 'recv SETTINGS' "$d/v7" | head -8 | tr '\n' '|')"
  fi
  grep -q 'recv (stream_id=[0-9]*) :status: 200' "$d/v7" || why+=("no :status 200")
  grep -q 'recv (stream_id=[0-9]*) content-type: text/event-stream' "$d/v7" || why+=("no content-type: text/event-stream")
  grep -qi 'recv (stream_id=[0-9]*) connection:' "$d/v7" && why+=("connection header in an HTTP/2 response")
  grep -qi 'recv GOAWAY\|RST_STREAM' "$d/v7" && why+=("GOAWAY/RST_STREAM: $(grep -i 'GOAWAY\|RST_STREAM' "$d/v7" | head -2 | tr '\n' '|')")
  if ((${#why[@]})); then
    fail nghttp-headers "$(IFS=';'; echo "${why[*]}")"
  else
    pass nghttp-headers "$(grep -o 'recv (stream_id=[0-9]*) [^ ]*: .*' "$d/v7" | grep -v ' date: ' | sed 's/recv (stream_id=[0-9]*) //' | tr '\n' ',' | sed 's/,$//')"
  fi
}
# nghttp: 8 streams on one connection to the server with
# --h2-max-concurrent-streams 7: only 7 may be open at once (the server
# refuses the 8th with RST_STREAM REFUSED_STREAM when nghttp sends it before
# reading SETTINGS; otherwise nghttp must hold it until one ends). Then
# /close on the first topic must end its stream with END_STREAM.
check_nghttp_streams() {
  local d urls=() i sid refused n200 why=()
  d=$(mktemp -d "$WORK/nghttp-streams.XXXX")
  for i in 1 2 3 4 5 6 7 8; do urls+=("$BASE7/events?topic=mx$i-$RUN"); done
  timeout 6 stdbuf -o0 nghttp -v "${urls[@]}" >"$d/v" 2>&1 &
  local npid=$!
  wait_grep "$d/v" 'retry: ' 3
  sleep 0.5
  n200=$(grep -c 'recv (stream_id=[0-9]*) :status: 200' "$d/v")
  refused=$(grep -A1 'recv RST_STREAM' "$d/v" | grep -c 'REFUSED_STREAM')
  if [[ $n200 == 7 ]]; then
    pass nghttp-stream-limit "7 of 8 streams open at once; RST_STREAM REFUSED_STREAM for $refused stream(s) sent before SETTINGS"
  else
    fail nghttp-stream-limit "$n200 streams answered 200 with --h2-max-concurrent-streams 7 (refused: $refused); $(grep -E 'RST_STREAM|GOAWAY|:status' "$d/v" | tr '\n' '|')"
  fi
  # The stream id nghttp gave the first topic.
  sid=$(awk -v want="/events?topic=mx1-$RUN" '/send HEADERS frame/{match($0,/stream_id=[0-9]+/); id=substr($0,RSTART+10,RLENGTH-10)} $1==":path:" && $2==want {print id; exit}' "$d/v")
  post "$BASE7/close?topic=mx1-$RUN" >/dev/null
  wait_grep "$d/v" "flags=0x01, stream_id=$sid>" 3
  sleep 0.2
  kill $npid 2>/dev/null
  wait $npid 2>/dev/null
  grep -qx "data: mx1-$RUN" "$d/v" || why+=("no 'data: mx1-$RUN' close event")
  grep -q "recv DATA frame <length=[0-9]*, flags=0x01, stream_id=$sid>" "$d/v" || why+=("stream $sid got no END_STREAM after /close")
  grep -q 'recv GOAWAY' "$d/v" && why+=("GOAWAY: $(grep -A1 'recv GOAWAY' "$d/v" | tr '\n' '|')")
  if ((${#why[@]})); then
    fail nghttp-close "$(IFS=';'; echo "${why[*]}"); $(grep "stream_id=$sid" "$d/v" | tail -5 | tr '\n' '|')"
  else
    pass nghttp-close "stream $sid got 'event: close' then END_STREAM; the other streams on the connection stay open"
  fi
}

# Large events: 30 events of 64 KiB (the --max-event-bytes default) in a burst,
# more than the HTTP/2 flow-control windows, to an h1 and an h2 subscriber;
# every one arrives whole and in order. One byte more is refused with 413.
check_bulk() {
  local d topic=bulk-$RUN p1 p2 ids=() i id code why=()
  d=$(mktemp -d "$WORK/bulk.XXXX")
  head -c 65536 /dev/zero | tr '\0' 'x' >"$d/body"
  curl -sN --http1.1 --max-time 10 -o "$d/h1" "$BASE/events?topic=$topic" & p1=$!
  curl -sN --http2-prior-knowledge --max-time 10 -o "$d/h2" "$BASE/events?topic=$topic" & p2=$!
  wait_grep "$d/h1" '^retry: ' 3 && wait_grep "$d/h2" '^retry: ' 3 || { fail bulk "subscribers did not open"; kill $p1 $p2; return 1; }
  for i in $(seq 30); do
    id=$(post "$BASE/publish?topic=$topic" --data-binary @"$d/body") || { fail bulk "publish $i failed"; kill $p1 $p2; return 1; }
    ids+=("$id")
  done
  for f in h1 h2; do wait_grep "$d/$f" "^id: ${ids[29]}\$" 5; done
  sleep 0.2
  kill $p1 $p2 2>/dev/null
  wait $p1 $p2 2>/dev/null
  for id in "${ids[@]}"; do printf 'id: %s\ndata: %s\n\n' "$id" "$(cat "$d/body")"; done >"$d/want"
  for f in h1 h2; do
    if ! split_opening "$d/$f" "$d/$f.ev"; then
      why+=("$f: $WHY")
    elif ! cmp -s "$d/$f.ev" "$d/want"; then
      why+=("$f: $(grep -c '^id: ' "$d/$f.ev") of 30 events, $(wc -c <"$d/$f.ev") of $(wc -c <"$d/want") bytes; differs at $(cmp "$d/$f.ev" "$d/want" 2>&1 | head -1)")
    fi
  done
  if ((${#why[@]})); then fail bulk "$(IFS=';'; echo "${why[*]}")"; else pass bulk "30 x 64 KiB events byte-exact over HTTP/1.1 and h2c"; fi
  printf 'y' >>"$d/body"
  code=$(curl -s --max-time 5 -o "$d/413" -w '%{http_code}' -X POST --data-binary @"$d/body" "$BASE/publish?topic=$topic")
  if [[ $code == 413 ]]; then pass publish-too-large-413 "$(esc "$d/413")"; else fail publish-too-large-413 "65537-byte event answered $code $(esc "$d/413")"; fi
}
export -f wait_grep post split_opening check_nghttp_streams check_bulk check_curl_stream check_curl_heartbeat check_curl_resume check_curl_close check_nghttp

# ---------------------------------------------------------------- main

install_all || { echo "0 passed, 1 failed"; exit 1; }
echo "ssehub: $BIN ($("$BIN" --version 2>&1)); logs in $WORK"

start_server server-main || { fail server "ssehub did not start; see $WORK/server-main.log"; echo "0 passed, 1 failed"; exit 1; }
export BASE=http://127.0.0.1:$PORT
start_server server-h2-7 --h2-max-concurrent-streams 7 || { echo "FAIL server-h2-7: could not start" | tee -a "$RESULTS"; }
export BASE7=http://127.0.0.1:$PORT

run_check curl-h1 20 bash -c 'check_curl_stream h1'
run_check curl-h2 20 bash -c 'check_curl_stream h2'
run_check curl-heartbeat 10 bash -c 'check_curl_heartbeat'
run_check curl-resume 20 bash -c 'check_curl_resume'
run_check curl-close 20 bash -c 'check_curl_close'
run_check bulk 30 bash -c 'check_bulk'

if [[ -n $HAVE_NGHTTP ]]; then
  run_check nghttp 25 bash -c 'check_nghttp'
  run_check nghttp-streams 20 bash -c 'check_nghttp_streams'
else
  echo "FAIL nghttp: nghttp2-client could not be installed (see $WORK/apt-*.log)" | tee -a "$RESULTS"
fi

if [[ -n $HAVE_NODE ]]; then
  run_check eventsource3 40 node "$INTEROP/eventsource.mjs" "$BASE" 3
  run_check eventsource2 40 node "$INTEROP/eventsource.mjs" "$BASE" 2
else
  echo "FAIL eventsource: node packages could not be installed (see $WORK/npm.log)" | tee -a "$RESULTS"
fi

if [[ -n $HAVE_PY ]]; then
  run_check httpx-sse 40 "$INTEROP/.venv/bin/python" "$INTEROP/httpx_sse_check.py" "$BASE" "$RETRY_MIN" "$RETRY_MAX"
  run_check pyjwt 60 "$INTEROP/.venv/bin/python" "$INTEROP/pyjwt_check.py" "$BIN"
else
  echo "FAIL httpx-sse: Python packages could not be installed (see $WORK/pip.log)" | tee -a "$RESULTS"
fi

# TLS: a certificate made for this run (python cryptography), curl by ALPN.
TLS_OK=
if [[ -n $HAVE_PY ]] && "$INTEROP/.venv/bin/python" "$INTEROP/make_cert.py" "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/cert.log" 2>&1; then
  TLS_OK=1
else
  echo "FAIL tls-cert: could not make a certificate: $(tail -3 "$WORK/cert.log" 2>/dev/null | tr '\n' '|')" | tee -a "$RESULTS"
fi

check_curl_tls() { # TLS_BASE
  local v
  v=$(curl -sk --http2 --max-time 5 -o /dev/null -w '%{http_version}' "$1/healthz")
  [[ $v == 2 ]] && pass curl-tls-alpn-h2 || fail curl-tls-alpn-h2 "curl --http2 over TLS got HTTP/$v"
  v=$(curl -sk --http1.1 --max-time 5 -o /dev/null -w '%{http_version}' "$1/healthz")
  [[ $v == 1.1 ]] && pass curl-tls-alpn-http1.1 || fail curl-tls-alpn-http1.1 "curl --http1.1 over TLS got HTTP/$v"
  # Plaintext to the TLS port is refused, and the server is still there.
  if curl -s --max-time 3 "http://${1#https://}/healthz" >/dev/null 2>&1; then
    fail curl-tls-plaintext "plain HTTP was answered on the TLS port"
  elif [[ $(curl -sk --max-time 5 "$1/healthz") == ok ]]; then
    pass curl-tls-plaintext "refused, server healthy"
  else
    fail curl-tls-plaintext "server unhealthy after plain HTTP"
  fi
}
export -f check_curl_tls
if [[ -n $TLS_OK ]]; then
  if SCHEME=https start_server server-tls --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"; then
    run_check curl-tls 20 bash -c "check_curl_tls https://127.0.0.1:$PORT"
  else
    echo "FAIL curl-tls: could not start ssehub with TLS" | tee -a "$RESULTS"
  fi
fi

if [[ -n $HAVE_CHROMIUM && -n $HAVE_NODE ]]; then
  WEB_PORT=$(free_port)
  (cd "$INTEROP/page" && exec python3 -m http.server "$WEB_PORT" --bind 127.0.0.1) >"$WORK/web.log" 2>&1 &
  PIDS+=($!)
  if start_server server-cors --cors-origin "http://127.0.0.1:$WEB_PORT" && wait_grep "$WORK/web.log" 'Serving HTTP' 5; then
    run_check chromium 90 node "$INTEROP/browser.mjs" "http://127.0.0.1:$PORT" "http://127.0.0.1:$WEB_PORT" "$(command -v chromium)"
  else
    echo "FAIL chromium: could not start ssehub --cors-origin or the page server" | tee -a "$RESULTS"
  fi
  # The plain HTTP/1.1 server above, for the six-connection comparison below.
  H1_PORT=$PORT
  # Private events to a cross-origin EventSource authorised by a cookie.
  AUTH_SECRET=interop-secret-$RUN-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  if start_server server-auth --subscriber-jwt-key "$AUTH_SECRET" --anonymous --cors-origin "http://127.0.0.1:$WEB_PORT"; then
    run_check chromium-auth 60 node "$INTEROP/browser_auth.mjs" "http://127.0.0.1:$PORT" "http://127.0.0.1:$WEB_PORT" "$(command -v chromium)" "$AUTH_SECRET"
  else
    echo "FAIL chromium-auth: could not start ssehub with a subscriber key" | tee -a "$RESULTS"
  fi
  # 20 EventSources on one page: all open over TLS (HTTP/2), six over HTTP/1.1.
  if [[ -n $TLS_OK ]] && SCHEME=https start_server server-tls-cors --cors-origin "http://127.0.0.1:$WEB_PORT" \
      --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"; then
    run_check chromium-tls 60 node "$INTEROP/browser_tls.mjs" "https://127.0.0.1:$PORT" "http://127.0.0.1:$H1_PORT" \
      "http://127.0.0.1:$WEB_PORT" "$(command -v chromium)"
  else
    echo "FAIL chromium-tls: could not start ssehub with TLS and --cors-origin" | tee -a "$RESULTS"
  fi
  # Mercure's conformance cases, configured as that suite expects.
  MERCURE_SECRET='!ChangeThisMercureHubJWTSecretKey!'
  if start_server server-mercure --jwt-key "$MERCURE_SECRET" --anonymous; then
    run_check mercure 60 node "$INTEROP/mercure_conformance.mjs" "http://127.0.0.1:$PORT" "$MERCURE_SECRET" "$(command -v chromium)"
  else
    echo "FAIL mercure: could not start ssehub with the Mercure key" | tee -a "$RESULTS"
  fi
  # ssehub.js where EventSource gives up (a 502, an expired token, a stalled
  # proxy) and where it must stop (204, close), each through a proxy of the
  # script's; then the console at /, screenshots into target/console/.
  CLIENT_SECRET=client-secret-$RUN-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  if start_server server-client && CLIENT_BASE=http://127.0.0.1:$PORT &&
      start_server server-client-auth --subscriber-jwt-key "$CLIENT_SECRET"; then
    run_check chromium-client 120 node "$INTEROP/browser_client.mjs" "$CLIENT_BASE" "http://127.0.0.1:$PORT" \
      "$CLIENT_SECRET" "$(command -v chromium)"
    run_check chromium-console 90 node "$INTEROP/browser_console.mjs" "$CLIENT_BASE" "$ROOT/target/console" "$(command -v chromium)"
  else
    echo "FAIL chromium-client: could not start ssehub for the client checks" | tee -a "$RESULTS"
  fi
else
  echo "FAIL chromium: chromium or node packages could not be installed" | tee -a "$RESULTS"
fi

# --ui off: no console and no /stats, but /ssehub.js is still served.
check_ui_off() { # BASE
  local root stats js etag
  root=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$1/")
  stats=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$1/stats")
  js=$(curl -s --max-time 5 -D "$WORK/ui-off-js.h" -o "$WORK/ui-off.js" -w '%{http_code}' "$1/ssehub.js")
  etag=$(tr -d '\r' <"$WORK/ui-off-js.h" | sed -n 's/^etag: //Ip')
  if [[ $root == 404 && $stats == 404 && $js == 200 && -n $etag ]] && cmp -s "$WORK/ui-off.js" "$ROOT/web/ssehub.js" &&
      [[ $(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$1/ssehub.js") == 304 ]]; then
    pass ui-off "/ 404, /stats 404, /ssehub.js 200 (etag $etag, 304 when current)"
  else
    fail ui-off "/ $root, /stats $stats, /ssehub.js $js etag '$etag'"
  fi
}
export -f check_ui_off
if start_server server-ui-off --ui off; then
  run_check ui-off 15 bash -c "check_ui_off http://127.0.0.1:$PORT"
else
  echo "FAIL ui-off: could not start ssehub --ui off" | tee -a "$RESULTS"
fi

# A server that died during the run is a failure of its own.
for f in "$WORK"/server-*.log; do
  if grep -qiE 'panic|thread .* panicked|ERROR' "$f"; then
    echo "FAIL $(basename "$f" .log)-log: $(grep -iE 'panic|ERROR' "$f" | head -3 | tr '\n' '|')" | tee -a "$RESULTS"
  fi
done

passed=$(grep -c '^ok ' "$RESULTS")
failed=$(grep -c '^FAIL ' "$RESULTS")
echo "took $((SECONDS - T_START))s"
echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
