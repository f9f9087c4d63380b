//! The API port speaks HTTPS *and* plain HTTP, told apart by the first byte a client sends.
//!
//! kubectl (client-go) only sends credentials over TLS, so a token-protected API must offer
//! HTTPS. Nimbus's own CLI and tests speak plain HTTP to a loopback server, with the same token.
//! Rather than two ports, each accepted connection is peeked: a TLS handshake starts with byte
//! `0x16`, which no HTTP request line does.
//!
//! The certificate comes from a local CA made on first start and kept in the data directory
//! (`api-ca.crt`, and `api-ca.key` with mode 0600); `nimbus kubeconfig` hands kubectl that CA.
//! The serving certificate is issued afresh by the CA at every start for `localhost`,
//! `127.0.0.1`, `::1` and the address the API listens on, so a changed `--api-addr` needs no
//! new CA.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The CA certificate's file name in the data directory.
pub const CA_CERT_FILE: &str = "api-ca.crt";
/// The CA key's file name in the data directory (mode 0600).
pub const CA_KEY_FILE: &str = "api-ca.key";

/// How long a client may take to send its first byte and finish a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Why the API's TLS identity could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the API certificate authority in {path} is unusable ({source}); delete {CA_CERT_FILE} and {CA_KEY_FILE} to make a new one, then run `nimbus kubeconfig` again"
    )]
    BadCa { path: PathBuf, source: rcgen::Error },
    #[error("issuing the API serving certificate: {0}")]
    Issue(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The CA and the TLS configuration serving with a certificate it issued.
#[derive(Clone)]
pub struct TlsIdentity {
    ca_pem: String,
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

// === impl TlsIdentity ===

impl TlsIdentity {
    /// Load the CA from `dir` (creating it on first use) and issue a serving certificate for the
    /// loopback names and `addr`'s IP.
    pub fn load_or_create(dir: &Path, addr: SocketAddr) -> Result<Self, TlsError> {
        let (ca_pem, ca_key) = load_or_create_ca(dir)?;
        let issuer = Issuer::new(ca_params(), ca_key);
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
            names.push(addr.ip().to_string());
        }
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "nimbus-apiserver");
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let chain = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem,
            config: Arc::new(config),
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// `base64(PEM)` of the CA in `dir`: a kubeconfig's `certificate-authority-data`.
pub fn ca_data(dir: &Path) -> Result<String, TlsError> {
    let path = dir.join(CA_CERT_FILE);
    let pem = std::fs::read_to_string(&path).map_err(|source| TlsError::Io { path, source })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pem))
}

/// The CA's subject and usages; the same every start, so certificates it issues chain to the
/// stored CA certificate.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "nimbus-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), TlsError> {
    let (cert_path, key_path) = (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Io {
                path: path.into(),
                source,
            })
        };
        let (pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
        let key = KeyPair::from_pem(&key_pem).map_err(|source| TlsError::BadCa {
            path: key_path,
            source,
        })?;
        return Ok((pem, key));
    }
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write_file(&key_path, &key.serialize_pem(), 0o600)?;
    write_file(&cert_path, &cert.pem(), 0o644)?;
    Ok((cert.pem(), key))
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

// === the listener ===

/// A listener whose connections are TLS or plain, for `axum::serve`.
pub struct DualListener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

impl DualListener {
    /// Accept on `listener`; each connection is sniffed and, if TLS, handshaken on its own task.
    pub fn new(listener: TcpListener, tls: &TlsIdentity) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls.config.clone()),
            tx,
        ));
        Ok(Self { ready, local })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(Conn, SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, sniff(stream, acceptor)).await {
                        Ok(Ok(conn)) => {
                            let _ = tx.send((conn, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "API connection dropped before its first request")
                        }
                        Err(_) => tracing::debug!(%peer, "API connection sent nothing in time"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn sniff(stream: TcpStream, acceptor: TlsAcceptor) -> std::io::Result<Conn> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    match first[0] {
        TLS_HANDSHAKE => Ok(Conn::Tls(Box::new(acceptor.accept(stream).await?))),
        _ => Ok(Conn::Plain(stream)),
    }
}

impl axum::serve::Listener for DualListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// One accepted connection.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ca_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = TlsIdentity::load_or_create(dir.path(), addr).unwrap();
        let b = TlsIdentity::load_or_create(dir.path(), addr).unwrap();
        assert_eq!(a.ca_pem(), b.ca_pem());
        assert!(a.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let mode = std::fs::metadata(dir.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let data = ca_data(dir.path()).unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), a.ca_pem());
    }

    #[test]
    fn a_damaged_ca_key_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        TlsIdentity::load_or_create(dir.path(), addr).unwrap();
        std::fs::write(dir.path().join(CA_KEY_FILE), "garbage").unwrap();
        let err = TlsIdentity::load_or_create(dir.path(), addr).unwrap_err();
        assert!(err.to_string().contains("delete api-ca.crt"), "{err}");
    }
}
