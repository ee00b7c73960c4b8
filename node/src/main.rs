//! synod-node: the HTTP server around the core (a later issue).
fn main() {}
