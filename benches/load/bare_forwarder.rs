//! The floor under benches/load.sh's allowed-HTTP figure: a forward proxy made
//! of the same parts as hallpass (tokio's single-threaded runtime, hyper 1's
//! HTTP/1 server and client, one kept upstream connection per client
//! connection, TCP_NODELAY) that does nothing else: no policy, no login, no
//! framing guard, no header hygiene, no access log. What hallpass costs above
//! it is hallpass's own work; what it costs above the direct client is the
//! second loopback hop and hyper.
//!
//! Not a proxy to run: it forwards every request to the one ORIGIN it is
//! given, whatever the request names.
//!
//! Usage: `bench-bare-forwarder ORIGIN_ADDR` — prints `listening on ADDR`.
use std::net::SocketAddr;
use std::rc::Rc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1 as client;
use hyper::server::conn::http1 as server;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

type Body = http_body_util::combinators::BoxBody<bytes::Bytes, hyper::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let origin: SocketAddr = std::env::args()
        .nth(1)
        .ok_or("usage: bench-bare-forwarder ORIGIN_ADDR")?
        .parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::task::spawn_local(serve(stream, origin));
        }
    })
}

async fn serve(stream: TcpStream, origin: SocketAddr) {
    let upstream: Rc<Mutex<Option<client::SendRequest<Incoming>>>> = Rc::default();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let upstream = upstream.clone();
        async move { forward(&upstream, origin, req).await }
    });
    let _ = server::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn forward(
    upstream: &Mutex<Option<client::SendRequest<Incoming>>>,
    origin: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()?;
    let mut kept = upstream.lock().await;
    let mut sender = match kept.take() {
        Some(sender) if sender.is_ready() => sender,
        _ => {
            let stream = TcpStream::connect(origin).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = client::handshake(TokioIo::new(stream)).await?;
            tokio::task::spawn_local(conn);
            sender
        }
    };
    let response = sender
        .send_request(Request::from_parts(parts, body))
        .await?;
    *kept = Some(sender);
    Ok(response.map(BodyExt::boxed))
}
