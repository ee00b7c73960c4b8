//! synod-node: the HTTP server around the pure Multi-Paxos core of the
//! `synod_node` library. Everything binary-only lives in [`server`]; its
//! module doc has the layout and the data flow.

mod server;

fn main() -> std::process::ExitCode {
    server::main()
}
