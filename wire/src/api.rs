//! The client API's bodies (`docs/api.md`, "Client API").
//!
//! `PUT /v1/kv/KEY` takes a [`WriteRequest`], `POST /v1/kv/KEY/cas` a
//! [`CasRequest`]; a success answers a [`ValueReply`], a refusal or
//! failure an [`ErrorReply`] whose `error` is one of the codes below.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Never proposed (503): it did not happen.
pub const NOT_PROPOSED: &str = "not-proposed";
/// The cas compared and found another value (409); `value` has it.
pub const CAS_MISMATCH: &str = "cas-mismatch";
/// Proposed, fate unknown (504): it may or may not have happened.
pub const INDETERMINATE: &str = "indeterminate";

/// `PUT /v1/kv/KEY`. `client` and `seq` go together: a retried request
/// with the same pair is applied once. (No `serde(default)` on them: a
/// missing `Option` reads as `None` anyway, and with it a JSON array
/// such as `[1]` would read as a body.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub value: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// `POST /v1/kv/KEY/cas`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CasRequest {
    pub expected: Value,
    pub new: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A success: the value read, written or swapped in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValueReply {
    pub value: Value,
}

/// A refusal or failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// A code: [`NOT_PROPOSED`], [`CAS_MISMATCH`], [`INDETERMINATE`],
    /// `bad-request`, `overloaded`, ...
    pub error: String,
    /// Whether the operation certainly did not take effect.
    pub definite: bool,
    #[serde(default)]
    pub reason: String,
    /// [`CAS_MISMATCH`] only: the value found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}
