//! `synod serve` for the tests: started on a free port over a store,
//! killed when the handle drops (even on a failed assertion), and a plain
//! HTTP/1.1 GET that returns the status and the body.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `synod serve`; killed on drop.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    pub fn start(store: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_synod"))
            .arg("serve")
            .arg("--store")
            .arg(store)
            .arg("--addr")
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start synod serve");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut first)
            .expect("serve prints its URL");
        let addr = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a GET and returns the connection with its status line and
/// headers read (and whether the body is chunked): the body is the
/// caller's to read, or not.
pub fn request(addr: &str, path: &str) -> (u16, BufReader<TcpStream>) {
    let (status, _, r) = request_head(addr, path);
    (status, r)
}

fn request_head(addr: &str, path: &str) -> (u16, bool, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).expect("connect to synod serve");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("a status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("headers");
        if h == "\r\n" || h.is_empty() {
            break;
        }
        let h = h.to_ascii_lowercase();
        chunked |= h.starts_with("transfer-encoding:") && h.contains("chunked");
    }
    (status, chunked, r)
}

/// A GET's status and whole body, chunked transfer decoded.
pub fn get(addr: &str, path: &str) -> (u16, Vec<u8>) {
    let (status, chunked, mut r) = request_head(addr, path);
    let mut body = Vec::new();
    if !chunked {
        let _ = r.read_to_end(&mut body);
        return (status, body);
    }
    loop {
        let mut size = String::new();
        if r.read_line(&mut size).unwrap_or(0) == 0 {
            break;
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("a chunk size, got {size:?}"));
        if n == 0 {
            break;
        }
        let mut chunk = vec![0u8; n + 2];
        r.read_exact(&mut chunk).expect("a whole chunk");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, body)
}
