//! The three routers of `docs/api.md` (client, peer, admin) and `/health`,
//! and the one error type every refusal goes through, so every error is
//! JSON `{"error", "definite", "reason"}` with the right status.
//!
//! Layout: this module holds the shared state, the error type, the router,
//! authentication and the body parsing every handler uses; `client` the
//! key-value routes, `peer` the batches and identity peers exchange, and
//! `admin` status, metrics, the clock and the crash hook.

mod admin;
mod client;
mod peer;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use synod_node::{ClientSeq, KvOp, Message, NodeId, RequestOutcome, Value};
use synod_wire::api::{
    CasRequest, ErrorReply, ValueReply, WriteRequest, CAS_MISMATCH, INDETERMINATE, NOT_PROPOSED,
};
use tokio::sync::{mpsc, oneshot};

use synod_node::storage::identity::{self, Identity};

use super::bootstrap::IdentityView;
use super::clock::validate_skew;
use super::disk::DiskCmd;
use super::driver::Event;
use super::listen::Trust;
use super::metrics::{kind_index, Metrics};

/// Largest client or admin body (`docs/api.md`: 413 above).
pub const CLIENT_BODY_LIMIT: usize = 1 << 20;
/// Largest peer batch: catch-up replies carry snapshots, and peers are
/// authenticated, so they get more room.
pub const PEER_BODY_LIMIT: usize = 64 << 20;
/// Longest key accepted.
const MAX_KEY_BYTES: usize = 1024;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub id: NodeId,
    pub members: Arc<[NodeId]>,
    pub token: Arc<str>,
    pub events: mpsc::Sender<Event>,
    pub disk: std_mpsc::Sender<DiskCmd>,
    pub metrics: Arc<Metrics>,
    pub request_timeout: Duration,
    /// A request body must arrive within this, or the answer is 408: a
    /// client trickling its body must not hold a handler forever.
    pub body_timeout: Duration,
    /// Set on SIGTERM: new client requests are refused as not proposed.
    pub shutting_down: Arc<AtomicBool>,
    /// Client requests between arrival and answer, so shutdown can wait
    /// for them.
    pub in_flight: Arc<AtomicUsize>,
    /// This node's identity: its cluster, and the members it has heard.
    pub identity: Arc<Heard>,
}

/// The data directory's `IDENTITY`, kept current as peers are first heard
/// (see `synod_node::storage::identity`).
pub struct Heard {
    dir: std::path::PathBuf,
    cluster: String,
    id: std::sync::Mutex<Identity>,
}

impl Heard {
    pub fn new(dir: std::path::PathBuf, id: Identity) -> Self {
        Heard {
            dir,
            cluster: id.cluster.clone(),
            id: std::sync::Mutex::new(id),
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn seen(&self) -> Vec<NodeId> {
        let id = self.id.lock().unwrap_or_else(|p| p.into_inner());
        id.seen.iter().copied().collect()
    }

    /// Makes "heard from `from`" durable before its first message reaches
    /// the core: from then on, an empty data directory of `from` is known
    /// to be a lost one.
    pub(crate) async fn note(self: &Arc<Self>, from: NodeId) -> Result<(), ApiError> {
        {
            let id = self.id.lock().unwrap_or_else(|p| p.into_inner());
            if id.seen.contains(&from) {
                return Ok(());
            }
        }
        let me = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut id = me.id.lock().unwrap_or_else(|p| p.into_inner());
            if id.seen.contains(&from) {
                return Ok(());
            }
            let mut next = id.clone();
            next.seen.insert(from);
            identity::write(&me.dir, &next)?;
            *id = next;
            Ok::<(), synod_node::StorageError>(())
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot record the first message from node {from}: {e}"),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot record the first message from node {from}: {e}"),
            )),
        }
    }
}

/// A refusal or failure, rendered as the documented JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    definite: bool,
    reason: String,
    /// `cas-mismatch` carries the value found.
    value: Option<serde_json::Value>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            definite: true,
            reason: reason.into(),
            value: None,
        }
    }

    /// Why, in words (what the body's `reason` says).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", reason)
    }

    fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("request body over {limit} bytes"),
        )
    }

    /// The node cannot take this now (a full queue, the connection limit).
    pub fn overloaded(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", reason)
    }

    fn unauthorized(reason: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    fn not_proposed(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, NOT_PROPOSED, reason)
    }

    fn indeterminate(reason: impl Into<String>) -> Self {
        ApiError {
            definite: false,
            ..Self::new(StatusCode::GATEWAY_TIMEOUT, INDETERMINATE, reason)
        }
    }
}

