//! TLS for the stream sinks (syslog over TLS, RFC 5425, and RELP over TLS): the rustls
//! client configuration, the handshake, and the stream type both sinks write to.
//!
//! The [`ClientConfig`] is built once per sink start ([`client_config`]): the CA bundle
//! (or the system's roots when no `ca_file` is given), the client certificate and key
//! for mutual TLS, the lowest protocol version. Reading and parsing those files is the
//! only thing that can fail here for a reason that never heals by waiting, so those
//! errors are [`SinkError::TlsConfig`] (permanent) and name the file.
//!
//! Certificate verification is on unless `insecure_skip_verify`; then the chain and the
//! name are not checked (the handshake signature still is, so the session is at least
//! bound to the key the server showed), and a warning is logged at every start.
//!
//! A failed handshake is [`SinkError::TlsHandshake`], with what rustls said and the
//! `host:port`. An unknown CA, an expired certificate or a wrong host name are
//! *retriable*: they heal only when someone fixes the server or the settings, but that
//! is a fix made while we run (a renewed certificate, a corrected DNS entry), and
//! waiting loses nothing (the route stalls, nothing is committed; ARCHITECTURE.md invariant 1).
//! rsyslog's omfwd and Vector do the same: retry with backoff and log the clear error
//! each time. They carry their own metric kind (`tls_certificate`), so an alert can
//! tell "the certificate is wrong" from "the network is down".
//!
//! A TLS sink pointed at a plaintext listener sees no answer to its ClientHello (a
//! syslog receiver waits for more lines): the handshake times out after the connect
//! timeout and the error says so ("is it a plaintext listener?"). A listener that
//! answers with something that is not TLS gives the same hint.
//!
//! How a session ends, as [`SinkStream::liveness`] sees it: `close_notify` (the peer's
//! TLS layer ended the session), a FIN without `close_notify` (the peer's process died
//! or closed the socket without ending the session: rsyslog killed), a reset, or an
//! alert. Each is logged with its words; for the TCP sink each is a connection it did
//! not close, after which it writes its recent tail again (`tcp.rs`): what it wrote
//! after the peer's `close_notify` or death was never read.
//!
//! A Unix-domain stream socket (the unix sink in stream mode) is a third kind of
//! [`SinkStream`], so that the TCP sink's writer serves it unchanged.
//!
//! Not done here: reconnecting, batching, framing (the sinks do that); server-side TLS
//! (tests and benches bring their own).

use super::error::SinkError;
use crate::config::{TlsOptions, TlsVersion};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use socket2::SockRef;
use std::io::{self, Read};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Builds the rustls client configuration of one sink. Called once per sink start; the
/// result is shared by every connection the sink makes.
pub(crate) fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, SinkError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| SinkError::TlsConfig {
            reason: format!("the crypto provider does not support the protocol versions: {e}"),
        })?;
    let builder = if opts.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateVerification { provider }))
    } else {
        builder.with_root_certificates(root_store(opts.ca_file.as_deref())?)
    };
    let config = match (&opts.client_cert, &opts.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "client certificate")?;
            let key_der = read_private_key(key)?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| SinkError::TlsConfig {
                    // rustls's message says what is wrong with the pair; it never
                    // contains the key material.
                    reason: format!(
                        "client certificate {} and key {} cannot be used together: {e}",
                        cert.display(),
                        key.display()
                    ),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The CA bundle from `ca_file`, or the system's trust store.
fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, SinkError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certificates(path, "ca file")? {
                roots.add(cert).map_err(|e| SinkError::TlsConfig {
                    reason: format!(
                        "ca file {}: a certificate is not a usable CA: {e}",
                        path.display()
                    ),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default();
                return Err(SinkError::TlsConfig {
                    reason: format!(
                        "no ca_file is set and the system trust store has no usable certificate{why}: set tls.ca_file"
                    ),
                });
            }
        }
    }
    Ok(roots)
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, SinkError> {
    let bad = |reason: String| SinkError::TlsConfig {
        reason: format!("{what} {}: {reason}", path.display()),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_error(e)))?;
    if certs.is_empty() {
        return Err(bad(
            "no PEM certificate (\"BEGIN CERTIFICATE\") in the file".into(),
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1). Errors name the file and
/// never quote its content.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SinkError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SinkError::TlsConfig {
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => format!(
                "client key {}: no PEM private key (\"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\") in the file",
                path.display()
            ),
            other => format!("client key {}: {}", path.display(), pem_error(other)),
        },
    })
}

