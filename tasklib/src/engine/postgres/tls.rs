//! TLS to PostgreSQL: the one place that reads `sslmode` and `sslrootcert` and builds the TLS
//! connector, for every connection tasklib opens. The pool (sqlx, through SeaORM) is given
//! the URL from [`pool_url`]; the connections tokio-postgres makes (the connect probe, the
//! workers' `LISTEN`, the result waiters' `LISTEN`) come from [`connect`].
//!
//! The settings have libpq's meanings:
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked |
//! | `require` | always | not checked; with `sslrootcert`, checked as `verify-ca` |
//! | `verify-ca` | always | must chain to `sslrootcert`, else to the system's roots |
//! | `verify-full` | always | same, and must name the URL's host |
//!
//! With `sslrootcert`, tasklib's own connections trust only that file, as libpq does; sqlx
//! trusts it in addition to the system's roots (see `docs/deployment.md`). rustls with the
//! ring provider does the TLS; OpenSSL is never used. No channel binding is offered
//! (SCRAM authentication works without it).

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{Client, Connection, Socket};

use crate::config::SslMode;
use crate::url::RedactedUrl;
use crate::{Error, Result};

/// The URL parameters naming the mode: libpq's, and sqlx's alias.
const SSLMODE: &[&str] = &["sslmode", "ssl-mode"];
/// The URL parameters naming the root certificate: libpq's, and sqlx's aliases.
const SSLROOTCERT: &[&str] = &["sslrootcert", "ssl-root-cert", "ssl-ca"];
/// Both, for replacing them.
const TLS_PARAMS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
];

/// `sslmode` and `sslrootcert` as the URL gives them.
///
/// # Errors
/// [`Error::InvalidConfig`] when `sslmode` is not one of libpq's modes.
pub(crate) fn url_settings(url: &RedactedUrl) -> Result<(Option<SslMode>, Option<PathBuf>)> {
    let mode = url
        .query_param(SSLMODE)
        .map(|mode| mode.parse::<SslMode>())
        .transpose()?;
    let root = url
        .query_param(SSLROOTCERT)
        .filter(|root| !root.is_empty())
        .map(PathBuf::from);
    Ok((mode, root))
}

/// The URL with `sslmode` and `sslrootcert` replaced by these (left out when `None`).
///
/// # Errors
/// [`Error::InvalidConfig`] when the URL is not a URL, or the path is not UTF-8.
pub(crate) fn with_settings(
    url: &RedactedUrl,
    mode: Option<SslMode>,
    root: Option<&Path>,
) -> Result<RedactedUrl> {
    let root = root
        .map(|path| {
            path.to_str().ok_or_else(|| Error::InvalidConfig {
                field: "ssl_root_cert",
                reason: format!("`{}` is not valid UTF-8: rename the file", path.display()),
            })
        })
        .transpose()?;
    let mut add = Vec::new();
    if let Some(mode) = mode {
        add.push(("sslmode", mode.as_str()));
    }
    if let Some(root) = root {
        add.push(("sslrootcert", root));
    }
    url.with_query_params(TLS_PARAMS, &add)
        .ok_or_else(|| Error::InvalidConfig {
            field: "database_url",
            reason: "must be a postgres:// URL to carry the TLS settings (sslmode, sslrootcert)"
                .to_owned(),
        })
}

/// The URL the pool (sqlx) connects with. sqlx reads `sslmode` and `sslrootcert` itself, but
/// its `require` never checks the certificate: with `sslrootcert` it is told `verify-ca`, as
/// libpq would do. The mode is always written out, so that sqlx's own fallback to the
/// `PGSSLMODE` variable cannot make it differ from tasklib's other connections.
///
/// # Errors
/// [`Error::InvalidConfig`] when `sslmode` is not one of libpq's modes.
pub(crate) fn pool_url(url: &RedactedUrl) -> Result<RedactedUrl> {
    let settings = Settings::from_url(url)?;
    Ok(with_settings(
        url,
        Some(settings.pool_mode()),
        settings.root_cert.as_deref(),
    )
    .unwrap_or_else(|_| url.clone()))
}

/// A tokio-postgres connection over [`connect`]'s TLS.
pub(crate) type PgConnection = Connection<Socket, RustlsStream>;

/// Why [`connect`] failed.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// TLS could not be set up as the settings ask ([`Error::Tls`]), or `sslmode` is invalid
    /// ([`Error::InvalidConfig`]).
    Tls(Error),
    /// Anything else the driver said: connection refused, authentication failed, no such
    /// database.
    Driver(tokio_postgres::Error),
}

impl ConnectError {
    /// One line for logs and worker events; never holds the password.
    pub(crate) fn reason(&self) -> String {
        match self {
            ConnectError::Tls(error) => error.to_string(),
            ConnectError::Driver(error) => crate::task::error_chain(error),
        }
    }
}

