//! The node under hostile traffic and careless configuration (issue 13):
//! tokens that are empty or short are refused at start, `--token-file`
//! works and the Bearer scheme is case-insensitive; hyper's own refusals
//! (a URL or head too large, not HTTP at all) carry the JSON error body;
//! idle and trickling connections are closed by their timeouts, and so
//! is a trickling body; and a node whose connection slots are all taken
//! by clients still takes in its peers' traffic.

mod server_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::{Cluster, TOKEN};

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_synod-node"))
}

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("synod-hardening-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs a node that must refuse to start; its stderr.
fn refused(extra: &[&str], dir: &std::path::Path) -> String {
    let out = node()
        .args(["--id", "1", "--listen", "127.0.0.1:0", "--peers", ""])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env_remove("SYNOD_TOKEN")
        .env_remove("SYNOD_TOKEN_FILE")
        .output()
        .expect("run synod-node");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{extra:?} started: {stderr}"
    );
    stderr
}

#[test]
fn an_empty_or_short_token_is_refused_at_start() {
    let dir = temp("tokens");
    let e = refused(&["--token", ""], &dir);
    assert!(e.contains("is 0 bytes; it must be at least 16"), "{e}");
    let e = refused(&["--token", "fifteen-bytes!!"], &dir);
    assert!(e.contains("is 15 bytes; it must be at least 16"), "{e}");
    let e = refused(&["--token", "sixteen bytes, spaced"], &dir);
    assert!(e.contains("visible ASCII"), "{e}");
    std::fs::write(dir.join("short"), "tiny\n").unwrap();
    let file = dir.join("short").display().to_string();
    let e = refused(&["--token-file", &file], &dir);
    assert!(
        e.contains("--token-file") && e.contains("is 4 bytes"),
        "{e}"
    );
    let e = refused(&["--token-file", "/nonexistent/token"], &dir);
    assert!(e.contains("cannot read /nonexistent/token"), "{e}");
    let e = refused(&[], &dir);
    assert!(e.contains("--token"), "{e}");
    // Nothing was started: the data directory was never created.
    assert!(!dir.join("data").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node raises its soft descriptor limit to the hard one at start
/// (so a shell's default 1,024 does not cap its connections), and refuses
/// to start, with a message, under a limit that leaves no room (the
/// issue's `ulimit -n 64` probe used to end in exit 74 mid-snapshot).
#[test]
fn the_soft_descriptor_limit_is_raised_and_a_tiny_one_refused() {
    let dir = temp("nofile");
    let bin = env!("CARGO_BIN_EXE_synod-node");
    let shell = |limits: &str| {
        let script = format!(
            "ulimit -Hn; {limits}; exec \"$0\" --id 1 --listen 127.0.0.1:0 --peers '' \
             --token {TOKEN} --data-dir \"$1\""
        );
        Command::new("sh")
            .args(["-c", &script, bin])
            .arg(dir.join(format!("data-{}", limits.len())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sh")
    };
    // Soft 256 under the machine's hard limit: raised to the hard one.
    let mut child = shell("ulimit -Sn 256");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut hard = String::new();
    std::io::BufRead::read_line(&mut out, &mut hard).unwrap();
    let hard = hard.trim().to_string();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = String::new();
    let seen = loop {
        line.clear();
        if std::io::BufRead::read_line(&mut err, &mut line).unwrap_or(0) == 0
            || Instant::now() > deadline
        {
            break None;
        }
        if let Some(at) = line.find("nofile=") {
            let n: String = line[at + 7..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            break Some(n);
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.expect("no connection-limits line in the node's log");
    if hard == "unlimited" {
        assert!(seen.parse::<u64>().unwrap() > 256, "nofile={seen}");
    } else {
        assert_eq!(seen, hard, "the soft limit was not raised to the hard one");
    }
    // A hard limit of 64: refused at start, naming the limit.
    let child = shell("ulimit -n 64");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "started under ulimit -n 64");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("descriptor limit 64") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn quorums_that_need_not_intersect_are_refused_at_start() {
    let dir = temp("quorums");
    let three = [
        "--token",
        TOKEN,
        "--peers",
        "2=http://127.0.0.1:9,3=http://127.0.0.1:9",
    ];
    let run = |extra: &[&str]| {
        let out = node()
            .args(["--id", "1", "--listen", "127.0.0.1:0"])
            .args(three)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .output()
            .expect("run synod-node");
        assert!(!out.status.success(), "{extra:?} started");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run(&["--phase1-quorum", "1"]);
    assert!(
        e.contains("quorums of 1 (phase 1) and 2 (phase 2) need not intersect in 3"),
        "{e}"
    );
    let e = run(&["--phase1-quorum", "2", "--phase2-quorum", "1"]);
    assert!(e.contains("need not intersect"), "{e}");
    let e = run(&["--phase2-quorum", "4"]);
    assert!(
        e.contains("phase 2 quorum of 4 is not between 1 and the 3 members"),
        "{e}"
    );
    let e = run(&["--phase2-quorum", "most"]);
    assert!(
        e.contains("give `majority`, `all` or a positive number"),
        "{e}"
    );
    let e = run(&["--phase2-quorum", "0"]);
    assert!(e.contains("positive number"), "{e}");
    assert!(
        !dir.join("data").exists(),
        "a refused node touched its data directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A raw request on a fresh connection; the status and the JSON body.
fn raw(addr: &str, request: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Seconds until the server closes a connection we keep quiet on, or
/// feed `trickle` a byte at a time every 200 ms.
fn closed_after(addr: &str, trickle: &[u8]) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let t = Instant::now();
    let mut fed = 0;
    let mut buf = [0u8; 256];
    while t.elapsed() < Duration::from_secs(20) {
        if fed < trickle.len() {
            if s.write_all(&trickle[fed..=fed]).is_err() {
                return t.elapsed().as_secs_f64();
            }
            fed += 1;
        }
        match s.read(&mut buf) {
            Ok(0) => return t.elapsed().as_secs_f64(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return t.elapsed().as_secs_f64(),
        }
    }
    panic!("the connection was still open after 20 s");
}

async fn metric(c: &Cluster, id: u64, series: &str) -> f64 {
    c.metric(id, series)
        .await
        .unwrap_or_else(|| panic!("no {series} in node {id}'s metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_json_refusals_and_the_token_file() {
    let dir = temp("single");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("  {TOKEN}\n")).unwrap();
    let token_file = token_file.display().to_string();
    // Cluster::start passes --token; a second token source is refused, so
    // check --token-file on its own node first.
    let out = node()
        .args(["--id", "1", "--peers", "", "--token-file", &token_file])
        .args(["--token", TOKEN])
        .arg("--data-dir")
        .arg(dir.join("both"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "--token with --token-file started");
    // The token from the file (whitespace around it ignored) is the one.
    let mut child = node()
        .args(["--id", "1", "--listen", "127.0.0.1:0", "--peers", ""])
        .args(["--token-file", &token_file])
        .arg("--data-dir")
        .arg(dir.join("file"))
        .env_remove("SYNOD_TOKEN")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let file_addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let ask = |token: &str| {
        raw(
            &file_addr,
            format!(
                "GET /admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    // The address is printed before the node joins its (one-node)
    // cluster; until then every route answers 503 "still joining".
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw(
        &file_addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the --token-file node never got healthy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(ask(TOKEN).0, 200);
    assert_eq!(ask(&format!("{TOKEN}x")).0, 401);
    let _ = child.kill();
    let _ = child.wait();

    let c = Cluster::start(
        1,
        &[
            "--header-timeout-ms",
            "600",
            "--idle-timeout-ms",
            "1200",
            "--body-timeout-ms",
            "800",
        ],
    )
    .await;
    let url = c.url(1);
    let addr = url.trim_start_matches("http://").to_string();

    // The scheme's name in any case; anything else is refused.
    for (auth, want) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("bearer {TOKEN}"), 200),
        (format!("BEARER {TOKEN}"), 200),
        ("x".to_string(), 401),
        ("Bearer ".to_string(), 401),
        (format!("Basic {TOKEN}"), 401),
    ] {
        let r = c
            .http
            .get(format!("{url}/admin/status"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "Authorization: {auth}");
    }

    // hyper's own refusals carry the documented JSON body.
    let long_url = format!(
        "GET /v1/kv/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "k".repeat(100_000)
    );
    let (status, body) = raw(&addr, long_url.as_bytes());
    assert_eq!(status, 414, "{body}");
    assert_eq!(body["error"], "too-large", "{body}");
    assert_eq!(body["definite"], true, "{body}");
    let big_head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(200_000)
    );
    let (status, body) = raw(&addr, big_head.as_bytes());
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"], "too-large", "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("request head"),
        "{body}"
    );
    let many: String = (0..150).map(|i| format!("X-{i}: 1\r\n")).collect();
    let (status, body) = raw(
        &addr,
        format!("GET /health HTTP/1.1\r\n{many}\r\n").as_bytes(),
    );
    assert_eq!(status, 431, "{body}");
    assert_eq!(body["error"], "too-large", "{body}");
    let (status, body) = raw(&addr, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad-request", "{body}");
    // The connection after those still works.
    let (s, _) = c.put(1, "after", json!(1)).await;
    assert_eq!(s, 200);

    // An idle connection is closed by the idle timeout, a trickled head
    // by the header timeout, a trickled body by the body timeout.
    let idle = closed_after(&addr, b"");
    assert!(
        (1.0..4.0).contains(&idle),
        "idle connection closed after {idle:.2} s"
    );
    let slow = closed_after(
        &addr,
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n",
    );
    assert!(
        (0.5..3.0).contains(&slow),
        "trickled head closed after {slow:.2} s"
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"va")
        .unwrap();
    let mut out = Vec::new();
    let t = Instant::now();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request-timeout\""), "{text}");
    assert!(t.elapsed() < Duration::from_secs(5));

    assert!(metric(&c, 1, "synod_connections_closed_total{reason=\"idle\"}").await >= 1.0);
    assert!(
        metric(
            &c,
            1,
            "synod_connections_closed_total{reason=\"header-timeout\"}"
        )
        .await
            >= 1.0
    );
    assert!(metric(&c, 1, "synod_http_errors_total{error=\"too-large\"}").await >= 3.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds `n` idle connections to `addr`, opening a new one whenever the
/// node closes one, until `stop`.
fn hold_idle(addr: String, n: usize, stop: Arc<AtomicBool>, closed: Arc<AtomicU64>) {
    let mut conns: Vec<TcpStream> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        conns.retain(|s| {
            let mut b = [0u8; 64];
            match s.peek(&mut b) {
                Ok(0) => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                _ => {
                    closed.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
        });
        while conns.len() < n {
            match TcpStream::connect(&addr) {
                Ok(s) => {
                    s.set_nonblocking(true).unwrap();
                    conns.push(s);
                }
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_full_of_clients_still_takes_its_peers_traffic() {
    // 40 slots, 20 of them reserved: 60 idle clients take the clients'
    // share and keep the reserve full of trials.
    let mut c = Cluster::start(
        3,
        &["--max-connections", "40", "--idle-timeout-ms", "60000"],
    )
    .await;
    c.put_eventually("before", json!(1), Duration::from_secs(10))
        .await;
    let addr = c.url(1).trim_start_matches("http://").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let flood = std::thread::spawn({
        let (addr, stop, closed) = (addr.clone(), stop.clone(), closed.clone());
        move || hold_idle(addr, 60, stop, closed)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    // A client on a new connection is told the node is full, in JSON.
    let (status, body) = raw(&addr, b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "overloaded", "{body}");

    // Node 1 and a freshly restarted node 2 are now the only majority:
    // every write needs messages from node 2 to enter node 1 on new
    // connections, through the reserve.
    c.kill(3);
    c.kill(2);
    c.spawn(2);
    c.wait_healthy(2, Duration::from_secs(10)).await.unwrap();
    let t = Instant::now();
    loop {
        let (s, b) = c.put(2, "during", json!(2)).await;
        if s == 200 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no write through node 2 while node 1 is full of clients: {s} {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "write committed by nodes 1 and 2 {:.1} s after node 2's restart; the flood saw {} closes",
        t.elapsed().as_secs_f64(),
        closed.load(Ordering::Relaxed)
    );
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
}

/// One frame of a peer stream: a 4-byte big-endian length and JSON.
fn frame(json: &[u8]) -> Vec<u8> {
    let mut f = (json.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(json);
    f
}

/// Opens a peer stream with `hello` and returns the answer frame's JSON
/// (Null if the node closed without one) and the socket.
fn open_stream(addr: &str, hello: &[u8]) -> (Value, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"\0synod-peer/1\n").unwrap();
    s.write_all(&frame(hello)).unwrap();
    (read_frame(&mut s), s)
}

fn read_frame(s: &mut TcpStream) -> Value {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return Value::Null;
    }
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stream_without_the_token_or_with_garbage_is_refused_with_a_reason() {
    let c = Cluster::start(3, &[]).await;
    c.put_eventually("before", json!(1), Duration::from_secs(10))
        .await;
    let addr = c.url(1).trim_start_matches("http://").to_string();
    let id: Value = server_support::http_client()
        .get(format!("{}/peer/v1/identity", c.url(1)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cluster = id["cluster"].as_str().unwrap().to_string();
    let hello = |token: &str, from: u64, cluster: &str| {
        json!({"token": token, "from": from, "cluster": cluster}).to_string()
    };
    for (h, error) in [
        (hello("wrong-token-0123456789", 2, &cluster), "unauthorized"),
        (hello(TOKEN, 1, &cluster), "bad-request"),
        (hello(TOKEN, 9, &cluster), "bad-request"),
        (hello(TOKEN, 2, "another-cluster"), "wrong-cluster"),
        ("not json".to_string(), "bad-request"),
    ] {
        let (answer, mut s) = open_stream(&addr, h.as_bytes());
        assert_eq!(answer["error"], error, "hello {h}: {answer}");
        assert!(answer["reason"].as_str().is_some_and(|r| !r.is_empty()));
        // And the node closes the stream.
        assert_eq!(read_frame(&mut s), Value::Null, "hello {h}");
    }

    // A good hello; an empty batch is acknowledged, garbage is refused.
    let (answer, mut s) = open_stream(&addr, hello(TOKEN, 2, &cluster).as_bytes());
    assert_eq!(answer, json!({"ok": true}));
    s.write_all(&frame(b"[]")).unwrap();
    let mut ack = [0u8; 8];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(
        u64::from_be_bytes(ack),
        1,
        "the ack counts the batches read"
    );
    s.write_all(&frame(b"{\"type\":\"no-such-message\"}"))
        .unwrap();
    let refusal = read_frame(&mut s);
    assert_eq!(refusal["error"], "bad-request", "{refusal}");
    assert_eq!(read_frame(&mut s), Value::Null);

    // A frame that arrives in pieces, the first right behind a whole one
    // (so an acknowledgement falls due while it is half read), is read
    // whole: both batches are acknowledged and the stream stays open.
    let (answer, mut s) = open_stream(&addr, hello(TOKEN, 2, &cluster).as_bytes());
    assert_eq!(answer, json!({"ok": true}));
    let split = frame(b"[]                                          ");
    let mut first = frame(b"[]");
    first.extend_from_slice(&split[..10]);
    s.write_all(&first).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&split[10..]).unwrap();
    let mut counted = 0;
    while counted < 2 {
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack)
            .unwrap_or_else(|e| panic!("no ack for the split batch (acked {counted}): {e}"));
        counted = u64::from_be_bytes(ack);
        assert!(counted <= 2, "ack {counted}: the stream lost its framing");
    }

    // A frame over the limit ends the stream without reading it.
    let (_, mut s) = open_stream(&addr, hello(TOKEN, 2, &cluster).as_bytes());
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(read_frame(&mut s), Value::Null);

    // None of it hurt the node.
    let (status, body) = c.put(1, "after", json!(2)).await;
    assert_eq!(status, 200, "{body}");
}
