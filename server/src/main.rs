//! synod-node (crate `synod-server`): the HTTP server around the pure
//! Multi-Paxos core of the `synod_node` library. It is its own crate so
//! that the library stays free of the server's dependencies (axum, hyper,
//! reqwest, tokio, clap, tracing-subscriber). Everything lives in
//! [`server`]; its module doc has the layout and the data flow.

mod server;

fn main() -> std::process::ExitCode {
    server::main()
}