/// A PEM error in words, without any of the file's content.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => format!("cannot read: {io}"),
        E::NoItemsFound => "nothing of the expected kind in the file".into(),
        E::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        E::IllegalSectionStart { .. } => "a PEM section has an invalid BEGIN line".into(),
        E::Base64Decode(_) => "a PEM section is not valid base64".into(),
        _ => "not a valid PEM file".into(),
    }
}

/// Accepts any certificate chain and name; still checks the handshake signatures.
#[derive(Debug)]
struct NoCertificateVerification {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a sink needs to open TLS sessions: the shared config and the name to verify.
#[derive(Clone)]
pub(crate) struct TlsClient {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl TlsClient {
    /// Builds the config (see [`client_config`]) and checks the verification name:
    /// `server_name` if set, else the sink's host. Logs the `insecure_skip_verify`
    /// warning: this runs once at every start of the sink.
    pub(crate) fn new(sink: &str, host: &str, opts: &TlsOptions) -> Result<Self, SinkError> {
        let config = client_config(opts)?;
        if opts.insecure_skip_verify {
            tracing::warn!(
                sink,
                host,
                "tls.insecure_skip_verify is set: the server's certificate is NOT verified; \
                 anyone on the path can read and change what this sink sends"
            );
        }
        let name = opts.server_name.as_deref().unwrap_or(host);
        // A bracketed IPv6 literal is written without brackets in a certificate.
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name =
            ServerName::try_from(bare.to_string()).map_err(|_| SinkError::TlsConfig {
                reason: format!(
                    "`{name}` is not a valid name to verify the server's certificate against: set tls.server_name"
                ),
            })?;
        Ok(TlsClient {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    /// Runs the client handshake on a connected socket, bounded by `timeout`.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &str,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, SinkError> {
        match tokio::time::timeout(
            timeout,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(handshake_error(addr, e)),
            Err(_) => Err(SinkError::TlsHandshakeTimeout {
                addr: addr.to_string(),
                timeout,
            }),
        }
    }
}

/// Says what went wrong in a handshake: rustls's own words, and a hint where the
/// failure has a usual cause.
fn handshake_error(addr: &str, e: io::Error) -> SinkError {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let (reason, certificate) = match tls {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => (
            "the server's certificate was rejected: UnknownIssuer (no CA in tls.ca_file, or in \
             the system's roots when ca_file is not set, issued it)"
                .to_string(),
            true,
        ),
        Some(rustls::Error::InvalidCertificate(c)) => (
            format!("the server's certificate was rejected: {c}"),
            true,
        ),
        Some(rustls::Error::AlertReceived(alert)) => {
            let about_our_certificate = matches!(
                alert,
                rustls::AlertDescription::BadCertificate
                    | rustls::AlertDescription::UnsupportedCertificate
                    | rustls::AlertDescription::CertificateRevoked
                    | rustls::AlertDescription::CertificateExpired
                    | rustls::AlertDescription::CertificateUnknown
                    | rustls::AlertDescription::UnknownCA
                    | rustls::AlertDescription::CertificateRequired
                    | rustls::AlertDescription::AccessDenied
            );
            if about_our_certificate {
                (
                    format!("the server refused the session with the alert {alert:?}: does it require a client certificate (tls.client_cert / tls.client_key) that it trusts?"),
                    true,
                )
            } else {
                (format!("the server sent the alert {alert:?}"), false)
            }
        }
        Some(rustls::Error::InvalidMessage(m)) => (
            format!("the server did not answer the TLS handshake: is it a plaintext listener? (rustls: received an invalid message: {m:?})"),
            false,
        ),
        Some(other) => (other.to_string(), false),
        None if e.kind() == io::ErrorKind::UnexpectedEof => (
            "the server closed the connection during the handshake: is it a TLS listener, and does it accept this client (certificate, protocol version)?".into(),
            false,
        ),
        None => (e.to_string(), false),
    };
    SinkError::TlsHandshake {
        addr: addr.to_string(),
        reason,
        certificate,
    }
}

/// A connection of a stream sink: plain TCP, TLS over TCP, or a Unix-domain stream
/// socket. One type so that the sinks' writing and reading code is the same for all.
pub(crate) enum SinkStream {
    Plain(TcpStream),
    // Boxed: a TLS session is a few kilobytes of state, a TcpStream a few words.
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl SinkStream {
    /// The TCP socket under a TCP or TLS connection (`None` for a Unix socket).
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match self {
            SinkStream::Plain(s) => Some(s),
            SinkStream::Tls(s) => Some(s.get_ref().0),
            SinkStream::Unix(_) => None,
        }
    }

    /// The socket itself, for socket options and raw reads.
    pub(crate) fn socket(&self) -> SockRef<'_> {
        match self {
            SinkStream::Plain(s) => SockRef::from(s),
            SinkStream::Tls(s) => SockRef::from(s.get_ref().0),
            SinkStream::Unix(s) => SockRef::from(s),
        }
    }

    /// Waits until the runtime reports the socket readable.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            SinkStream::Unix(s) => s.readable().await,
            _ => self.tcp().expect("a tcp socket").readable().await,
        }
    }

