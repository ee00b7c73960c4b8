//! A stand-in for `synod-node` that speaks `docs/api.md` just enough for
//! the runner's end-to-end tests: node 1 holds an in-memory register map
//! and every other node forwards client requests to it over its `--peers`
//! URL (so through the link proxies, where partitions bite). It is not
//! Paxos, not durable, and ignores flags it does not need.
//!
//! `SYNOD_NODE_BIN=target/debug/examples/fake_node synod run ...`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use synod_wire::api::{
    CasRequest, ErrorReply, ValueReply, WriteRequest, CAS_MISMATCH, INDETERMINATE, NOT_PROPOSED,
};
use synod_wire::Role;

#[derive(Clone)]
struct Node {
    id: u64,
    /// Node 1's base URL as seen from here (through the proxy); `None` on
    /// node 1 itself.
    leader_url: Option<String>,
    state: Arc<Mutex<HashMap<String, Value>>>,
    http: reqwest::Client,
}

type Reply = (StatusCode, Json<Value>);

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let id: u64 = flag(&args, "--id")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let listen = flag(&args, "--listen").unwrap_or_else(|| "127.0.0.1:7001".into());
    let peers = flag(&args, "--peers").unwrap_or_default();
    let leader_url = peers.split(',').find_map(|p| {
        let (pid, url) = p.split_once('=')?;
        (pid == "1").then(|| url.to_string())
    });
    let node = Node {
        id,
        leader_url: if id == 1 { None } else { leader_url },
        state: Arc::default(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_millis(800))
            .build()
            .unwrap(),
    };
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/kv/{key}", get(read).put(write))
        .route("/v1/kv/{key}/cas", post(cas))
        .route("/admin/status", get(status))
        .route("/admin/clock", post(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/admin/crash",
            post(|| async {
                std::process::exit(1);
                #[allow(unreachable_code)]
                StatusCode::OK
            }),
        )
        .with_state(node);
    let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
    eprintln!("fake node {id} on {listen}");
    axum::serve(listener, app).await.unwrap();
}

async fn status(State(n): State<Node>) -> Json<Value> {
    let role = if n.id == 1 {
        Role::Leader
    } else {
        Role::Follower
    };
    Json(json!({"id": n.id, "role": role, "leader": 1}))
}

async fn forward(n: &Node, req: reqwest::RequestBuilder) -> Reply {
    match req.send().await {
        Ok(r) => {
            let status =
                StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            (status, Json(body))
        }
        Err(e) if e.is_connect() => (
            StatusCode::SERVICE_UNAVAILABLE,
            error(
                NOT_PROPOSED,
                true,
                format!("node {} cannot reach the leader", n.id),
                None,
            ),
        ),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            error(
                INDETERMINATE,
                false,
                "the leader did not answer".into(),
                None,
            ),
        ),
    }
}

async fn read(State(n): State<Node>, Path(key): Path<String>) -> Reply {
    if let Some(url) = &n.leader_url {
        return forward(&n, n.http.get(format!("{url}/v1/kv/{key}"))).await;
    }
    let v = n
        .state
        .lock()
        .unwrap()
        .get(&key)
        .cloned()
        .unwrap_or(Value::Null);
    ok(v)
}

fn ok(value: Value) -> Reply {
    (StatusCode::OK, Json(json!(ValueReply { value })))
}

fn error(code: &str, definite: bool, reason: String, value: Option<Value>) -> Json<Value> {
    Json(json!(ErrorReply {
        error: code.into(),
        definite,
        reason,
        value
    }))
}

async fn write(
    State(n): State<Node>,
    Path(key): Path<String>,
    Json(body): Json<WriteRequest>,
) -> Reply {
    if let Some(url) = &n.leader_url {
        return forward(&n, n.http.put(format!("{url}/v1/kv/{key}")).json(&body)).await;
    }
    n.state.lock().unwrap().insert(key, body.value.clone());
    ok(body.value)
}

async fn cas(
    State(n): State<Node>,
    Path(key): Path<String>,
    Json(body): Json<CasRequest>,
) -> Reply {
    if let Some(url) = &n.leader_url {
        return forward(
            &n,
            n.http.post(format!("{url}/v1/kv/{key}/cas")).json(&body),
        )
        .await;
    }
    let mut state = n.state.lock().unwrap();
    let current = state.get(&key).cloned().unwrap_or(Value::Null);
    if current == body.expected {
        state.insert(key, body.new.clone());
        ok(body.new)
    } else {
        (
            StatusCode::CONFLICT,
            error(CAS_MISMATCH, true, String::new(), Some(current)),
        )
    }
}