/// Opens one tokio-postgres connection to `url`, with TLS as its `sslmode` and `sslrootcert`
/// say.
///
/// # Errors
/// [`ConnectError::Tls`] when the TLS settings cannot be honoured (an unreadable root
/// certificate, a server without TLS under `require`, a refused certificate),
/// [`ConnectError::Driver`] for everything else.
pub(crate) async fn connect(
    url: &RedactedUrl,
) -> std::result::Result<(Client, PgConnection), ConnectError> {
    let settings = Settings::from_url(url).map_err(ConnectError::Tls)?;
    let tls =
        MakeRustls::new(&settings).map_err(|failure| ConnectError::Tls(failure.into_error(url)))?;
    // tokio-postgres knows only disable, prefer and require (and rejects `sslrootcert`):
    // the certificate checks are the connector's.
    let driver_mode = match settings.mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    let driver_url = url
        .with_query_params(TLS_PARAMS, &[("sslmode", driver_mode)])
        .unwrap_or_else(|| url.clone());
    tokio_postgres::connect(driver_url.expose(), tls)
        .await
        .map_err(|error| classify(url, &settings, error))
}

/// The effective settings of one URL.
#[derive(Debug, Clone)]
struct Settings {
    mode: SslMode,
    root_cert: Option<PathBuf>,
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing (the handshake's signatures still are).
    Nothing,
    /// That it chains to a trusted root.
    Chain,
    /// That it chains to a trusted root and names the host.
    ChainAndName,
}

impl Settings {
    fn from_url(url: &RedactedUrl) -> Result<Settings> {
        let (mode, root_cert) = url_settings(url)?;
        Ok(Settings {
            mode: mode.unwrap_or_default(),
            root_cert,
        })
    }

    /// libpq's rules: `require` with a root certificate checks the chain.
    fn check(&self) -> Check {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Check::Nothing,
            SslMode::Require if self.root_cert.is_none() => Check::Nothing,
            SslMode::Require | SslMode::VerifyCa => Check::Chain,
            SslMode::VerifyFull => Check::ChainAndName,
        }
    }

    /// The mode sqlx must be given for the same checks.
    fn pool_mode(&self) -> SslMode {
        match self.check() {
            Check::Chain if self.mode == SslMode::Require => SslMode::VerifyCa,
            _ => self.mode,
        }
    }

    /// The mode as the user wrote it, for messages.
    fn describe(&self) -> String {
        if self.mode == SslMode::Require && self.root_cert.is_some() {
            "sslmode=require with sslrootcert, checked as verify-ca".to_owned()
        } else {
            format!("sslmode={}", self.mode)
        }
    }

    /// The advice for skipping the certificate check.
    fn skip_check_advice(&self) -> &'static str {
        if self.root_cert.is_some() && matches!(self.mode, SslMode::Require) {
            "or leave sslrootcert out to encrypt without checking the certificate"
        } else {
            "or use sslmode=require without sslrootcert to encrypt without checking it"
        }
    }
}

