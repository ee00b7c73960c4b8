//! The client API: read, write and cas of a key, each handed to the core
//! as one command and answered from its outcome (`docs/api.md`).

use super::*;

pub(super) async fn read(
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
    submit(&st, 0, KvOp::Read { key }, dedup, None).await
}

pub(super) async fn write(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = key_of(path)?;
    let bytes = read_body(&st, &headers, body, CLIENT_BODY_LIMIT).await?;
    let b: WriteRequest = parse_json(&bytes)?;
    let value = value_of(&b.value, "value")?;
    let dedup = dedup_of(b.client, b.seq)?;
    submit(&st, 1, KvOp::Write { key, value }, dedup, None).await
}

pub(super) async fn cas(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = key_of(path)?;
    let bytes = read_body(&st, &headers, body, CLIENT_BODY_LIMIT).await?;
    let b: CasRequest = parse_json(&bytes)?;
    let expected = value_of(&b.expected, "expected")?;
    let new = value_of(&b.new, "new")?;
    let dedup = dedup_of(b.client, b.seq)?;
    let shown = expected.to_string();
    submit(&st, 2, KvOp::Cas { key, expected, new }, dedup, Some(shown)).await
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
pub(super) async fn submit(
    st: &AppState,
    op_index: usize,
    op: KvOp,
    dedup: Option<ClientSeq>,
    expected: Option<String>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    st.in_flight.fetch_add(1, Relaxed);
    let _guard = InFlight(st.in_flight.clone());
    let outcome = if st.shutting_down.load(Relaxed) {
        RequestOutcome::NotProposed {
            reason: "the node is shutting down".into(),
        }
    } else {
        let (tx, rx) = oneshot::channel();
        match st.events.try_send(Event::Client {
            op,
            dedup,
            reply: tx,
        }) {
            Err(mpsc::error::TrySendError::Full(_)) => RequestOutcome::NotProposed {
                reason: "the node is overloaded: its request queue is full".into(),
            },
            Err(mpsc::error::TrySendError::Closed(_)) => RequestOutcome::NotProposed {
                reason: "the node is shutting down".into(),
            },
            // The core answers every request by its deadline (on a tick);
            // the extra second only guards against a stalled disk.
            Ok(()) => {
                match tokio::time::timeout(st.request_timeout + Duration::from_secs(1), rx).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(_)) => RequestOutcome::Indeterminate {
                        reason: "the node stopped before the command was known to be chosen".into(),
                    },
                    Err(_) => RequestOutcome::Indeterminate {
                        reason: "no answer from the core before the deadline".into(),
                    },
                }
            }
        }
    };
    let outcome_index = match &outcome {
        RequestOutcome::Ok { .. } => 0,
        RequestOutcome::CasMismatch { .. } => 1,
        RequestOutcome::NotProposed { .. } => 2,
        RequestOutcome::Indeterminate { .. } => 3,
    };
    st.metrics.requests[op_index][outcome_index].fetch_add(1, Relaxed);
    st.metrics.request_seconds[op_index].observe(started.elapsed());
    match outcome {
        RequestOutcome::Ok { value } => {
            let v = value.map_or(serde_json::Value::Null, |v| v.to_json());
            Ok(Json(ValueReply { value: v }).into_response())
        }
        RequestOutcome::CasMismatch { found } => {
            let shown = found
                .as_ref()
                .map_or("nothing".to_string(), |v| v.to_string());
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                CAS_MISMATCH,
                format!("expected {}, found {shown}", expected.unwrap_or_default()),
            );
            e.value = Some(found.map_or(serde_json::Value::Null, |v| v.to_json()));
            Err(e)
        }
        RequestOutcome::NotProposed { reason } => Err(ApiError::not_proposed(reason)),
        RequestOutcome::Indeterminate { reason } => Err(ApiError::indeterminate(reason)),
    }
}
