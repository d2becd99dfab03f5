//! Helpers of the TLS tests: certificates made on the spot with rcgen (no
//! files checked in, no openssl), written to a per-test directory; rustls
//! client configurations with a chosen ALPN list and TLS versions; and
//! HTTP/1.1 and HTTP/2 clients (hyper's) over tokio-rustls.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::common::{bounded, STEP};
use crate::support;

/// The name every test certificate is for, and clients ask for.
pub const HOST: &str = "localhost";

/// A self-signed ECDSA P-256 certificate and its key, in PEM and DER.
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new() -> TestCert {
        let made = rcgen::generate_simple_self_signed(vec![HOST.to_string()]).expect("rcgen");
        TestCert {
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
            der: made.cert.der().clone(),
        }
    }
}

/// A directory of its own for one test's files, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ssehub-tls-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// Writes `text` to `name` atomically (write, then rename: what certbot
    /// and most deploy tools do), and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write temp file");
        std::fs::rename(&tmp, &path).expect("rename temp file");
        path
    }

    /// Writes a certificate and key as `cert.pem` and `key.pem`.
    pub fn write_pair(&self, cert: &TestCert) -> (PathBuf, PathBuf) {
        (
            self.write("cert.pem", &cert.cert_pem),
            self.write("key.pem", &cert.key_pem),
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client configuration trusting `roots`, offering `alpn` (empty: no ALPN
/// extension at all), over `versions`.
pub fn client_config(
    roots: &[&TestCert],
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for cert in roots {
        store.add(cert.der.clone()).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// TLS 1.2 and 1.3.
pub const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Connects and completes the handshake.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> TlsStream<TcpStream> {
    let tcp = bounded(STEP, "TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let name = ServerName::try_from(HOST).expect("server name");
    bounded(
        STEP,
        "TLS handshake",
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .expect("TLS handshake")
}

/// The protocol ALPN chose on a client connection.
pub fn alpn(stream: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    stream.get_ref().1.alpn_protocol().map(|p| p.to_vec())
}

/// An HTTP connection over TLS, by the protocol ALPN chose.
pub enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Opens a connection and speaks what the server chose (HTTP/1.1 when
    /// nothing was chosen).
    pub async fn open(addr: SocketAddr, config: Arc<ClientConfig>) -> Sender {
        let tls = connect(addr, config).await;
        if alpn(&tls).as_deref() == Some(b"h2") {
            let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2 handshake");
            tokio::spawn(conn);
            Sender::H2(send)
        } else {
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1 handshake");
            tokio::spawn(conn);
            Sender::H1(send)
        }
    }

    /// Sends a request and returns the response once its head arrives.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Response<Incoming> {
        let mut req = Request::builder().method(method).uri(path);
        if let Sender::H1(_) = self {
            req = req.header("host", HOST);
        } else {
            req = req.uri(format!("https://{HOST}{path}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let fut = async {
            match self {
                Sender::H1(s) => {
                    s.ready().await.expect("h1 ready");
                    s.send_request(req).await
                }
                Sender::H2(s) => {
                    s.ready().await.expect("h2 ready");
                    s.send_request(req).await
                }
            }
        };
        bounded(STEP, "response head", fut).await.expect("request failed")
    }

    /// Sends a request and reads the whole answer.
    pub async fn text(&mut self, method: Method, path: &str, body: &str) -> (StatusCode, String) {
        let resp = self.send(method, path, &[], body).await;
        let status = resp.status();
        let bytes = bounded(STEP, "response body", resp.into_body().collect())
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Publishes over a new TLS connection (HTTP/1.1); returns the event's id.
pub async fn tls_publish(addr: SocketAddr, config: Arc<ClientConfig>, topic: &str, body: &str) -> String {
    let mut sender = Sender::open(addr, config).await;
    let (status, text) = sender
        .text(Method::POST, &format!("/publish?topic={topic}"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "publish: {text}");
    text.trim().to_string()
}

/// `GET /metrics` over a new TLS connection, parsed.
pub async fn tls_metrics(addr: SocketAddr, config: Arc<ClientConfig>) -> support::Metrics {
    let mut sender = Sender::open(addr, config).await;
    let (status, text) = sender.text(Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK, "GET /metrics: {text}");
    support::parse_metrics(&text)
}

/// Polls `/metrics` over TLS until `pred` holds (10 s at most).
pub async fn tls_wait_metrics(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    what: &str,
    pred: impl Fn(&support::Metrics) -> bool,
) -> support::Metrics {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = tls_metrics(addr, config.clone()).await;
        if pred(&m) {
            return m;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}; /metrics now:\n{}", m.text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The bytes of a TLS ClientHello (offering h2 and http/1.1), as a real
/// client sends them first.
pub fn client_hello(cert: &TestCert) -> Vec<u8> {
    let config = client_config(&[cert], &[b"h2", b"http/1.1"], BOTH);
    let name = ServerName::try_from(HOST).expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write_tls");
    }
    out
}

/// Starts `n` TLS handshakes with `addr` and abandons each halfway: sends
/// the ClientHello, reads the server's first flight (the handshake is under
/// way), then hangs up. 50 at a time.
pub async fn abandon_handshakes(addr: SocketAddr, cert: &TestCert, n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hello = Arc::new(client_hello(cert));
    let mut tasks = tokio::task::JoinSet::new();
    for batch in 0..n.div_ceil(50) {
        for _ in 0..50.min(n - batch * 50) {
            let hello = hello.clone();
            tasks.spawn(async move {
                let mut tcp = support::connect_raw(addr, None).await;
                tcp.write_all(&hello).await.expect("send ClientHello");
                let mut buf = [0u8; 512];
                let n = bounded(STEP, "ServerHello", tcp.read(&mut buf))
                    .await
                    .expect("read");
                assert!(n > 0, "closed before the ServerHello");
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap_or_else(|e| panic!("batch {batch}: {e}"));
        }
    }
}