/// A failure to set up TLS, before a connection or during its handshake.
#[derive(Debug)]
struct Failure {
    reason: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Failure {
    fn new(reason: String, source: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Failure {
            reason,
            source: Some(source.into()),
        }
    }

    fn into_error(self, url: &RedactedUrl) -> Error {
        Error::Tls {
            url: url.clone(),
            reason: self.reason,
            source: self.source,
        }
    }
}

/// Turns a driver error into [`Error::Tls`] when TLS is what failed.
fn classify(url: &RedactedUrl, settings: &Settings, error: tokio_postgres::Error) -> ConnectError {
    let handshake = error
        .source()
        .and_then(|source| source.downcast_ref::<HandshakeError>())
        .map(|handshake| handshake.reason(settings));
    if let Some(reason) = handshake {
        return ConnectError::Tls(Failure::new(reason, error).into_error(url));
    }
    // tokio-postgres's words when the server answers the TLS request with "no".
    let refused = !matches!(settings.mode, SslMode::Disable | SslMode::Prefer)
        && crate::task::error_chain(&error).contains("does not support TLS");
    if refused {
        let socket = if is_unix_socket(url) {
            " (connections over a Unix socket never use TLS)"
        } else {
            ""
        };
        let reason = format!(
            "the server does not offer TLS{socket}, and {} requires it: turn on `ssl` in the \
             server's configuration, or use sslmode=prefer (TLS when offered) or sslmode=disable",
            settings.describe()
        );
        return ConnectError::Tls(Failure::new(reason, error).into_error(url));
    }
    ConnectError::Driver(error)
}

/// Whether the URL names a Unix socket directory as its host (percent-encoded, or `host=`).
fn is_unix_socket(url: &RedactedUrl) -> bool {
    let in_host = url::Url::parse(url.expose())
        .ok()
        .and_then(|parsed| parsed.host_str().map(str::to_owned))
        .is_some_and(|host| host.is_empty() || host.to_ascii_lowercase().starts_with("%2f"));
    in_host
        || url
            .query_param(&["host"])
            .is_some_and(|h| h.starts_with('/'))
}

/// The trusted roots: the `sslrootcert` file's certificates only, or the system's.
fn roots(settings: &Settings) -> std::result::Result<Arc<RootCertStore>, Failure> {
    let Some(path) = &settings.root_cert else {
        let system = system_roots();
        if system.is_empty() {
            return Err(Failure {
                reason: format!(
                    "{} checks the server's certificate, but this system trusts no root \
                     certificates: set sslrootcert to the CA certificate that signed the \
                     server's, or install the system's CA bundle",
                    settings.describe()
                ),
                source: None,
            });
        }
        return Ok(system);
    };
    let pem = std::fs::read(path).map_err(|error| {
        Failure::new(
            format!(
                "cannot read sslrootcert `{}`: check the path and its permissions, or leave \
                 sslrootcert out to trust the system's roots",
                path.display()
            ),
            error,
        )
    })?;
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let bad = |error: Box<dyn StdError + Send + Sync>| {
            Failure::new(
                format!(
                    "sslrootcert `{}` holds an unreadable certificate: it must be the PEM \
                     certificate (-----BEGIN CERTIFICATE-----) of the CA that signed the server's",
                    path.display()
                ),
                error,
            )
        };
        let cert = cert.map_err(|e| bad(Box::new(e)))?;
        store.add(cert).map_err(|e| bad(Box::new(e)))?;
    }
    if store.is_empty() {
        return Err(Failure {
            reason: format!(
                "sslrootcert `{}` holds no PEM certificate: it must be the certificate \
                 (-----BEGIN CERTIFICATE-----) of the CA that signed the server's",
                path.display()
            ),
            source: None,
        });
    }
    Ok(Arc::new(store))
}

/// The system's trusted roots (and `SSL_CERT_FILE`/`SSL_CERT_DIR`), loaded once per process:
/// the same set the pool's sqlx trusts.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(%error, "could not load some of the system's root certificates");
        }
        let mut store = RootCertStore::empty();
        let (_added, _ignored) = store.add_parsable_certificates(found.certs);
        Arc::new(store)
    }))
}

/// Makes a rustls connector per connection.
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    fn new(settings: &Settings) -> std::result::Result<MakeRustls, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| {
                Failure::new(
                    "rustls refused its default protocol versions".to_owned(),
                    error,
                )
            })?;
        let verifier: Arc<dyn ServerCertVerifier> = match settings.check() {
            Check::Nothing => Arc::new(AnyCertificate { provider }),
            check => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(roots(settings)?, provider)
                        .build()
                        .map_err(|error| {
                            Failure::new("the root certificates cannot be used".to_owned(), error)
                        })?;
                if check == Check::Chain {
                    Arc::new(AnyHostName { webpki })
                } else {
                    webpki
                }
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

impl MakeTlsConnect<Socket> for MakeRustls {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnect;
    type Error = HandshakeError;

    fn make_tls_connect(&mut self, host: &str) -> std::result::Result<RustlsConnect, Self::Error> {
        // Called for Unix sockets too, with an empty host: fail only if TLS is attempted.
        Ok(RustlsConnect {
            config: Arc::clone(&self.config),
            host: host.to_owned(),
        })
    }
}

/// The handshake of one connection.
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
    host: String,
}

impl TlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type Error = HandshakeError;
    type Future = BoxFuture<'static, std::result::Result<RustlsStream, HandshakeError>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.clone()).map_err(|error| HandshakeError {
                problem: Problem::BadHostName,
                host: self.host.clone(),
                source: Box::new(error),
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await
                .map(RustlsStream)
                .map_err(|error| HandshakeError {
                    problem: Problem::of(&error),
                    host: self.host,
                    source: Box::new(error),
                })
        })
    }
}

/// What went wrong in a handshake.
#[derive(Debug, Clone, Copy)]
enum Problem {
    WrongHost,
    Untrusted,
    Expired,
    OtherCertificate,
    BadHostName,
    Handshake,
}

impl Problem {
    fn of(error: &io::Error) -> Problem {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::InvalidCertificate(cert)) => match cert {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => Problem::WrongHost,
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    Problem::Untrusted
                }
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Problem::Expired,
                _ => Problem::OtherCertificate,
            },
            _ => Problem::Handshake,
        }
    }
}

