//! `synod serve`: the store as a web page.
//!
//! - `/`: every run (name, time, target, settings, verdict, ops, p99,
//!   availability, recovery, peer messages per op), sortable and filterable by a small inline script, with
//!   links to its report, history and archive, and boxes to pick runs to
//!   compare.
//! - `/runs/NAME/STAMP/FILE`: a file of a run. Paths are checked component
//!   by component (no `..`, no hidden names) and the resolved file must lie
//!   under the store, so neither a crafted URL nor a symlink reaches out.
//! - `/archive/NAME/STAMP`: the run directory as a tar archive.
//! - `/compare?runs=NAME/STAMP,NAME/STAMP`: `synod compare` of those runs.
//! - `/trends[?config=WORD]`: every figure of the store's trend file over
//!   the nights, a line per configuration, invalid nights marked
//!   (`nightly::trends`).
//!
//! Files and archives are streamed in [`CHUNK`]-sized pieces, so memory
//! does not grow with their size; at most [`MAX_ARCHIVES`] archives are
//! built at once (more are answered 503). Nothing blocking runs on the
//! async workers: reading run files and rendering pages happen on the
//! blocking pool under [`REQUEST_TIMEOUT`], files are opened without
//! following a final symlink and without blocking (a FIFO named
//! `results.json` is refused, not waited on), and the index lists only
//! run directories that are real directories inside the store.
//!
//! It binds to 127.0.0.1 by default: the store holds node logs and
//! histories, not something to publish by accident.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use synod_checker::html::escape;
use tokio::sync::{mpsc, Semaphore};

use super::figures::{self, fmt_opt};

/// Longest a request may spend on the blocking pool (reading a run's
/// files, rendering a comparison); past it the answer is 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Archives built at once; more are answered 503.
pub const MAX_ARCHIVES: usize = 2;
/// A streamed file or archive goes out in pieces of this size.
pub const CHUNK: usize = 64 << 10;
/// An archive whose reader takes no piece for this long is abandoned.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `synod serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The store directory.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Address to listen on (port 0: any free port, printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
}

/// The store's root, canonical, shared by every handler.
struct Store {
    root: PathBuf,
    /// Bounds the archives being built at once.
    archives: Arc<Semaphore>,
}

/// Runs `synod serve` until interrupted.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let root = args
        .store
        .canonicalize()
        .with_context(|| format!("cannot open the store {}", args.store.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr()?;
        // The first line of stdout is the address: tests and scripts read it.
        println!("synod serve: http://{addr}/ (store {})", root.display());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        axum::serve(listener, router(root))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("the server failed")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The routes, over a canonical store root.
pub fn router(root: PathBuf) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/runs/{*path}", get(file))
        .route("/archive/{name}/{stamp}", get(archive))
        .route("/compare", get(compare))
        .route("/trends", get(trends))
        .with_state(Arc::new(Store {
            root,
            archives: Arc::new(Semaphore::new(MAX_ARCHIVES)),
        }))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("not found: {what}\n")).into_response()
}

fn unavailable(why: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

/// Runs blocking work on the blocking pool, bounded by
/// [`REQUEST_TIMEOUT`]: a slow disk or a file that never ends holds one
/// blocking thread, never an async worker and the routes behind it.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    match tokio::time::timeout(REQUEST_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => {
            Err((StatusCode::INTERNAL_SERVER_ERROR, "the request failed\n").into_response())
        }
        Err(_) => Err(unavailable(&format!(
            "the request took over {} s",
            REQUEST_TIMEOUT.as_secs()
        ))),
    }
}

/// Resolves a URL path to a file or directory under the store, or `None`.
fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel);
    for c in rel.components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => {}
            _ => return None,
        }
    }
    let full = root.join(rel).canonicalize().ok()?;
    full.starts_with(root).then_some(full)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("xml") => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

async fn file(State(st): State<Arc<Store>>, UrlPath(path): UrlPath<String>) -> Response {
    let root = st.root.clone();
    let rel = path.clone();
    let opened = blocking(move || {
        let full = resolve(&root, &rel)?;
        let (file, len) = figures::open_regular(&full).ok()?;
        Some((full, file, len))
    })
    .await;
    let (full, file, len) = match opened {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(&path),
        Err(resp) => return resp,
    };
    let stream = FileStream {
        file: tokio::fs::File::from_std(file),
        left: len,
        buf: vec![0; CHUNK],
    };
    (
        [
            (header::CONTENT_TYPE, content_type(&full).to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A file's first `left` bytes (its length when opened) as a stream of
/// pieces; a file that shrank meanwhile ends the stream with an error.
struct FileStream {
    file: tokio::fs::File,
    left: u64,
    buf: Vec<u8>,
}

impl futures_core::Stream for FileStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let want = this.buf.len().min(this.left as usize);
        let mut rb = tokio::io::ReadBuf::new(&mut this.buf[..want]);
        match tokio::io::AsyncRead::poll_read(Pin::new(&mut this.file), cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while being sent",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let piece = Bytes::copy_from_slice(rb.filled());
                this.left -= piece.len() as u64;
                Poll::Ready(Some(Ok(piece)))
            }
        }
    }
}

/// The pieces a blocking producer sends, as a body stream.
struct Pieces(mpsc::Receiver<io::Result<Bytes>>);

impl futures_core::Stream for Pieces {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A `Write` on the blocking pool that hands [`CHUNK`]-sized pieces to
/// the response body, waiting (at most [`SEND_TIMEOUT`]) while the reader
/// is slow: memory stays at a few pieces whatever the archive's size.
struct PieceWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    rt: tokio::runtime::Handle,
}

impl PieceWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let sent = self
            .rt
            .block_on(tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(piece))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
        }
    }
}

