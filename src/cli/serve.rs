//! `kpi serve`: the engine behind HTTP, for dashboards and notebooks.
//!
//! - `GET /api/metrics`: every metric with its kind, source, grain, unit and dimensions
//!   (`kpi list --format json`).
//! - `GET /api/run?metrics=a,b&from=…&to=…&grain=…&by=…&where=…&compare=…&tz=…`: the
//!   output of `kpi run` as JSON (the default), CSV or Arrow IPC, by `format=json|csv|arrow`
//!   or by `Accept` (`text/csv`, `application/vnd.apache.arrow.stream`).
//! - `GET /`: the `kpi report` page of the same query.
//! - `GET /api/status`: when the catalogue was loaded, and why a later change was refused.
//!
//! Bad input is HTTP 400 and a fault 500, both as JSON with kpi's diagnostics. Every second
//! the metrics folder is looked at; when a file changed, the catalogue is loaded again, and
//! if the new one is invalid the last valid one keeps serving and `/api/status` says why.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::args::ServeArgs;
use super::{CliError, Exit, load_catalog};
use crate::diag::{Diagnostic, SourceDb, render};
use crate::exec::{self, Compare, RunError, RunRequest};
use crate::output::Format;
use crate::source::DataRoot;
use crate::spec::Grain;
use crate::validate::Catalog;

/// A valid catalogue and the files it was read from.
struct Loaded {
    catalog: Catalog,
    db: SourceDb,
    at: String,
}

struct Shared {
    metrics: PathBuf,
    data: PathBuf,
    engine: crate::compile::Engine,
    loaded: RwLock<Arc<Loaded>>,
    /// Why the last change to the metrics folder was not taken, if it was not.
    refused: RwLock<Option<String>>,
}

pub fn run(args: ServeArgs) -> Result<Exit, CliError> {
    let loaded = load(&args.metrics)?.map_err(CliError::Message)?;
    let shared = Arc::new(Shared {
        metrics: args.metrics.clone(),
        data: args.data.clone(),
        engine: args.engine.engine(),
        loaded: RwLock::new(Arc::new(loaded)),
        refused: RwLock::new(None),
    });
    super::run::runtime().block_on(serve(shared, args.addr))
}

async fn serve(shared: Arc<Shared>, addr: SocketAddr) -> Result<Exit, CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Message(format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr()?;
    eprintln!("kpi serve: listening on http://{local}");
    tokio::spawn(watch(shared.clone()));
    let app = axum::Router::new()
        .route("/", get(page))
        .route("/api/metrics", get(metrics))
        .route("/api/run", get(run_query))
        .route("/api/status", get(status))
        .with_state(shared);
    axum::serve(listener, app).await?;
    Ok(Exit::Ok)
}

/// Loads and checks the metrics folder: `Err` with the rendered errors when invalid.
fn load(dir: &Path) -> Result<Result<Loaded, String>, CliError> {
    let mut db = SourceDb::default();
    let (catalog, diags) = load_catalog(dir, &mut db)?;
    let errors: Vec<Diagnostic> = diags.into_iter().filter(Diagnostic::is_error).collect();
    if !errors.is_empty() {
        return Ok(Err(format!(
            "{}{}",
            render::human(&errors, &db, false),
            render::summary(&errors)
        )));
    }
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    Ok(Ok(Loaded { catalog, db, at }))
}

/// What changing a definition changes: every YAML file's path, size and time.
fn signature(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
    out.sort();
    out
}

async fn watch(shared: Arc<Shared>) {
    let mut seen = signature(&shared.metrics);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = signature(&shared.metrics);
        if now == seen {
            continue;
        }
        seen = now;
        let dir = shared.metrics.clone();
        let result = tokio::task::spawn_blocking(move || load(&dir)).await;
        match result {
            Ok(Ok(Ok(loaded))) => {
                eprintln!(
                    "kpi serve: reloaded {} metrics",
                    loaded.catalog.public_metrics().count()
                );
                *shared.loaded.write().expect("lock") = Arc::new(loaded);
                *shared.refused.write().expect("lock") = None;
            }
            Ok(Ok(Err(why))) => {
                eprintln!(
                    "kpi serve: kept the last valid catalogue; the change has errors:\n{why}"
                );
                *shared.refused.write().expect("lock") = Some(why);
            }
            Ok(Err(e)) => *shared.refused.write().expect("lock") = Some(e.to_string()),
            Err(e) => *shared.refused.write().expect("lock") = Some(e.to_string()),
        }
    }
}

/// The query string of `/api/run` and `/`.
#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    metrics: Option<String>,
    from: Option<String>,
    to: Option<String>,
    grain: Option<String>,
    by: Option<String>,
    #[serde(rename = "where")]
    filter: Option<String>,
    compare: Option<String>,
    tz: Option<String>,
    format: Option<String>,
}

