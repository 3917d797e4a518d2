//! CONNECT: decide on the name, reach the upstream, then open the tunnel.
//!
//! In: a CONNECT request with its canonical host and port, the identity and one
//! snapshot. Out: `200` and a tunnel task, or a refusal. The order matters:
//!
//! 1. The port must be allowed, and the name is decided, before anything is
//!    resolved or dialled.
//! 2. A blocked name is intercepted (no upstream connection at all) to show the
//!    block page inside TLS; without a CA it gets a `403`. Except: a name blocked
//!    only by a category or the band's default, where an allow entry names some
//!    of its URLs, is dialled and always intercepted, and each request inside is
//!    decided on its whole URL.
//! 3. An allowed name is resolved and dialled *before* the `200`, so a refused or
//!    unreachable destination is an honest `403`/`502`, not a dead tunnel. For a
//!    tunnel that will be intercepted, a live connection in the shared
//!    [`pool`](crate::pool) to the same host, port and a checked address of the
//!    name counts as reached: the name is still resolved and every address
//!    checked, but no TCP connection is dialled.
//! 4. The tunnel is intercepted ([`mitm`](crate::mitm)) unless interception is off
//!    or the policy's no-intercept list names the host; then it is spliced, after
//!    the ClientHello's SNI has been checked against the CONNECT name (an SNI for
//!    another name is domain fronting: closed and recorded).
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use policy::event::BlockKind;
use policy::host::{CanonicalHost, canonicalize};
use policy::{Action, Band, GroupId, Rank};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::auth::Identity;
use crate::block::PageKind;
use crate::idle::{SpliceEnd, splice};
use crate::listen::Phase;
use crate::request::{Access, ConnInfo, Refusal, ServedPage, Shared, connect_url};
use crate::snapshot::Snapshot;
use crate::target::TunnelName;
use crate::{Body, filter, mitm};

/// The largest ClientHello read while sniffing SNI (a real one is under 2 KiB;
/// post-quantum key shares push some towards 8 KiB).
const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// Handles one CONNECT.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    snap: Arc<Snapshot>,
    identity: Identity,
    host: CanonicalHost,
    port: u16,
    req: Request<Incoming>,
    access: &mut Access,
) -> Response<Body> {
    let Some((group, band)) = identity.resolve(&snap.policy) else {
        access.verdict = "block";
        return crate::auth::challenge();
    };
    let band = band.clone();
    let url = connect_url(&host, port);

    if !shared.dialer.destinations.port_allowed(port) {
        access.verdict = "block";
        let reason = format!("the web filter does not open connections to port {port}");
        return connect_refusal(
            BlockKind::Destination,
            PageKind::Blocked,
            &reason,
            &url,
            None,
        )
        .into_owned_page(&shared, &conn, &identity, &band)
        .await
        .response();
    }
    let decision = decide(&shared, &snap, group, &url);
    let tunnel = TunnelName {
        host: host.clone(),
        port,
    };
    // A host blocked only by a category or the default, where an allow entry
    // names some of its URLs (`bbc.co.uk/bitesize` for KS1), is opened and
    // intercepted: every request inside is decided on its whole URL, so the
    // allowed pages load and the rest get the block page.
    let opens_paths = |d: &filter::Decision| {
        shared.leaves.is_some()
            && matches!(d.verdict.rank, Rank::Category | Rank::Default)
            && snap.policy.may_allow_paths_on(group, &host)
    };
    let (decision, page) = match decision {
        Ok(d) if d.verdict.action == Action::Allow => (d, None),
        Ok(d) if opens_paths(&d) => (d, None),
        Ok(d) => {
            let page = connect_refusal(
                BlockKind::Policy,
                PageKind::Blocked,
                &d.verdict.reason,
                &url,
                Some(&d.verdict),
            )
            .into_owned_page(&shared, &conn, &identity, &band)
            .await;
            (d, Some(page))
        }
        Err(reason) => {
            let page = connect_refusal(
                BlockKind::DecisionFailed,
                PageKind::Blocked,
                reason,
                &url,
                None,
            )
            .into_owned_page(&shared, &conn, &identity, &band)
            .await;
            return blocked_tunnel(shared, conn, tunnel, page, req, access);
        }
    };
    if let Some(page) = page {
        return blocked_tunnel(shared, conn, tunnel, page, req, access);
    }

    let intercept = shared.leaves.is_some()
        && (decision.verdict.action == Action::Block
            || filter::intercept(&snap, &host, decision.mask));
    // An intercepted tunnel may start on a pooled connection; a spliced one
    // copies raw bytes and always gets a connection of its own.
    let upstream = if intercept {
        mitm::reach(&shared, &host, port, snap.generation)
            .await
            .map(Upstream::Intercepted)
    } else {
        shared
            .dialer
            .dial(&host, port)
            .await
            .map(|(stream, _addr)| Upstream::Spliced(stream))
    };
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::info!(error = %e, "tunnel destination failed");
            let (kind, page, reason) = crate::forward::failure_words(&e);
            access.verdict = if page == PageKind::Unreachable {
                "error"
            } else {
                "block"
            };
            return connect_refusal(kind, page, &reason, &url, None)
                .into_owned_page(&shared, &conn, &identity, &band)
                .await
                .response();
        }
    };
    access.verdict = "allow";
    let task_shared = shared.clone();
    spawn_tunnel(&shared, async move {
        let Some(client) = upgraded(req).await else {
            return;
        };
        match upstream {
            Upstream::Intercepted(reached) => {
                mitm::serve_intercepted(task_shared, conn, tunnel, identity, client, reached).await;
            }
            Upstream::Spliced(stream) => {
                splice_checked(task_shared, conn, tunnel, identity, band, client, stream).await;
            }
        }
    });
    Response::new(crate::full_body(""))
}

