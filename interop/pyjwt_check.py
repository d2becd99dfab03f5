"""Checks that tokens minted by PyJWT (PyPI) are accepted by the real binary.

    python pyjwt_check.py SSEHUB_BIN

For each of HS256, RS256 and ES256: generates a key (cryptography), starts
ssehub with --jwt-key-file (the secret, or the public key's PEM), mints a
subscriber and a publisher token with PyJWT, and checks a private event
published with the publisher token reaches a subscriber authorised by a
URI-template selector, over HTTP/1.1 and h2c, with the token in the header
and in the query. Also that tokens the key must refuse are refused: a wrong
key, alg none, and (for the PEM keys) HS256 with the public key as secret.

Prints `ok NAME` / `FAIL NAME: why` lines; exits 1 if any check failed.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

BIN = sys.argv[1]
failures = 0


def ok(name, note=""):
    print(f"ok {name}" + (f" ({note})" if note else ""), flush=True)


def fail(name, why):
    global failures
    failures += 1
    print(f"FAIL {name}: {why}", flush=True)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(secret, claims):
    """An HS256 token with an arbitrary secret (PyJWT refuses a PEM as one)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"


def unsigned(claims):
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(claims).encode())}."


def keys(alg):
    """(signing key for PyJWT, key file content for ssehub, another signing key)."""
    if alg == "HS256":
        return secrets.token_urlsafe(32), None, secrets.token_urlsafe(32)
    if alg == "RS256":
        new = lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)  # noqa: E731
    else:
        new = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
    private, other = new(), new()
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public_pem, other


class Hub:
    """ssehub on an ephemeral port, with its stderr collected."""

    def __init__(self, key_file):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSEHUB_")}
        env["RUST_LOG"] = "info"
        self.proc = subprocess.Popen(
            [BIN, "--listen", "127.0.0.1:0", "--jwt-key-file", key_file, "--retry", "500ms"],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, text=True,
        )
        self.log, self.base = [], None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                if "listening on " in line and self.base is None:
                    self.base = "http://" + line.split("listening on ", 1)[1].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(10) or self.base is None:
            raise RuntimeError("ssehub did not start: " + "".join(self.log)[-400:])

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def receive_private(hub, proto, sub_token, pub_token, where):
    """Subscribes with the token (header or query), publishes one private
    event with the publisher token, returns the data received."""
    topic = "https://example.com/books/42"
    params = {"topic": topic}
    headers = {}
    if where == "header":
        headers["Authorization"] = f"Bearer {sub_token}"
    else:
        params["authorization"] = sub_token
    h2 = proto == "h2c"
    with httpx.Client(http1=not h2, http2=h2, timeout=5) as client:
        with client.stream("GET", f"{hub.base}/events", params=params, headers=headers) as r:
            if r.status_code != 200:
                r.read()
                raise AssertionError(f"GET /events -> {r.status_code} {r.text.strip()!r}")
            if h2 and r.http_version != "HTTP/2":
                raise AssertionError(f"spoke {r.http_version}, not HTTP/2")
            p = httpx.post(
                f"{hub.base}/publish",
                params={"topic": topic, "private": "1"},
                headers={"Authorization": f"Bearer {pub_token}"},
                content=b"only for readers of book 42",
                timeout=5,
            )
            if p.status_code != 200:
                raise AssertionError(f"publish -> {p.status_code} {p.text.strip()!r}")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    return line[len("data: "):]
    raise AssertionError("the stream ended without the event")


def status(hub, token):
    r = httpx.get(f"{hub.base}/events", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    return r.status_code


def check(alg):
    signing, public_pem, other = keys(alg)
    with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as f:
        f.write(public_pem if public_pem else signing)
        key_file = f.name
    hub = None
    try:
        hub = Hub(key_file)
        now = int(time.time())
        sub = jwt.encode(
            {"mercure": {"subscribe": ["https://example.com/books/{id}"]}, "exp": now + 300}, signing, algorithm=alg
        )
        pub = jwt.encode({"mercure": {"publish": ["*"]}}, signing, algorithm=alg)
        for proto in ("h1", "h2c"):
            for where in ("header", "query"):
                name = f"pyjwt-{alg}-{proto}-{where}"
                try:
                    got = receive_private(hub, proto, sub, pub, where)
                    if got == "only for readers of book 42":
                        ok(name, "private event received with a PyJWT token")
                    else:
                        fail(name, f"received {got!r}")
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    fail(name, repr(e))
        refused = {
            "wrong key": jwt.encode({"mercure": {"subscribe": ["*"]}}, other, algorithm=alg),
            "alg none": unsigned({"mercure": {"subscribe": ["*"]}}),
        }
        if public_pem:
            refused["HS256 with the public key"] = forge_hs256(public_pem.encode(), {"mercure": {"subscribe": ["*"]}})
        for what, token in refused.items():
            name = f"pyjwt-{alg}-refuses-{what.replace(' ', '-')}"
            code = status(hub, token)
            if code == 401:
                ok(name)
            else:
                fail(name, f"answered {code}, want 401")
    except Exception as e:  # noqa: BLE001
        fail(f"pyjwt-{alg}", repr(e))
    finally:
        if hub:
            hub.stop()
        os.unlink(key_file)


for alg in ("HS256", "RS256", "ES256"):
    check(alg)
sys.exit(1 if failures else 0)
