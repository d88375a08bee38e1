//! Prometheus behind bearer-token authentication and TLS, as managed Prometheus services
//! (and Prometheus behind an ingress with an auth proxy) are reached in production.
//!
//! [`AuthProxy::start`] generates a fresh CA and a serving certificate for `127.0.0.1` and
//! `localhost`, writes the CA to `dir/ca.pem`, and serves HTTPS (HTTP/1.1) on a free loopback
//! port. A request without `Authorization: Bearer <token>` (or with another token) is answered
//! `401 Unauthorized` with a `WWW-Authenticate: Bearer` challenge; an authorized one is
//! forwarded to `http://<upstream>` with its method, path and query, body and `Content-Type`,
//! and the upstream's status, body and `Content-Type` are returned. If the upstream cannot be
//! reached (say Prometheus is stopped) the proxy answers `502 Bad Gateway`.
//!
//! The proxy counts the requests it forwarded and those it refused, so tests can check that a
//! client really sent (or did not send) its credentials. TLS uses rustls with the aws-lc-rs
//! provider, chosen explicitly rather than through the process-wide default. The proxy stops
//! listening when the [`AuthProxy`] is dropped and closes its connections (in-flight requests
//! finish first).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// Largest request body forwarded.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the upstream may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTPS reverse proxy that demands a bearer token. See the module documentation.
#[derive(Debug)]
pub struct AuthProxy {
    addr: SocketAddr,
    ca_pem: String,
    ca_path: PathBuf,
    counters: Arc<Counters>,
    acceptor: JoinHandle<()>,
    /// Dropping it shuts the HTTP server down gracefully, closing idle keep-alive
    /// connections too.
    _shutdown: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct Counters {
    authorized: AtomicU64,
    refused: AtomicU64,
}

struct ProxyState {
    upstream: SocketAddr,
    expected: String,
    client: reqwest::Client,
    counters: Arc<Counters>,
}

impl AuthProxy {
    /// Starts a proxy to `http://upstream` that lets through requests bearing `token`.
    /// Writes its CA certificate to `dir/ca.pem` (creating `dir` if needed).
    pub async fn start(upstream: SocketAddr, token: &str, dir: &Path) -> anyhow::Result<AuthProxy> {
        if token.is_empty() || token.chars().any(|c| c.is_ascii_whitespace()) {
            bail!("the bearer token must be non-empty and without whitespace");
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the proxy directory {}", dir.display()))?;
        let pki = generate_pki().context("generating the proxy's certificates")?;
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, &pki.ca_pem)
            .with_context(|| format!("writing {}", ca_path.display()))?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(pki.chain, pki.key)
            .context("configuring the serving certificate")?;
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the proxy to 127.0.0.1:0")?;
        let addr = listener
            .local_addr()
            .context("reading the proxy's address")?;

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .context("building the upstream HTTP client")?;
        let counters = Arc::new(Counters::default());
        let state = Arc::new(ProxyState {
            upstream,
            expected: token.to_string(),
            client,
            counters: Arc::clone(&counters),
        });
        let app = Router::new().fallback(forward).with_state(state);

        let (streams_tx, streams_rx) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(accept_tls(listener, acceptor, streams_tx));
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let listener = TlsListener {
                streams: streams_rx,
                addr,
            };
            let shutdown = async move {
                // Resolves when the sender is dropped.
                let _ = shutdown_rx.await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(%addr, error = %err, "auth proxy stopped");
            }
        });

        tracing::debug!(%addr, %upstream, "auth proxy started");
        Ok(AuthProxy {
            addr,
            ca_pem: pki.ca_pem,
            ca_path,
            counters,
            acceptor: acceptor_task,
            _shutdown: shutdown_tx,
        })
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the proxy's serving certificate.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Where the CA certificate was written (`dir/ca.pem`).
    pub fn ca_path(&self) -> PathBuf {
        self.ca_path.clone()
    }

    /// Requests that carried the right token and were forwarded (whatever the upstream
    /// answered).
    pub fn authorized_requests(&self) -> u64 {
        self.counters.authorized.load(Ordering::SeqCst)
    }

    /// Requests answered 401 for lack of the right token.
    pub fn refused_requests(&self) -> u64 {
        self.counters.refused.load(Ordering::SeqCst)
    }
}

