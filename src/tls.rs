//! TLS on `--listen`: the certificate files, the rustls server
//! configuration with ALPN, the handshake, and reloading the certificate on
//! SIGHUP without a restart.
//!
//! The server configuration is built once; what changes on a reload is only
//! the certificate it hands out. [`Resolver`] holds the current
//! `Arc<CertifiedKey>` behind a lock that each handshake takes for one
//! pointer clone, so a reload affects new handshakes only: open
//! connections keep the key they negotiated with, and their streams go on.
//! A reload that fails (a file that does not parse, a key that does not
//! match) keeps the old certificate and logs one line.
//!
//! Key material never reaches a log line: errors about the key file name
//! the file and the kind of problem, never its content.
//!
//! After the handshake, [`TlsSocket`] is what the rest of the server sees.
//! It can `peek` like a TCP socket (reading one record's plaintext and
//! keeping it until it is read again), so the HTTP/1.1 stream fast path
//! ([`crate::h1_stream`]) works over TLS unchanged.

use log::{error, info};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::metrics::TlsCounters;
use crate::socket::Socket;

/// The ALPN protocol name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN protocol name of HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A TLS set-up problem found at start-up, worded for the operator; the
/// binary exits with status 2 on it, as for a command-line mistake.
#[derive(Debug)]
pub struct StartupError(pub String);

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

/// Hands every handshake the current certificate; swapped on reload.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock still holds a valid certificate (the writer only
        // assigns an Arc), so use it rather than fail every handshake.
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// TLS for the listener: the acceptor, the certificate files, and the
/// resolver that a reload swaps the certificate in.
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<Resolver>,
    provider: Arc<CryptoProvider>,
    cert_path: PathBuf,
    key_path: PathBuf,
    counters: Arc<TlsCounters>,
}

impl Tls {
    /// Reads both files and builds the server configuration: TLS 1.2 and
    /// 1.3, ALPN `h2` then `http/1.1`.
    pub fn new(cert_path: &Path, key_path: &Path, counters: Arc<TlsCounters>) -> Result<Tls, StartupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = load(cert_path, key_path, &provider).map_err(StartupError)?;
        let resolver = Arc::new(Resolver {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| StartupError(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP11.to_vec()];
        // Stateless session tickets (keys rotated by rustls every 6 hours):
        // a client that reconnects resumes without a certificate signature,
        // however many clients there are. The default keeps only the last
        // 256 sessions in memory, too few after a mass reconnect.
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| StartupError(format!("TLS: {e}")))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
            provider,
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            counters,
        })
    }

    /// Re-reads both files on a blocking thread and, if they make a valid
    /// pair, installs them for new handshakes. On failure the old
    /// certificate stays and one error line is logged.
    pub async fn reload(&self) {
        let (cert, key, provider) = (
            self.cert_path.clone(),
            self.key_path.clone(),
            self.provider.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || load(&cert, &key, &provider))
            .await
            .unwrap_or_else(|e| Err(format!("TLS reload task failed: {e}")));
        match loaded {
            Ok(key) => {
                *self.resolver.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                self.counters.reloads_ok.fetch_add(1, Ordering::Relaxed);
                info!("TLS certificate reloaded from {}", self.cert_path.display());
            }
            Err(e) => {
                self.counters.reloads_error.fetch_add(1, Ordering::Relaxed);
                error!("TLS certificate reload failed, still serving the previous certificate: {e}");
            }
        }
    }

    /// Counts a handshake that failed or timed out (logged at debug only:
    /// a port scanner must not fill the log).
    pub fn count_handshake_failure(&self) {
        self.counters.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs the handshake on `socket`. The caller bounds it in time.
    ///
    /// Boxed: the connection's state is 1.3 KB, and inline it would be
    /// counted several times over in the task of every stream (an async
    /// function keeps a slot for each place a value moves through).
    pub async fn accept(&self, socket: Socket) -> io::Result<Box<TlsSocket>> {
        let stream = self.acceptor.accept(socket).await?;
        Ok(Box::new(TlsSocket {
            inner: stream,
            peeked: Vec::new(),
        }))
    }
}