impl io::Write for PieceWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

async fn archive(
    State(st): State<Arc<Store>>,
    UrlPath((name, stamp)): UrlPath<(String, String)>,
) -> Response {
    let rel = format!("{name}/{stamp}");
    let root = st.root.clone();
    let found = blocking({
        let rel = rel.clone();
        move || {
            resolve(&root, &rel).filter(|d| figures::open_regular(&d.join("config.json")).is_ok())
        }
    })
    .await;
    let dir = match found {
        Ok(Some(dir)) => dir,
        Ok(None) => return not_found(&rel),
        Err(resp) => return resp,
    };
    let Ok(permit) = st.archives.clone().try_acquire_owned() else {
        return unavailable(&format!(
            "{MAX_ARCHIVES} archives are being built already; try again in a moment"
        ));
    };
    let prefix = format!("{name}-{stamp}");
    let (tx, rx) = mpsc::channel(4);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = PieceWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            rt: rt.clone(),
        };
        let built = super::tar::append_dir(&mut out, &dir, &prefix)
            .and_then(|()| super::tar::finish(&mut out))
            .and_then(|()| out.flush());
        if let Err(e) = built {
            if e.kind() == io::ErrorKind::BrokenPipe {
                tracing::debug!(dir = %dir.display(), "archive abandoned: the client went away");
            } else {
                tracing::warn!(dir = %dir.display(), error = %e, "archive abandoned");
            }
            // The reader sees a broken body rather than a short archive
            // that looks whole.
            let _ = rt.block_on(tx.send(Err(e)));
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}-{stamp}.tar\""),
            ),
        ],
        Body::from_stream(Pieces(rx)),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct TrendsQuery {
    config: Option<String>,
}

async fn trends(State(st): State<Arc<Store>>, Query(q): Query<TrendsQuery>) -> Response {
    let root = st.root.clone();
    let page = blocking(move || {
        super::trends::read(&root)
            .map(|(points, notes)| super::trends::page(&points, &notes, q.config.as_deref()))
            .map_err(|e| format!("{e:#}"))
    })
    .await;
    match page {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(why)) => unavailable(&why),
        Err(resp) => resp,
    }
}

#[derive(serde::Deserialize)]
struct CompareQuery {
    runs: String,
}

async fn compare(State(st): State<Arc<Store>>, Query(q): Query<CompareQuery>) -> Response {
    let root = st.root.clone();
    let page = blocking(move || {
        let mut runs = Vec::new();
        for rel in q.runs.split(',').filter(|s| !s.is_empty()) {
            // Err: what was not found.
            let Some(dir) = resolve(&root, rel) else {
                return Err(rel.to_string());
            };
            match figures::read_run(&dir) {
                Ok(r) => runs.push(r),
                Err(_) => return Err(rel.to_string()),
            }
        }
        if runs.is_empty() {
            return Err("no runs picked".to_string());
        }
        let link = |r: &figures::RunFigures| {
            let rel = r.dir.strip_prefix(&root).unwrap_or(&r.dir);
            format!("/runs/{}/report.html", rel.display())
        };
        Ok(super::compare::page(&runs, &link))
    })
    .await;
    match page {
        Ok(Ok(html)) => Html(html).into_response(),
        Ok(Err(what)) => not_found(&what),
        Err(resp) => resp,
    }
}

const SCRIPT: &str = r#"
const table = document.getElementById('runs');
const body = table.tBodies[0];
document.getElementById('filter').addEventListener('input', (e) => {
  const words = e.target.value.toLowerCase().split(/\s+/).filter(Boolean);
  for (const row of body.rows) {
    const text = row.textContent.toLowerCase();
    row.style.display = words.every((w) => text.includes(w)) ? '' : 'none';
  }
});
let sorted = { col: -1, dir: 1 };
table.tHead.querySelectorAll('th[data-sort]').forEach((th, _) => {
  th.addEventListener('click', () => {
    const col = th.cellIndex;
    sorted = { col, dir: sorted.col === col ? -sorted.dir : 1 };
    const key = (row) => {
      const cell = row.cells[col];
      const v = cell.dataset.v;
      return v !== undefined && v !== '' ? parseFloat(v) : cell.textContent;
    };
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sorted.dir;
    });
    rows.forEach((r) => body.appendChild(r));
  });
});
document.getElementById('compare').addEventListener('click', () => {
  const picked = Array.from(body.querySelectorAll('input[type=checkbox]:checked')).map((c) => c.value);
  if (picked.length === 0) { alert('Pick runs to compare first.'); return; }
  window.location = '/compare?runs=' + encodeURIComponent(picked.join(','));
});
"#;

