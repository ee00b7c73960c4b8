//! The peer API: message batches from the other nodes, and this node's
//! identity for a peer deciding whether it is new or lost its disk.

use super::*;

#[derive(Deserialize)]
struct PeerBatch {
    from: NodeId,
    /// The sender's cluster id: a batch from another cluster is refused.
    cluster: String,
    messages: Vec<Message>,
}

/// `GET /peer/v1/identity`: who this node is, for a peer deciding whether
/// it is new or lost its disk (see the bootstrap module).
pub(super) async fn peer_identity(State(st): State<AppState>) -> Result<Response, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.events
        .send(Event::Status(tx))
        .await
        .map_err(|_| replica_gone())?;
    let status = tokio::time::timeout(Duration::from_secs(2), rx)
        .await
        .map_err(|_| replica_gone())?
        .map_err(|_| replica_gone())?;
    Ok(Json(IdentityView {
        node: st.id,
        cluster: Some(st.identity.cluster().to_string()),
        seen: st.identity.seen(),
        promised: Some(status.status.ballot),
    })
    .into_response())
}

pub(super) async fn peer_messages(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&st, &headers, body, PEER_BODY_LIMIT).await?;
    let batch: PeerBatch = parse_json(&bytes)?;
    if batch.from == st.id || !st.members.contains(&batch.from) {
        return Err(ApiError::bad_request(format!(
            "`from` {} is not another member of this cluster {:?}",
            batch.from, st.members
        )));
    }
    if batch.cluster != st.identity.cluster() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-cluster",
            format!(
                "node {} belongs to cluster {}, this node to cluster {}",
                batch.from,
                batch.cluster,
                st.identity.cluster()
            ),
        ));
    }
    st.identity.note(batch.from).await?;
    for m in &batch.messages {
        st.metrics.peer_received[kind_index(m.message_kind())].fetch_add(1, Relaxed);
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
            ApiError::overloaded("the node's input queue is full; batch dropped")
        }),
    }
}
