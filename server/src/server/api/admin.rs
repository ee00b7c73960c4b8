//! The admin API: status, the metrics page, the clock control and the
//! crash hook the nemesis uses (all behind the cluster token).

use super::*;

pub(super) async fn status(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.events
        .send(Event::Status(tx))
        .await
        .map_err(|_| replica_gone())?;
    let view = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .map_err(|_| replica_gone())?
        .map_err(|_| replica_gone())?;
    Ok(Json(view).into_response())
}

pub(super) async fn metrics(State(st): State<AppState>) -> Response {
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

pub(super) async fn set_clock(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, &headers, body, CLIENT_BODY_LIMIT).await?;
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

pub(super) async fn crash(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, &headers, body, CLIENT_BODY_LIMIT).await?;
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
