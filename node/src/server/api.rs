//! The three routers of `docs/api.md` (client, peer, admin) and `/health`,
//! and the one error type every refusal goes through, so every error is
//! JSON `{"error", "definite", "reason"}` with the right status.

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
use synod_node::{ClientSeq, Message, NodeId, Op, Outcome, Value};
use tokio::sync::{mpsc, oneshot};

use super::clock::validate_skew;
use super::disk::DiskCmd;
use super::driver::Event;
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
    /// Set on SIGTERM: new client requests are refused as not proposed.
    pub shutting_down: Arc<AtomicBool>,
    /// Client requests between arrival and answer, so shutdown can wait
    /// for them.
    pub in_flight: Arc<AtomicUsize>,
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

    fn unauthorized(reason: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
    }

    fn not_proposed(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not-proposed", reason)
    }

    fn indeterminate(reason: impl Into<String>) -> Self {
        ApiError {
            definite: false,
            ..Self::new(StatusCode::GATEWAY_TIMEOUT, "indeterminate", reason)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.error,
            "definite": self.definite,
            "reason": self.reason,
        });
        if let Some(v) = self.value {
            body["value"] = v;
        }
        (self.status, Json(body)).into_response()
    }
}

/// Every route of the node.
pub fn router(state: AppState) -> Router {
    let client = Router::new()
        .route("/v1/kv/{key}", get(read).put(write))
        .route("/v1/kv/{key}/cas", post(cas));
    let peer = Router::new()
        .route("/peer/v1/messages", post(peer_messages))
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

async fn health(State(st): State<AppState>) -> Response {
    Json(json!({"ok": true, "id": st.id})).into_response()
}

/// Peer and admin routes: `Authorization: Bearer <cluster token>`.
async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing Authorization: Bearer <token> header",
        ));
    };
    let given = h
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), st.token.as_bytes()) {
        return Err(ApiError::unauthorized("wrong cluster token"));
    }
    Ok(next.run(req).await)
}

/// Compares without an early exit, so response timing does not reveal how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a body up to `limit` bytes; over it is 413.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // Any error here is a body over the limit or a client that went away
    // mid-body; the latter never reads the answer.
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
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

