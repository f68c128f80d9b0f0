//! The HTTP API and the web UI (`relive serve` on `[http] listen`, and
//! `relive ui --data DIR` over a data folder `relive ingest` filled).
//!
//! One axum router: JSON under `/api/v1/` (described by `/openapi.json`),
//! server-rendered pages (`/search`, `/incidents`, `/incidents/{id}`,
//! `/migrations`) with one hand-written script and one stylesheet compiled
//! into the binary, `/metrics` in Prometheus text, `/healthz`. Everything
//! but `/healthz`, `/login` and the two assets needs a token: scripts send
//! `Authorization: Bearer TOKEN`, a browser logs in once and carries an
//! `HttpOnly`, `SameSite=Strict` session cookie, and every state change it
//! makes carries the session's CSRF token.
//!
//! The handlers read the same stores the command line reads (the index,
//! `incidents.json`, the audit log, the silences, the metric store) and
//! call the same library functions; nothing here decides anything the CLI
//! does not.

mod api;
mod auth;
mod html;
mod link;
mod live;
mod openapi;
mod pages;
mod svg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

pub use auth::{Role, Tokens};

/// `[http]` in relive.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the API and UI (`relive serve`).
    pub enabled: bool,
    /// Where to listen; loopback by default.
    pub listen: SocketAddr,
    /// The admin token (approve, reject, silences, migrations); generated
    /// and stored under the data folder when not set.
    pub admin_token: Option<String>,
    /// The read-only token; generated and stored when not set.
    pub read_token: Option<String>,
    /// How long a browser session lasts, in hours.
    pub session_hours: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            admin_token: None,
            read_token: None,
            session_hours: 12,
        }
    }
}

/// The `[http]` section `relive config default` prints.
pub const DEFAULT_TOML: &str = r#"[http]
# The HTTP API and web UI of `relive serve` (and `relive ui`).
# enabled = true
# listen = "127.0.0.1:7300"        # loopback; every path but /healthz needs a token
# admin_token = "…"                 # approve, reject, silences, migrations; generated
# read_token = "…"                  #   and stored under --data/http when not set
# session_hours = 12                # how long a browser login lasts
"#;

/// What the server reads and where it reads it.
pub struct Context {
    /// The data folder.
    pub data: PathBuf,
    /// Pipeline counters (`relive serve`; empty for `relive ui`).
    pub registry: pipeline::Registry,
    /// Remediation settings (approvals check maintenance windows; hosts
    /// for migrations).
    pub remediation: remediate::config::RemediationConfig,
    /// Extra figures for `/metrics` and the status API (the collector's
    /// counters, alert and remediation counters), rendered on request.
    pub extra_metrics: Vec<Box<dyn Fn() -> Vec<Gauge> + Send + Sync>>,
    /// Receivers and what they listen on, for the status API.
    pub listening: serde_json::Value,
    /// The agents the collector's agent receiver has seen (`relive serve`).
    pub agents: Option<ingest::server::Agents>,
    /// `serve` or `ui`.
    pub mode: &'static str,
}

/// One sample for `/metrics`: family name, type (`counter`/`gauge`),
/// help, labels and value.
#[derive(Debug, Clone)]
pub struct Gauge {
    /// Family name (`relive_…`).
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// Shared by every handler.
pub(crate) struct AppState {
    pub(crate) ctx: Context,
    pub(crate) tokens: Tokens,
    pub(crate) sessions: auth::Sessions,
    pub(crate) index: Mutex<Option<Arc<index::EventIndex>>>,
    pub(crate) live: live::Live,
    pub(crate) session_hours: u64,
    /// The shipped playbooks, read once.
    pub(crate) kb: std::sync::OnceLock<Arc<correlate::Knowledge>>,
}

impl AppState {
    /// The shipped playbooks (parsed on first use, then kept).
    pub(crate) fn knowledge(&self) -> Result<Arc<correlate::Knowledge>, api::ApiError> {
        if let Some(kb) = self.kb.get() {
            return Ok(kb.clone());
        }
        let kb = Arc::new(correlate::shipped::knowledge().map_err(api::ApiError::internal)?);
        Ok(self.kb.get_or_init(|| kb).clone())
    }

    /// The index, opened on first use (a `relive ui` over an empty folder
    /// has none until something is ingested).
    pub(crate) fn index(&self) -> Result<Option<Arc<index::EventIndex>>, index::IndexError> {
        let mut slot = self.index.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = slot.as_ref() {
            index.refresh()?;
            return Ok(Some(index.clone()));
        }
        let dir = self.ctx.data.join("index");
        if !dir.join("meta.json").exists() {
            return Ok(None);
        }
        let index = Arc::new(index::EventIndex::open(&dir)?);
        *slot = Some(index.clone());
        Ok(Some(index))
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The tokens could not be read or stored.
    #[error("{0}")]
    Tokens(String),
}

/// A running server.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Where generated tokens are stored (None when both are configured).
    pub token_file: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Running {
    /// Stops accepting, lets open requests finish (live streams end) and
    /// waits at most `grace`.
    pub async fn stop(self, grace: std::time::Duration) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(grace, self.task).await;
    }
}

/// Starts the server on the current tokio runtime.
pub async fn start(config: &HttpConfig, ctx: Context) -> Result<Running, HttpError> {
    let (tokens, token_file) = Tokens::load_or_generate(
        &ctx.data,
        config.admin_token.as_deref(),
        config.read_token.as_deref(),
    )
    .map_err(HttpError::Tokens)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: config.listen,
        source,
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let live = live::Live::start(&ctx.data, stopped.clone());
    let state = Arc::new(AppState {
        ctx,
        tokens,
        sessions: auth::Sessions::default(),
        index: Mutex::new(None),
        live,
        session_hours: config.session_hours.max(1),
        kb: std::sync::OnceLock::new(),
    });
    let app = router(state);
    let mut shutdown = stopped;
    let task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
        if let Err(e) = served.await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    tracing::info!(%addr, "HTTP API and web UI listening");
    Ok(Running {
        addr,
        token_file,
        task,
        stop,
    })
}

fn router(state: Arc<AppState>) -> axum::Router {
    use axum::routing::{get, post};
    let api = axum::Router::new()
        .route("/search", get(api::search))
        .route("/incidents", get(api::incidents))
        .route("/incidents/{id}", get(api::incident))
        .route("/incidents/{id}/explain", get(api::explain))
        .route("/actions", get(api::actions))
        .route("/actions/{key}/approve", post(api::approve))
        .route("/actions/{key}/reject", post(api::reject))
        .route("/silences", get(api::silences).post(api::add_silence))
        .route("/silences/{id}", axum::routing::delete(api::expire_silence))
        .route("/stats", get(api::stats))
        .route("/status", get(api::status))
        .route(
            "/migrations",
            get(api::migrations).post(api::start_migration),
        )
        .route("/migrations/{host}/{id}", get(api::migration_progress))
        .route("/stream", get(live::stream))
        .fallback(api::not_found);
    axum::Router::new()
        .nest("/api/v1", api)
        .route("/", get(pages::home))
        .route("/search", get(pages::search))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route("/migrations", get(pages::migrations))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/healthz", get(api::healthz))
        .route("/approve", get(link::show).post(link::decide))
        .route("/assets/app.js", get(pages::script))
        .route("/assets/app.css", get(pages::stylesheet))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(state)
}

/// The data folder's token file, for messages.
pub fn token_path(data: &Path) -> PathBuf {
    auth::token_path(data)
}