/// Checks that `config`'s TLS files (if any) make a usable pair, without
/// keeping them: the binary calls it before anything is logged, so a
/// mistake is the one line it prints.
pub fn check(config: &crate::Config) -> Result<(), StartupError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => load(cert, key, &rustls::crypto::ring::default_provider())
            .map(drop)
            .map_err(StartupError),
        _ => Ok(()),
    }
}

/// Reads a certificate chain and its private key and checks they match.
/// The error names the file and the problem, never the key's bytes.
fn load(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let cert_name = cert_path.display();
    let key_name = key_path.display();
    let certs = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error("--tls-cert", &cert_name, "certificate", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("--tls-cert", &cert_name, "certificate", e))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {cert_name}: no PEM certificate in the file (expected BEGIN CERTIFICATE, leaf first)"
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| pem_error("--tls-key", &key_name, "private key", e))?;
    match CertifiedKey::from_der(certs, key, provider) {
        Ok(certified) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "--tls-key {key_name}: the key does not match the certificate in {cert_name}"
        )),
        Err(rustls::Error::InvalidCertificate(e)) => Err(format!(
            "--tls-cert {cert_name}: the certificate cannot be used: {e:?}"
        )),
        Err(_) => Err(format!(
            "--tls-key {key_name}: the private key cannot be used (unsupported algorithm or corrupt)"
        )),
    }
}

/// Words a PEM reading error for the operator. Only I/O errors are shown in
/// detail: a parse error of the key file could quote its content.
fn pem_error(flag: &str, name: &impl fmt::Display, what: &str, e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => format!("{flag} {name}: cannot read the file: {io}"),
        rustls_pki_types::pem::Error::NoItemsFound => match what {
            "private key" => format!(
                "{flag} {name}: no PEM private key in the file (expected PKCS#8, RSA or EC PRIVATE KEY)"
            ),
            _ => format!("{flag} {name}: no PEM {what} in the file"),
        },
        _ => format!("{flag} {name}: the file is not valid PEM ({what})"),
    }
}

/// A TLS connection after its handshake: what hyper and the HTTP/1.1 fast
/// path read and write. Can be peeked once, like a TCP socket.
pub struct TlsSocket {
    inner: TlsStream<Socket>,
    /// Plaintext read by [`peek`](Self::peek) and not yet consumed; empty
    /// (no allocation) once read, so an idle stream keeps nothing here.
    peeked: Vec<u8>,
}

impl TlsSocket {
    /// The protocol the client chose by ALPN, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.inner.get_ref().1.alpn_protocol()
    }

    /// The TCP socket underneath (write deadline, PING watch).
    pub fn socket_mut(&mut self) -> &mut Socket {
        self.inner.get_mut().0
    }

    /// The TCP socket under the TLS session.
    pub fn socket(&self) -> &Socket {
        self.inner.get_ref().0
    }

    /// Waits for the client's first plaintext (one read: one TLS record,
    /// typically the whole request head, at most `max` bytes) and keeps it
    /// for [`peek`](Self::peek) and the next reads. Returns its length;
    /// 0 means the client closed.
    pub async fn fill(&mut self, max: usize) -> io::Result<usize> {
        if self.peeked.is_empty() {
            let mut buf = vec![0u8; max];
            let n = self.inner.read(&mut buf).await?;
            buf.truncate(n);
            self.peeked = buf;
        }
        Ok(self.peeked.len())
    }

    /// Returns the plaintext the client has sent without consuming it: what
    /// [`fill`](Self::fill) kept, or one read's worth if nothing is kept.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fill(buf.len()).await?;
        let n = buf.len().min(self.peeked.len());
        buf[..n].copy_from_slice(&self.peeked[..n]);
        Ok(n)
    }
}

impl AsyncRead for TlsSocket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.peeked.is_empty() {
            let n = buf.remaining().min(this.peeked.len());
            buf.put_slice(&this.peeked[..n]);
            if n == this.peeked.len() {
                this.peeked = Vec::new();
            } else {
                this.peeked.drain(..n);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsSocket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