async fn index(State(st): State<Arc<Store>>) -> Response {
    let root = st.root.clone();
    match blocking(move || index_page(&figures::list_runs(&root))).await {
        Ok(html) => Html(html).into_response(),
        Err(resp) => resp,
    }
}

fn index_page(runs: &[figures::RunFigures]) -> String {
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Synod runs</title>\n<style>\n\
         body{font-family:sans-serif;margin:1.5em;color:#222}\n\
         table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:3px 7px;font-size:14px}\n\
         th[data-sort]{cursor:pointer;background:#f4f4f4} td.n{text-align:right}\n\
         .valid{color:#070}.invalid{color:#fff;background:#c00;font-weight:bold}.unknown{color:#000;background:#fc6}.error{color:#fff;background:#777}\n\
         </style></head><body>\n<h1>Synod runs</h1>\n\
         <p><input id=\"filter\" placeholder=\"filter: words that must all appear\" size=\"40\"> \
         <button id=\"compare\">Compare picked runs</button> <a href=\"/trends\">Trends over the nights</a></p>\n\
         <table id=\"runs\"><thead><tr><th></th><th data-sort>time</th><th data-sort>name</th><th data-sort>target</th>\
         <th data-sort>settings</th><th data-sort>verdict</th><th data-sort>ops</th><th data-sort>ok ops/s</th>\
         <th data-sort>p99 ms</th><th data-sort>availability</th><th data-sort>recovery s</th><th data-sort>peer msgs/op</th><th>files</th></tr></thead><tbody>\n",
    );
    for r in runs {
        let rel = format!("{}/{}", r.name, r.stamp);
        let rel_e = escape(&rel);
        let _ = writeln!(
            s,
            "<tr><td><input type=\"checkbox\" value=\"{rel_e}\"></td><td>{}</td><td>{}</td><td>{} x{}</td><td>{}</td>\
             <td class=\"{v}\">{v}</td><td class=\"n\" data-v=\"{opsv}\">{ops}</td>\
             <td class=\"n\" data-v=\"{tpv}\">{tp}</td><td class=\"n\" data-v=\"{p99v}\">{p99}</td>\
             <td class=\"n\" data-v=\"{av}\">{avail}</td><td class=\"n\" data-v=\"{rec}\">{rec}</td><td class=\"n\" data-v=\"{msgsv}\">{msgs}</td>\
             <td><a href=\"/runs/{rel_e}/report.html\">report</a> <a href=\"/runs/{rel_e}/history.jsonl\">history</a> \
             <a href=\"/runs/{rel_e}/results.json\">results</a> <a href=\"/archive/{rel_e}\">tar</a></td></tr>",
            escape(&r.stamp),
            escape(&r.name),
            escape(&r.target),
            r.nodes,
            escape(&r.settings),
            v = escape(&r.verdict),
            opsv = r.operations.map(|n| n.to_string()).unwrap_or_default(),
            ops = r.operations.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            tpv = r.throughput.map(|t| format!("{t:.3}")).unwrap_or_default(),
            tp = fmt_opt(r.throughput, 1),
            p99v = r.p99().map(|p| format!("{p:.3}")).unwrap_or_default(),
            p99 = fmt_opt(r.p99(), 1),
            av = r.availability.map(|a| format!("{a:.5}")).unwrap_or_default(),
            avail = fmt_opt(r.availability.map(|a| a * 100.0), 2),
            rec = fmt_opt(r.recovery, 2),
            msgsv = r
                .peer_messages_per_op
                .map(|m| format!("{m:.3}"))
                .unwrap_or_default(),
            msgs = r
                .peer_messages_per_op
                .map(|m| format!("{m:.2}"))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    s += "</tbody></table>\n";
    let _ = write!(
        s,
        "<p>{} runs</p>\n<script>{SCRIPT}</script>\n</body></html>\n",
        runs.len()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_store() {
        let root = std::env::temp_dir().join(format!("synod-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("a/1")).unwrap();
        std::fs::write(root.join("a/1/report.html"), "x").unwrap();
        let root = root.canonicalize().unwrap();
        assert!(resolve(&root, "a/1/report.html").is_some());
        assert!(resolve(&root, "../etc/passwd").is_none());
        assert!(resolve(&root, "a/../../x").is_none());
        assert!(resolve(&root, "/etc/passwd").is_none());
        assert!(resolve(&root, "a/.hidden").is_none());
        std::os::unix::fs::symlink("/etc", root.join("a/out")).unwrap();
        assert!(resolve(&root, "a/out/passwd").is_none());
        std::fs::remove_dir_all(&root).ok();
    }
}
