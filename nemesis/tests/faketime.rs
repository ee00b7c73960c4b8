//! libfaketime, measured on the programs it is meant for: a Synod node
//! started by the local backend with `Clock::Faketime` answers with the
//! skewed time the nemesis wrote (read back from the node's own HTTP
//! `Date` header), and an etcd member preloaded the same way does not
//! (Go reads the clock through the vDSO), which is why clock faults on
//! etcd are refused. Needs Debian's `faketime`; etcd's half needs
//! `etcd-server`. A missing library or binary fails: CI installs them.

use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use synod_nemesis::{faketime, Backend, Clock, Disk, LocalBackend, LocalConfig, NodeName, Program};

/// Seconds since the epoch of an HTTP date (`Tue, 01 Dec 2026 20:28:24
/// GMT`).
fn http_date(s: &str) -> i64 {
    let f: Vec<&str> = s.split([' ', ':']).collect();
    let [_, day, month, year, h, m, sec, ..] = f[..] else {
        panic!("not an HTTP date: {s}")
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mo = months.iter().position(|&x| x == month).unwrap() as i64 + 1;
    let (y, d): (i64, i64) = (year.parse().unwrap(), day.parse().unwrap());
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    days * 86400
        + h.parse::<i64>().unwrap() * 3600
        + m.parse::<i64>().unwrap() * 60
        + sec.parse::<i64>().unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// How far ahead of true time the server at `url` says it is, in seconds.
async fn ahead(url: &str) -> i64 {
    let r = reqwest::get(url).await.unwrap();
    let date = r.headers()["date"].to_str().unwrap().to_string();
    http_date(&date) - now()
}

#[test]
fn http_dates_parse() {
    assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_eq!(http_date("Tue, 01 Dec 2026 20:28:24 GMT"), 1_796_156_904);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_moves_a_synod_nodes_clock_at_run_time() {
    if let Err(e) = synod_nemesis::local::find_node_binary() {
        panic!("synod-node is not built (cargo build --release --workspace): {e}");
    }
    faketime::find_library().expect("libfaketime (apt-get install faketime)");
    let dir = std::env::temp_dir().join(format!("synod-faketime-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let backend = LocalBackend::new(LocalConfig {
        program: Program::Synod,
        nodes: 1,
        node_bin: None,
        dir: dir.clone(),
        token: "faketime-test-token".into(),
        node_args: Vec::new(),
        base_port: None,
        ready_timeout: Duration::from_secs(20),
        disk: Disk::Plain,
        clock: Clock::Faketime,
    })
    .await
    .unwrap();
    backend.start().await.unwrap();
    let n1 = NodeName(1);
    let url = format!("{}/health", backend.url(n1).unwrap());
    let true_time = ahead(&url).await;
    backend.skew_clock(n1, 3_600_000, 1.0).unwrap();
    // hyper renews its Date header once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let skewed = ahead(&url).await;
    // Ten times as fast from now on: in 1.5 s the node's clock gains
    // about 13.5 s, not ten times its whole uptime. (A clock set back is
    // not read back here: hyper never renews a Date header it thinks is
    // from the future.)
    backend.skew_clock(n1, 3_600_000, 10.0).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fast = ahead(&url).await;
    backend.teardown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(true_time.abs() <= 2, "started {true_time} s off");
    assert!(
        (skewed - 3600).abs() <= 2,
        "skewed +1 h, the node says {skewed} s"
    );
    assert!(
        (3600 + 10..=3600 + 17).contains(&fast),
        "at 10x for 1.5 s the node says {fast} s ahead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_does_not_reach_etcd() {
    let etcd =
        synod_nemesis::local::find_etcd_binary().expect("etcd (apt-get install etcd-server)");
    let lib = faketime::find_library().expect("libfaketime (apt-get install faketime)");
    let dir = std::env::temp_dir().join(format!("synod-faketime-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("faketime");
    faketime::write(&control, &faketime::spec(3_600_000, 1.0, Duration::ZERO)).unwrap();
    let port = |()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let client = format!("http://127.0.0.1:{}", port(()));
    let peer = format!("http://127.0.0.1:{}", port(()));
    let mut member = Command::new(etcd)
        .envs(faketime::env(&lib, &control))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = None;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(format!("{client}/version")).await {
            let date = r.headers()["date"].to_str().unwrap().to_string();
            seen = Some(http_date(&date) - now());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = member.kill();
    let _ = member.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let seen = seen.expect("etcd never answered");
    assert!(
        seen.abs() <= 2,
        "etcd preloaded with libfaketime an hour ahead answers {seen} s off: libfaketime \
         reaches it now, so clock faults on etcd need not be refused any more \
         (faketime::ETCD_UNREACHABLE)"
    );
}