/// A failed TLS handshake, as the connector hands it to tokio-postgres (which keeps it as
/// its error's source, where [`classify`] finds it).
#[derive(Debug)]
pub(crate) struct HandshakeError {
    problem: Problem,
    host: String,
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl HandshakeError {
    /// One line: what is wrong and which setting to change.
    fn reason(&self, settings: &Settings) -> String {
        let host = &self.host;
        let mode = settings.describe();
        let skip = settings.skip_check_advice();
        match self.problem {
            Problem::WrongHost => format!(
                "the server's certificate is not valid for the host name `{host}` ({mode}): \
                 connect with a host name the certificate names, or use sslmode=verify-ca to \
                 check only that a trusted CA signed it"
            ),
            Problem::Untrusted => {
                let trusted = match &settings.root_cert {
                    Some(path) => format!("the CA in sslrootcert `{}`", path.display()),
                    None => "a CA this system trusts".to_owned(),
                };
                format!(
                    "the server's certificate is not signed by {trusted} ({mode}): set \
                     sslrootcert to the certificate of the CA that signed it, {skip}"
                )
            }
            Problem::Expired => format!(
                "the server's certificate has expired or is not valid yet ({mode}): renew it \
                 on the server, {skip}"
            ),
            Problem::OtherCertificate => format!(
                "the server's certificate was refused ({mode}): check it and sslrootcert, {skip}"
            ),
            Problem::BadHostName => format!(
                "`{host}` is not a host name or IP address a certificate can be checked \
                 against ({mode}): connect by the server's DNS name or address"
            ),
            Problem::Handshake => format!(
                "the TLS handshake with `{host}` failed ({mode}): check the server's ssl \
                 settings, or use sslmode=disable if the connection need not be encrypted"
            ),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS handshake with `{}` failed", self.host)
    }
}

impl StdError for HandshakeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// A TLS session over a tokio-postgres socket.
pub(crate) struct RustlsStream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `prefer`, and `require` without a root certificate: any certificate, as libpq. The
/// handshake's signatures are still verified, so the session is encrypted to whoever holds
/// the certificate's key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyHostName {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // The name is checked after the chain: a name error means the chain is good.
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<Settings> {
        Settings::from_url(&RedactedUrl::new(url))
    }

    #[test]
    fn modes_check_what_libpq_checks() -> Result<()> {
        let cases = [
            ("postgres://h/db", Check::Nothing, SslMode::Prefer),
            (
                "postgres://h/db?sslmode=disable",
                Check::Nothing,
                SslMode::Disable,
            ),
            (
                "postgres://h/db?sslmode=require",
                Check::Nothing,
                SslMode::Require,
            ),
            (
                "postgres://h/db?sslmode=require&sslrootcert=/ca.pem",
                Check::Chain,
                SslMode::VerifyCa,
            ),
            (
                "postgres://h/db?sslmode=verify-ca",
                Check::Chain,
                SslMode::VerifyCa,
            ),
            (
                "postgres://h/db?ssl-mode=verify-full&ssl-ca=/ca.pem",
                Check::ChainAndName,
                SslMode::VerifyFull,
            ),
        ];
        for (url, check, pool_mode) in cases {
            let s = settings(url)?;
            assert_eq!(s.check(), check, "{url}");
            assert_eq!(s.pool_mode(), pool_mode, "{url}");
        }
        assert!(matches!(
            settings("postgres://h/db?sslmode=verify_full"),
            Err(Error::InvalidConfig {
                field: "sslmode",
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn the_pool_url_spells_the_settings_out() -> Result<()> {
        let pool = |url: &str| pool_url(&RedactedUrl::new(url)).map(|u| u.expose().to_owned());
        assert_eq!(
            pool("postgres://u:pw@h/db")?,
            "postgres://u:pw@h/db?sslmode=prefer"
        );
        assert_eq!(
            pool("postgres://u:pw@h/db?sslrootcert=/c/ca.pem&sslmode=require&application_name=a")?,
            "postgres://u:pw@h/db?application_name=a&sslmode=verify-ca&sslrootcert=/c/ca.pem"
        );
        Ok(())
    }

    #[test]
    fn unix_socket_hosts_are_recognised() {
        assert!(is_unix_socket(&RedactedUrl::new(
            "postgres://postgres@%2Ftmp%2Fpg:5432/db"
        )));
        assert!(is_unix_socket(&RedactedUrl::new(
            "postgres://postgres@localhost/db?host=/run/postgresql"
        )));
        assert!(!is_unix_socket(&RedactedUrl::new(
            "postgres://postgres@localhost/db"
        )));
    }

    #[test]
    fn missing_root_file_is_a_clear_failure() {
        let s = Settings {
            mode: SslMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/tasklib-ca.pem")),
        };
        let failure = MakeRustls::new(&s)
            .err()
            .map(|f| f.reason)
            .unwrap_or_default();
        assert!(
            failure.contains("cannot read sslrootcert `/nonexistent/tasklib-ca.pem`"),
            "{failure}"
        );
    }
}