/// The documented error body; also what [`super::listen`] writes in place
/// of hyper's own bare answers.
pub fn error_body(error: &str, definite: bool, reason: &str) -> serde_json::Value {
    json!(ErrorReply {
        error: error.into(),
        definite,
        reason: reason.into(),
        value: None,
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = error_body(self.error, self.definite, &self.reason);
        if let Some(v) = self.value {
            body["value"] = v;
        }
        (self.status, Json(body)).into_response()
    }
}

use admin::{crash, metrics, set_clock, status};
use client::{cas, read, write};
use peer::{peer_identity, peer_messages};

/// Every route of the node.
pub fn router(state: AppState) -> Router {
    let client = Router::new()
        .route("/v1/kv/{key}", get(read).put(write))
        .route("/v1/kv/{key}/cas", post(cas));
    let peer = Router::new()
        .route("/peer/v1/messages", post(peer_messages))
        .route("/peer/v1/identity", get(peer_identity))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let admin = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/metrics", get(metrics))
        .route("/admin/clock", post(set_clock))
        .route("/admin/crash", post(crash))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .merge(client)
        .merge(peer)
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}

/// Counts 4xx refusals by kind for the metrics page.
async fn count_errors(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let error = match resp.status() {
        StatusCode::BAD_REQUEST => "bad-request",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        _ => return resp,
    };
    st.metrics.http_error(error);
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// 200 while the replica task answers (the disk thread and every panic
/// take the process down with them); 503 otherwise.
async fn health(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.events
        .send(Event::Status(tx))
        .await
        .map_err(|_| replica_gone())?;
    tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .map_err(|_| replica_gone())?
        .map_err(|_| replica_gone())?;
    Ok(Json(json!({"ok": true, "id": st.id})).into_response())
}

/// Peer and admin routes: `Authorization: Bearer <cluster token>`.
async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <token> header",
        ));
    }
    if !bearer_matches(req.headers(), &st.token) {
        return Err(ApiError::unauthorized("wrong cluster token"));
    }
    // The connection is the cluster's own: it leaves the clients' share.
    if let Some(trust) = req.extensions().get::<Trust>() {
        trust.grant();
    }
    Ok(next.run(req).await)
}

/// Whether `Authorization` carries `token` in the Bearer scheme, whose
/// name is case-insensitive (RFC 7235). `token` is never empty (the
/// node refuses a short one at start), so no header matches by accident.
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|s| s.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim_matches(' '));
    match given {
        Some(given) => !token.is_empty() && constant_time_eq(given.as_bytes(), token.as_bytes()),
        None => false,
    }
}

/// Compares without an early exit, so response timing does not reveal how
/// much of a guessed token was right.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a body up to `limit` bytes; over it is 413, slower than the body
/// timeout 408.
async fn read_body(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // Any error here is a body over the limit or a client that went away
    // mid-body; the latter never reads the answer.
    match tokio::time::timeout(st.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| ApiError::too_large(limit)),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!(
                "the request body did not arrive within {} ms",
                st.body_timeout.as_millis()
            ),
        )),
    }
}

fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = path.map_err(|e| ApiError::bad_request(format!("bad key: {e}")))?;
    if key.is_empty() {
        return Err(ApiError::bad_request("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the key is {} bytes, more than {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(key)
}

fn value_of(v: &serde_json::Value, field: &str) -> Result<Value, ApiError> {
    Value::from_json(v).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{field}` must be an integer (64-bit) or a string, got {v}"
        ))
    })
}

fn dedup_of(client: Option<u64>, seq: Option<u64>) -> Result<Option<ClientSeq>, ApiError> {
    match (client, seq) {
        (Some(client), Some(seq)) => Ok(Some(ClientSeq { client, seq })),
        (None, None) => Ok(None),
        _ => Err(ApiError::bad_request(
            "`client` and `seq` go together: give both or neither",
        )),
    }
}

/// The replica task did not answer (it is gone or stuck).
pub(super) fn replica_gone() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the replica task did not answer",
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_an_exact_match() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_exact() {
        let token = "0123456789abcdef";
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            bearer_matches(&h, token)
        };
        assert!(with("Bearer 0123456789abcdef"));
        assert!(with("bearer 0123456789abcdef"));
        assert!(with("BEARER  0123456789abcdef"));
        assert!(!with("Bearer 0123456789abcdeF"));
        assert!(!with("Basic 0123456789abcdef"));
        assert!(!with("0123456789abcdef"));
        assert!(!with("x"));
        assert!(!with("Bearer"));
        assert!(!with("Bearer "));
        assert!(!bearer_matches(&HeaderMap::new(), token));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert!(!bearer_matches(&h, ""), "an empty token matches nothing");
    }

    #[test]
    fn client_and_seq_go_together() {
        assert!(dedup_of(Some(1), None).is_err());
        assert!(dedup_of(None, Some(1)).is_err());
        assert_eq!(dedup_of(None, None).ok(), Some(None));
        assert!(dedup_of(Some(1), Some(2)).is_ok_and(|d| d.is_some()));
    }

    #[test]
    fn values_are_integers_or_strings_only() {
        assert!(value_of(&json!(1), "v").is_ok());
        assert!(value_of(&json!("s"), "v").is_ok());
        for bad in [
            json!(1.5),
            json!(null),
            json!([1]),
            json!({}),
            json!(true),
            json!(u64::MAX),
        ] {
            assert!(value_of(&bad, "v").is_err(), "{bad}");
        }
    }
}