impl Drop for AuthProxy {
    fn drop(&mut self) {
        // Stops listening; the server then shuts down as `_shutdown` is dropped.
        self.acceptor.abort();
    }
}

/// Why a request is refused, if it is.
enum Refusal {
    Missing,
    WrongToken,
}

fn check_token(headers: &HeaderMap, expected: &str) -> Result<(), Refusal> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(Refusal::Missing);
    };
    let value = value.to_str().map_err(|_| Refusal::WrongToken)?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(Refusal::Missing);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Missing);
    }
    if token.trim() == expected {
        Ok(())
    } else {
        Err(Refusal::WrongToken)
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    if let Err(refusal) = check_token(request.headers(), &state.expected) {
        state.counters.refused.fetch_add(1, Ordering::SeqCst);
        let challenge = match refusal {
            Refusal::Missing => "Bearer",
            Refusal::WrongToken => "Bearer error=\"invalid_token\"",
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, challenge)],
            "401 Unauthorized: missing or wrong bearer token\n",
        )
            .into_response();
    }
    state.counters.authorized.fetch_add(1, Ordering::SeqCst);

    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str());
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {err}\n"),
            )
                .into_response();
        }
    };
    let mut upstream_request = state
        .client
        .request(parts.method, format!("http://{}{path}", state.upstream))
        .body(body);
    if let Some(content_type) = parts.headers.get(CONTENT_TYPE) {
        upstream_request = upstream_request.header(CONTENT_TYPE, content_type);
    }
    let upstream_response = match upstream_request.send().await {
        Ok(response) => response,
        Err(err) => return bad_gateway(state.upstream, &err),
    };
    let status = upstream_response.status();
    let content_type = upstream_response.headers().get(CONTENT_TYPE).cloned();
    let body = match upstream_response.bytes().await {
        Ok(body) => body,
        Err(err) => return bad_gateway(state.upstream, &err),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    response
}

fn bad_gateway(upstream: SocketAddr, err: &reqwest::Error) -> Response {
    tracing::debug!(%upstream, error = %err, "auth proxy: upstream failed");
    (
        StatusCode::BAD_GATEWAY,
        format!("upstream {upstream}: {err}\n"),
    )
        .into_response()
}

/// Accepts TCP connections and completes TLS handshakes concurrently, handing finished
/// streams to the HTTP server, so a client that stalls its handshake blocks no one else.
async fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    streams: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Typically out of file descriptors: back off rather than spin.
                tracing::warn!(error = %err, "auth proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    // The server is gone only when the proxy is being dropped.
                    let _ = streams.send((tls, peer)).await;
                }
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "auth proxy: TLS handshake failed");
                }
                Err(_) => tracing::debug!(%peer, "auth proxy: TLS handshake timed out"),
            }
        });
    }
}

/// The HTTP server's view of [`accept_tls`]: a listener yielding established TLS streams.
struct TlsListener {
    streams: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(accepted) => accepted,
            // The acceptor task ended, which only happens when the proxy is dropped (and
            // this task with it): there will be no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

struct Pki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A CA and a serving certificate for `localhost` and `127.0.0.1` signed by it.
fn generate_pki() -> Result<Pki, rcgen::Error> {
    let (ca_pem, _, issuer) = crate::certs::new_ca("sluice-e2e-authproxy-ca")?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "sluice-e2e-authproxy");
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params.signed_by(&key, &issuer)?;

    Ok(Pki {
        ca_pem,
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn token_check() {
        assert!(check_token(&headers(Some("Bearer s3cret")), "s3cret").is_ok());
        assert!(check_token(&headers(Some("bearer s3cret")), "s3cret").is_ok());
        assert!(matches!(
            check_token(&headers(None), "s3cret"),
            Err(Refusal::Missing)
        ));
        assert!(matches!(
            check_token(&headers(Some("Basic czNjcmV0")), "s3cret"),
            Err(Refusal::Missing)
        ));
        assert!(matches!(
            check_token(&headers(Some("Bearer nope")), "s3cret"),
            Err(Refusal::WrongToken)
        ));
        assert!(matches!(
            check_token(&headers(Some("Bearer s3cret2")), "s3cret"),
            Err(Refusal::WrongToken)
        ));
    }
}
