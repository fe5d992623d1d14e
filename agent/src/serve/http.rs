//! The HTTP side of `serve`: `/metrics` (OpenMetrics when the scraper asks for it, else
//! Prometheus' text format 0.0.4) and `/healthz`. It runs on a thread of its own with its
//! own small runtime, so a scrape is answered at once even while the agent is loading its
//! programs or ending its run: with whatever the metrics hold then, never a hang.
use std::{
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::registry::Registry;

use super::metrics::{openmetrics, prometheus_text};

/// The default listen address: loopback only (`--listen 0.0.0.0:10690` for a DaemonSet).
/// 10690 is outside 9100–9999, which the Prometheus wiki's default-port list has used up.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10690";

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "`{0}` is not an address to listen on: give IP:PORT, e.g. {DEFAULT_LISTEN} or 0.0.0.0:10690"
    )]
    Address(String),
    #[error(
        "cannot listen on {addr}: {source}; is another cowtrace serve (or another exporter) running? pick a free port with --listen"
    )]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP server: {0}")]
    Start(std::io::Error),
}

/// Bind before anything is attached, so that a port in use fails first.
pub fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| ServeError::Address(addr.to_string()))?;
    let l = TcpListener::bind(sa).map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    l.set_nonblocking(true).map_err(ServeError::Start)?;
    Ok(l)
}

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    /// True once every program is attached.
    ready: Arc<AtomicBool>,
}

/// Whether the scraper asked for OpenMetrics (Prometheus does, by default).
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

async fn metrics(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let om = openmetrics(&s.registry);
    if wants_openmetrics(accept) {
        ([(header::CONTENT_TYPE, OPENMETRICS)], om).into_response()
    } else {
        (
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            prometheus_text(&om),
        )
            .into_response()
    }
}

async fn healthz(State(s): State<Shared>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: attaching the programs\n",
        )
            .into_response()
    }
}

async fn other() -> Response {
    (
        StatusCode::NOT_FOUND,
        "cowtrace serve: /metrics (Prometheus) and /healthz\n",
    )
        .into_response()
}

/// Serve on `listener` from a thread of its own. The thread ends with the process.
pub fn spawn(
    listener: TcpListener,
    registry: Registry,
    ready: Arc<AtomicBool>,
) -> Result<(), ServeError> {
    let shared = Shared {
        registry: Arc::new(registry),
        ready,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(ServeError::Start)?;
    std::thread::Builder::new()
        .name("cowtrace-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let app = Router::new()
                    .route("/metrics", get(metrics))
                    .route("/healthz", get(healthz))
                    .fallback(other)
                    .with_state(shared);
                let l = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        log::error!("cannot serve /metrics: {e}");
                        return;
                    }
                };
                if let Err(e) = axum::serve(l, app).await {
                    log::error!("the /metrics server stopped: {e}");
                }
            });
        })
        .map_err(ServeError::Start)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }

    #[test]
    fn bad_addresses_and_ports_in_use_say_what_to_do() {
        let e = bind("localhost").unwrap_err().to_string();
        assert!(e.contains("IP:PORT"), "{e}");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = bind(&addr).unwrap_err().to_string();
        assert!(e.contains(&addr) && e.contains("--listen"), "{e}");
    }
}