fn list(s: &Option<String>) -> Vec<String> {
    s.iter()
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// An error answer: `{"error": {"status", "message", "diagnostics"}}`.
fn error(
    status: StatusCode,
    message: &str,
    diagnostics: Option<(&[Diagnostic], &SourceDb)>,
) -> Response {
    // `kpi validate --format json`'s diagnostics, without its envelope.
    let diagnostics = diagnostics
        .and_then(|(d, db)| serde_json::from_str::<serde_json::Value>(&render::json(d, db)).ok())
        .and_then(|mut v| v.get_mut("diagnostics").map(serde_json::Value::take))
        .unwrap_or(serde_json::Value::Array(vec![]));
    let body = serde_json::json!({
        "error": {
            "status": status.as_u16(),
            "message": message,
            "diagnostics": diagnostics,
        }
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, &message.into(), None)
}

impl RunQuery {
    fn request(&self, engine: &crate::compile::Engine) -> Result<RunRequest, Response> {
        use clap::ValueEnum;
        let grain = match &self.grain {
            None => None,
            Some(g) => Some(Grain::parse(g).ok_or_else(|| {
                bad(format!(
                    "grain `{g}` is not one of {}",
                    Grain::NAMES.join(", ")
                ))
            })?),
        };
        let compare = match &self.compare {
            None => None,
            Some(c) => Some(Compare::from_str(c, true).map_err(|_| {
                bad(format!(
                    "compare `{c}` is not previous_period or previous_year"
                ))
            })?),
        };
        Ok(RunRequest {
            metrics: list(&self.metrics),
            from: self.from.clone(),
            to: self.to.clone(),
            grain,
            by: list(&self.by),
            filter: self.filter.clone().filter(|w| !w.trim().is_empty()),
            tz: self.tz.clone(),
            compare,
            engine: engine.clone(),
        })
    }

    /// The answer's format: `format=`, else `Accept`, else JSON.
    fn format(&self, headers: &HeaderMap) -> Result<Format, Response> {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match self.format.as_deref() {
            Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some("arrow") => Ok(Format::Arrow),
            Some(other) => Err(bad(format!("format `{other}` is not json, csv or arrow"))),
            None if accept.contains("text/csv") => Ok(Format::Csv),
            None if accept.contains("application/vnd.apache.arrow.stream") => Ok(Format::Arrow),
            None => Ok(Format::Json),
        }
    }
}

/// [`compute`] on a blocking thread: planning holds values that are not `Send` across
/// awaits, and a blocking thread may wait on the runtime for it.
async fn compute_off(
    shared: Arc<Shared>,
    req: RunRequest,
) -> Result<(exec::RunOutput, Arc<Loaded>), Response> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(compute(&shared, &req)))
        .await
        .unwrap_or_else(|e| {
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &e.to_string(),
                None,
            ))
        })
}

/// Runs `req` against the current catalogue: the output and the catalogue it came from.
async fn compute(
    shared: &Shared,
    req: &RunRequest,
) -> Result<(exec::RunOutput, Arc<Loaded>), Response> {
    let loaded = shared.loaded.read().expect("lock").clone();
    let root = DataRoot::locate(&shared.data)
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None))?;
    let mut db = loaded.db.clone();
    let result = async {
        let program = exec::prepare(&loaded.catalog, &mut db, &root, req).await?;
        exec::execute(&program, &loaded.catalog, &mut |_| {}).await
    }
    .await;
    match result {
        Ok(out) => Ok((out, loaded)),
        Err(RunError::Diagnostics(d)) => {
            let message = d
                .first()
                .map_or_else(|| render::summary(&d), |x| x.message.clone());
            Err(error(StatusCode::BAD_REQUEST, &message, Some((&d, &db))))
        }
        Err(RunError::Usage(m)) => Err(bad(m)),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &e.to_string(),
            None,
        )),
    }
}

async fn run_query(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<RunQuery>,
    headers: HeaderMap,
) -> Response {
    let (req, format) = match (q.request(&shared.engine), q.format(&headers)) {
        (Ok(r), Ok(f)) => (r, f),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let out = match compute_off(shared, req).await {
        Ok((out, _)) => out,
        Err(e) => return e,
    };
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => "application/vnd.apache.arrow.stream",
        _ => "application/json",
    };
    match crate::output::render(&out, format) {
        Ok(body) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

async fn page(State(shared): State<Arc<Shared>>, Query(q): Query<RunQuery>) -> Response {
    let req = match q.request(&shared.engine) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let keys = 1 + req.by.len();
    let (out, loaded) = match compute_off(shared.clone(), req).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let metrics = crate::output::report::MetricInfo::of_run(&out, &loaded.catalog, keys);
    let mut parameters = vec![
        ("data root".to_string(), shared.data.display().to_string()),
        ("catalogue loaded".to_string(), loaded.at.clone()),
    ];
    for (k, v) in [
        ("metrics", &q.metrics),
        ("from", &q.from),
        ("to", &q.to),
        ("grain", &q.grain),
        ("by", &q.by),
        ("where", &q.filter),
        ("compare", &q.compare),
        ("time zone", &q.tz),
    ] {
        if let Some(v) = v {
            parameters.push((k.to_string(), v.clone()));
        }
    }
    let page = crate::output::report::Page {
        title: "KPI report".into(),
        parameters,
        metrics,
        keys,
    };
    match crate::output::report::html(&out, &page) {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e, None),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let loaded = shared.loaded.read().expect("lock").clone();
    let rows = super::list::rows(&loaded.catalog, &loaded.db);
    match serde_json::to_string(&rows) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string(), None),
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let loaded = shared.loaded.read().expect("lock").clone();
    let refused = shared.refused.read().expect("lock").clone();
    let body = serde_json::json!({
        "loaded_at": loaded.at,
        "metrics": loaded.catalog.public_metrics().count(),
        "refused_change": refused,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