/// The upstream of an allowed tunnel, reached before the `200`.
enum Upstream {
    /// Intercepted: a fresh connection, or a live pooled one for the host.
    Intercepted(mitm::Reached),
    /// Spliced: a connection of its own, never pooled.
    Spliced(TcpStream),
}

fn decide(
    shared: &Shared,
    snap: &Snapshot,
    group: GroupId,
    url: &policy::CanonicalUrl,
) -> Result<filter::Decision, &'static str> {
    let _ = shared;
    filter::decide(snap, group, url).map_err(|e| {
        tracing::error!(error = %e, "decision failed: blocking");
        crate::request::FAIL_CLOSED_REASON
    })
}

/// The refusal of a CONNECT (the closure form cannot name its lifetimes).
fn connect_refusal<'a>(
    kind: BlockKind,
    page: PageKind,
    reason: &'a str,
    url: &policy::CanonicalUrl,
    verdict: Option<&'a policy::Verdict>,
) -> Refusal<'a> {
    Refusal {
        kind,
        page,
        reason,
        url: url.redacted(),
        method: "CONNECT",
        verdict,
    }
}

impl Refusal<'_> {
    async fn into_owned_page(
        self,
        shared: &Shared,
        conn: &ConnInfo,
        identity: &Identity,
        band: &Band,
    ) -> ServedPage {
        shared
            .refusal_page(conn, Some(identity), Some(&band.name), self)
            .await
    }
}

/// A blocked CONNECT: intercepted to show the page, or a plain 403 without a CA.
fn blocked_tunnel(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    page: ServedPage,
    req: Request<Incoming>,
    access: &mut Access,
) -> Response<Body> {
    access.verdict = "block";
    if shared.leaves.is_none() {
        return page.response();
    }
    let task_shared = shared.clone();
    spawn_tunnel(&shared, async move {
        let Some(client) = upgraded(req).await else {
            return;
        };
        mitm::serve_page(task_shared, conn, tunnel, client, page).await;
    });
    Response::new(crate::full_body(""))
}