    /// Tells the runtime the socket is not readable any more (after [`liveness`] read
    /// from it behind the runtime's back), without reading anything.
    ///
    /// [`liveness`]: SinkStream::liveness
    pub(crate) fn clear_readable(&self) {
        let would_block = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        let _ = match self {
            SinkStream::Unix(s) => s.try_io(Interest::READABLE, would_block),
            _ => self
                .tcp()
                .expect("a tcp socket")
                .try_io(Interest::READABLE, would_block),
        };
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, SinkStream::Tls(_))
    }

    /// Looks at a connection on which the peer should send nothing (syslog), without
    /// blocking and without waiting for the runtime's readiness events, which may not
    /// have been delivered yet. Reads what the peer sent and throws it away; for TLS
    /// the raw bytes go through the session (so its state stays right) and a
    /// `close_notify` or an alert counts as closed.
    pub(crate) fn liveness(&mut self) -> Liveness {
        let mut buf = [0u8; 4096];
        loop {
            // `Read for &Socket` is a plain `recv(2)` on the non-blocking socket.
            let n = match (&*self.socket()).read(&mut buf) {
                // The words say which end it was; the TCP sink writes its tail again
                // after each of them (`tcp.rs`: a FIN comes from a receiver that was
                // killed right after it read as much as from one that closed).
                Ok(0) if self.is_tls() => {
                    return Liveness::closed("closed by the peer without a tls close_notify")
                }
                Ok(0) => return Liveness::closed("closed by the peer (fin)"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Liveness::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Liveness::closed(format!("reset by the peer ({e})")),
            };
            let bytes = &buf[..n];
            match self {
                SinkStream::Plain(_) | SinkStream::Unix(_) => {
                    if looks_like_tls(bytes) {
                        return Liveness::closed(
                            "the peer answered with a TLS record: is it a TLS listener?",
                        );
                    }
                    // A syslog receiver sends nothing; keep reading so that a FIN behind
                    // these bytes is seen.
                }
                SinkStream::Tls(s) => {
                    let conn = s.get_mut().1;
                    let mut rest = bytes;
                    while !rest.is_empty() {
                        if let Err(e) = conn.read_tls(&mut rest) {
                            return Liveness::closed(format!("tls error: {e}"));
                        }
                        if let Err(e) = conn.process_new_packets() {
                            return Liveness::closed(format!("tls error: {e}"));
                        }
                        let mut plain = [0u8; 4096];
                        loop {
                            match conn.reader().read(&mut plain) {
                                Ok(0) => {
                                    return Liveness::closed(
                                        "closed by the peer (tls close_notify)",
                                    )
                                }
                                // Application data from a syslog receiver: ignored.
                                Ok(_) => continue,
                                // WouldBlock: no more plaintext for now.
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A TLS record header: content type alert (21) or handshake (22), then version 3.x.
fn looks_like_tls(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && matches!(bytes[0], 21 | 22) && bytes[1] == 3 && bytes[2] <= 4
}

/// What a non-blocking look at a connection that should never receive anything says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    Open,
    /// The peer closed or reset the connection, or (TLS) ended or broke the session:
    /// `why` says which, for the log.
    Closed {
        why: String,
    },
}

impl Liveness {
    fn closed(why: impl Into<String>) -> Liveness {
        Liveness::Closed { why: why.into() }
    }
}

impl AsyncRead for SinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SinkStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            SinkStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            SinkStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SinkStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            SinkStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            SinkStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SinkStream::Plain(s) => Pin::new(s).poll_flush(cx),
            SinkStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            SinkStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SinkStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            SinkStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            SinkStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn opts() -> TlsOptions {
        TlsOptions::default()
    }

    /// A CA and a client certificate signed by it, as PEM files.
    fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("sign");
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write");
            p
        };
        (
            write("ca.pem", ca_pem),
            write("client.pem", cert.pem()),
            write("client.key", key.serialize_pem()),
        )
    }

    fn config_error(o: &TlsOptions) -> String {
        match client_config(o) {
            Ok(_) => panic!("expected a tls settings error"),
            Err(e) => {
                assert!(!e.is_retriable(), "{e}");
                assert_eq!(e.kind(), "tls_config");
                e.to_string()
            }
        }
    }

    #[test]
    fn a_good_ca_and_client_pair_build_a_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = pki(dir.path());
        let o = TlsOptions {
            ca_file: Some(ca),
            client_cert: Some(cert),
            client_key: Some(key),
            ..opts()
        };
        let config = client_config(&o).expect("config");
        assert!(config.client_auth_cert_resolver.has_certs());
        let tls13 = TlsOptions {
            min_version: TlsVersion::Tls13,
            ..o
        };
        client_config(&tls13).expect("tls 1.3 only");
    }

    #[test]
    fn unusable_files_are_permanent_errors_that_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = pki(dir.path());
        let missing = dir.path().join("missing.pem");
        let msg = config_error(&TlsOptions {
            ca_file: Some(missing.clone()),
            ..opts()
        });
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert!(msg.contains("cannot read"), "{msg}");

        let not_pem = dir.path().join("not.pem");
        std::fs::write(&not_pem, "just some text\n").expect("write");
        let msg = config_error(&TlsOptions {
            ca_file: Some(not_pem.clone()),
            ..opts()
        });
        assert!(
            msg.contains("ca file") && msg.contains(&not_pem.display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("no PEM certificate"), "{msg}");

        // A certificate where the key should be.
        let msg = config_error(&TlsOptions {
            ca_file: Some(ca.clone()),
            client_cert: Some(cert.clone()),
            client_key: Some(cert.clone()),
            ..opts()
        });
        assert!(
            msg.contains("client key") && msg.contains(&cert.display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("no PEM private key"), "{msg}");

        // A key where the certificate should be.
        let msg = config_error(&TlsOptions {
            ca_file: Some(ca),
            client_cert: Some(key.clone()),
            client_key: Some(key),
            ..opts()
        });
        assert!(msg.contains("client certificate"), "{msg}");
    }

    #[test]
    fn a_broken_key_file_is_named_but_never_quoted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, _) = pki(dir.path());
        let key = dir.path().join("broken.key");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nTOPSECRET!!notbase64\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let msg = config_error(&TlsOptions {
            ca_file: Some(ca),
            client_cert: Some(cert),
            client_key: Some(key.clone()),
            ..opts()
        });
        assert!(msg.contains(&key.display().to_string()), "{msg}");
        assert!(
            !msg.contains("TOPSECRET"),
            "key material in an error: {msg}"
        );
    }

    #[test]
    fn a_client_certificate_with_another_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, _) = pki(dir.path());
        let other = dir.path().join("other.key");
        std::fs::write(
            &other,
            rcgen::KeyPair::generate().expect("key").serialize_pem(),
        )
        .expect("write");
        let msg = config_error(&TlsOptions {
            ca_file: Some(ca),
            client_cert: Some(cert),
            client_key: Some(other),
            ..opts()
        });
        assert!(msg.contains("cannot be used together"), "{msg}");
    }

    #[test]
    fn the_verification_name_is_the_host_or_the_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _, _) = pki(dir.path());
        let o = TlsOptions {
            ca_file: Some(ca),
            ..opts()
        };
        let c = TlsClient::new("s", "127.0.0.1", &o).expect("ip");
        assert_eq!(c.server_name.to_str(), "127.0.0.1");
        let c = TlsClient::new("s", "[::1]", &o).expect("ipv6 literal");
        assert_eq!(c.server_name.to_str(), "::1");
        let named = TlsOptions {
            server_name: Some("siem.example.com".into()),
            ..o.clone()
        };
        let c = TlsClient::new("s", "10.0.0.1", &named).expect("override");
        assert_eq!(c.server_name.to_str(), "siem.example.com");
        let bad = TlsOptions {
            server_name: Some("not a name!".into()),
            ..o
        };
        assert!(matches!(
            TlsClient::new("s", "h", &bad),
            Err(SinkError::TlsConfig { .. })
        ));
    }

    #[test]
    fn tls_records_are_recognised() {
        assert!(looks_like_tls(b"\x15\x03\x03\x00\x02\x02\x28"));
        assert!(looks_like_tls(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_tls(b"12 <13>1 hello"));
        assert!(!looks_like_tls(b"\x15"));
    }
}