#[derive(Deserialize)]
struct WriteBody {
    value: serde_json::Value,
    client: Option<u64>,
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct CasBody {
    expected: serde_json::Value,
    new: serde_json::Value,
    client: Option<u64>,
    seq: Option<u64>,
}

async fn read(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let key = key_of(path)?;
    let (mut client, mut seq) = (None, None);
    for pair in query.as_deref().unwrap_or("").split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n = || {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "query `{k}` must be an unsigned integer, got `{v}`"
                ))
            })
        };
        match k {
            "client" => client = Some(n()?),
            "seq" => seq = Some(n()?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}` (expected client, seq)"
                )))
            }
        }
    }
    let dedup = dedup_of(client, seq)?;
    submit(&st, 0, Op::Read { key }, dedup, None).await
}

async fn write(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = key_of(path)?;
    let bytes = read_body(&headers, body, CLIENT_BODY_LIMIT).await?;
    let b: WriteBody = parse_json(&bytes)?;
    let value = value_of(&b.value, "value")?;
    let dedup = dedup_of(b.client, b.seq)?;
    submit(&st, 1, Op::Write { key, value }, dedup, None).await
}

async fn cas(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = key_of(path)?;
    let bytes = read_body(&headers, body, CLIENT_BODY_LIMIT).await?;
    let b: CasBody = parse_json(&bytes)?;
    let expected = value_of(&b.expected, "expected")?;
    let new = value_of(&b.new, "new")?;
    let dedup = dedup_of(b.client, b.seq)?;
    let shown = expected.to_string();
    submit(&st, 2, Op::Cas { key, expected, new }, dedup, Some(shown)).await
}

/// Decrements the in-flight count however the handler ends (including
/// the client hanging up, which drops the future).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Hands a client command to the core and turns its outcome into HTTP.
async fn submit(
    st: &AppState,
    op_index: usize,
    op: Op,
    dedup: Option<ClientSeq>,
    expected: Option<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    st.in_flight.fetch_add(1, Relaxed);
    let _guard = InFlight(st.in_flight.clone());
    let outcome = if st.shutting_down.load(Relaxed) {
        Outcome::NotProposed {
            reason: "the node is shutting down".into(),
        }
    } else {
        let (tx, rx) = oneshot::channel();
        match st.events.try_send(Event::Client {
            op,
            dedup,
            reply: tx,
        }) {
            Err(mpsc::error::TrySendError::Full(_)) => Outcome::NotProposed {
                reason: "the node is overloaded: its request queue is full".into(),
            },
            Err(mpsc::error::TrySendError::Closed(_)) => Outcome::NotProposed {
                reason: "the node is shutting down".into(),
            },
            // The core answers every request by its deadline (on a tick);
            // the extra second only guards against a stalled disk.
            Ok(()) => {
                match tokio::time::timeout(st.request_timeout + Duration::from_secs(1), rx).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => Outcome::Indeterminate {
                        reason: "the node stopped before the command was known to be chosen".into(),
                    },
                    Err(_) => Outcome::Indeterminate {
                        reason: "no answer from the core before the deadline".into(),
                    },
                }
            }
        }
    };
    let outcome_index = match &outcome {
        Outcome::Ok { .. } => 0,
        Outcome::CasMismatch { .. } => 1,
        Outcome::NotProposed { .. } => 2,
        Outcome::Indeterminate { .. } => 3,
    };
    st.metrics.requests[op_index][outcome_index].fetch_add(1, Relaxed);
    st.metrics.request_seconds[op_index].observe(started.elapsed());
    match outcome {
        Outcome::Ok { value } => {
            let v = value.map_or(serde_json::Value::Null, |v| v.to_json());
            Ok(Json(json!({ "value": v })).into_response())
        }
        Outcome::CasMismatch { found } => {
            let shown = found
                .as_ref()
                .map_or("nothing".to_string(), |v| v.to_string());
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "cas-mismatch",
                format!("expected {}, found {shown}", expected.unwrap_or_default()),
            );
            e.value = Some(found.map_or(serde_json::Value::Null, |v| v.to_json()));
            Err(e)
        }
        Outcome::NotProposed { reason } => Err(ApiError::not_proposed(reason)),
        Outcome::Indeterminate { reason } => Err(ApiError::indeterminate(reason)),
    }
}

#[derive(Deserialize)]
struct PeerBatch {
    from: NodeId,
    messages: Vec<Message>,
}

async fn peer_messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, PEER_BODY_LIMIT).await?;
    let batch: PeerBatch = parse_json(&bytes)?;
    if batch.from == st.id || !st.members.contains(&batch.from) {
        return Err(ApiError::bad_request(format!(
            "`from` {} is not another member of this cluster {:?}",
            batch.from, st.members
        )));
    }
    for m in &batch.messages {
        st.metrics.peer_received[kind_index(m.kind())].fetch_add(1, Relaxed);
    }
    if batch.messages.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    match st.events.try_send(Event::Peer {
        from: batch.from,
        messages: batch.messages,
    }) {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        // A lost batch is a lost message; say so, so the sender counts it.
        Err(_) => Err({
            st.metrics.http_error("overloaded");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the node's input queue is full; batch dropped",
            )
        }),
    }
}

async fn status(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the replica task did not answer",
        )
    };
    st.events
        .send(Event::Status(tx))
        .await
        .map_err(|_| unavailable())?;
    let view = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    Ok(Json(view).into_response())
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ClockBody {
    #[serde(default)]
    offset_ms: i64,
    #[serde(default = "one")]
    rate: f64,
}

fn one() -> f64 {
    1.0
}

async fn set_clock(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, CLIENT_BODY_LIMIT).await?;
    let b: ClockBody = parse_json(&bytes)?;
    validate_skew(b.offset_ms, b.rate).map_err(ApiError::bad_request)?;
    let (tx, rx) = oneshot::channel();
    let gone = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the replica task is gone",
        )
    };
    st.events
        .send(Event::SetClock {
            offset_ms: b.offset_ms,
            rate: b.rate,
            reply: tx,
        })
        .await
        .map_err(|_| gone())?;
    let now = rx.await.map_err(|_| gone())?;
    Ok(Json(json!({"offset_ms": b.offset_ms, "rate": b.rate, "now_ms": now})).into_response())
}

#[derive(Deserialize)]
struct CrashBody {
    #[serde(default = "yes")]
    lose_unsynced: bool,
}

fn yes() -> bool {
    true
}

async fn crash(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, CLIENT_BODY_LIMIT).await?;
    // An empty body means the default: a power loss.
    let b: CrashBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        CrashBody {
            lose_unsynced: true,
        }
    } else {
        parse_json(&bytes)?
    };
    if b.lose_unsynced {
        tracing::warn!("crash requested (power loss): dropping unsynced writes and exiting now");
        // SAFETY: _exit ends the process at once, without flushing any
        // buffer or running destructors: records not yet synced are lost,
        // which is the point. Nothing is answered; the caller expects the
        // connection to die.
        unsafe { libc::_exit(137) };
    }
    st.disk.send(DiskCmd::CrashAfterSync).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "disk thread gone",
        )
    })?;
    Ok((StatusCode::ACCEPTED, Json(json!({"crashing": true}))).into_response())
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