/// Runs a tunnel as its own task: counted for shutdown, closed when the server
/// stops, in the request's span.
pub(crate) fn spawn_tunnel(
    shared: &Arc<Shared>,
    tunnel: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let active = shared.active.enter();
    let mut phase = shared.phase.clone();
    let span = tracing::debug_span!("tunnel");
    tokio::spawn(
        async move {
            tokio::select! {
                () = tunnel => {}
                _ = phase.wait_for(|p| *p == Phase::Stopped) => tracing::debug!("server stopped: tunnel closed"),
            }
            drop(active);
        }
        .instrument(span),
    );
}

async fn upgraded(req: Request<Incoming>) -> Option<TokioIo<hyper::upgrade::Upgraded>> {
    match hyper::upgrade::on(req).await {
        Ok(upgraded) => Some(TokioIo::new(upgraded)),
        Err(e) => {
            tracing::debug!(error = %e, "tunnel upgrade failed");
            None
        }
    }
}

/// Why a ClientHello could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// The first byte is not a TLS handshake record.
    #[error("not TLS: first byte {0:#04x}")]
    NotTls(u8),
    /// The client closed before a whole ClientHello.
    #[error("closed before a complete ClientHello")]
    Eof,
    /// Too many bytes without a complete ClientHello.
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    /// rustls could not parse it.
    #[error("malformed ClientHello: {0}")]
    Tls(rustls::Error),
    /// Reading failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads a ClientHello without answering it: returns every byte read (to hand
/// on unchanged to the upstream) and the SNI, if any.
pub async fn read_client_hello<R: AsyncRead + Unpin>(
    client: &mut R,
) -> Result<(Vec<u8>, Option<String>), HelloError> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(HelloError::Eof);
        }
        if seen.is_empty() && chunk[0] != 0x16 {
            return Err(HelloError::NotTls(chunk[0]));
        }
        seen.extend_from_slice(&chunk[..n]);
        if seen.len() > MAX_CLIENT_HELLO {
            return Err(HelloError::TooLarge);
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            acceptor.read_tls(&mut fresh)?;
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok((
                    seen,
                    accepted.client_hello().server_name().map(str::to_string),
                ));
            }
            Ok(None) => {}
            Err((e, _alert)) => return Err(HelloError::Tls(e)),
        }
    }
}

/// Splices a tunnel after checking that the SNI names the CONNECT host.
async fn splice_checked(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: TunnelName,
    identity: Identity,
    band: Band,
    mut client: TokioIo<hyper::upgrade::Upgraded>,
    mut upstream: TcpStream,
) {
    let hello = tokio::time::timeout(
        shared.settings.tls_handshake_timeout,
        read_client_hello(&mut client),
    )
    .await;
    let (bytes, sni) = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "spliced tunnel closed: no TLS ClientHello");
            return;
        }
        Err(_) => {
            tracing::info!("spliced tunnel closed: no ClientHello in time");
            return;
        }
    };
    if let Some(sni) = &sni {
        let same = canonicalize(sni).is_ok_and(|h| h == tunnel.host);
        if !same {
            let url = connect_url(&tunnel.host, tunnel.port).redacted();
            let reason = format!(
                "the connection asked for another site ({}) than the one it opened",
                sni.chars().take(100).collect::<String>()
            );
            let _ = shared
                .refusal_page(
                    &conn,
                    Some(&identity),
                    Some(&band.name),
                    Refusal {
                        kind: BlockKind::Fronting,
                        page: PageKind::Blocked,
                        reason: &reason,
                        url,
                        method: "CONNECT",
                        verdict: None,
                    },
                )
                .await;
            tracing::info!(sni = %sni, "spliced tunnel closed: SNI differs from the CONNECT name");
            return;
        }
    }
    if let Err(e) = upstream.write_all(&bytes).await {
        tracing::debug!(error = %e, "upstream closed before the ClientHello");
        return;
    }
    match splice(client, upstream, shared.settings.idle_timeout).await {
        SpliceEnd::Closed(up, down) => tracing::debug!(up, down, "spliced tunnel closed"),
        SpliceEnd::Idle => tracing::debug!("spliced tunnel idle: closed"),
        SpliceEnd::Failed(e) => tracing::debug!(error = %e, "spliced tunnel failed"),
    }
}
