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
//!
//! It binds to 127.0.0.1 by default: the store holds node logs and
//! histories, not something to publish by accident.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::figures::{self, escape, fmt_opt};

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
        .with_state(Arc::new(Store { root }))
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("not found: {what}\n")).into_response()
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
    let Some(full) = resolve(&st.root, &path) else {
        return not_found(&path);
    };
    if !full.is_file() {
        return not_found(&path);
    }
    match tokio::fs::read(&full).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&full))], bytes).into_response(),
        Err(_) => not_found(&path),
    }
}

async fn archive(
    State(st): State<Arc<Store>>,
    UrlPath((name, stamp)): UrlPath<(String, String)>,
) -> Response {
    let rel = format!("{name}/{stamp}");
    let Some(dir) = resolve(&st.root, &rel).filter(|d| d.join("config.json").is_file()) else {
        return not_found(&rel);
    };
    let prefix = format!("{name}-{stamp}");
    let built = tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        super::tar::append_dir(&mut buf, &dir, &prefix)?;
        super::tar::finish(&mut buf)?;
        Ok::<_, std::io::Error>(buf)
    })
    .await;
    match built {
        Ok(Ok(buf)) => (
            [
                (header::CONTENT_TYPE, "application/x-tar".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}-{stamp}.tar\""),
                ),
            ],
            buf,
        )
            .into_response(),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot archive the run\n",
        )
            .into_response(),
    }
}

#[derive(serde::Deserialize)]
struct CompareQuery {
    runs: String,
}

async fn compare(State(st): State<Arc<Store>>, Query(q): Query<CompareQuery>) -> Response {
    let mut runs = Vec::new();
    for rel in q.runs.split(',').filter(|s| !s.is_empty()) {
        let Some(dir) = resolve(&st.root, rel) else {
            return not_found(rel);
        };
        match figures::read_run(&dir) {
            Ok(r) => runs.push(r),
            Err(_) => return not_found(rel),
        }
    }
    if runs.is_empty() {
        return not_found("no runs picked");
    }
    let root = st.root.clone();
    let link = move |r: &figures::RunFigures| {
        let rel = r.dir.strip_prefix(&root).unwrap_or(&r.dir);
        format!("/runs/{}/report.html", rel.display())
    };
    Html(super::compare::page(&runs, &link)).into_response()
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
    let runs = tokio::task::spawn_blocking(move || figures::list_runs(&root))
        .await
        .unwrap_or_default();
    let mut s = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Synod runs</title>\n<style>\n\
         body{font-family:sans-serif;margin:1.5em;color:#222}\n\
         table{border-collapse:collapse} td,th{border:1px solid #ddd;padding:3px 7px;font-size:14px}\n\
         th[data-sort]{cursor:pointer;background:#f4f4f4} td.n{text-align:right}\n\
         .valid{color:#070}.invalid{color:#fff;background:#c00;font-weight:bold}.unknown{color:#000;background:#fc6}.error{color:#fff;background:#777}\n\
         </style></head><body>\n<h1>Synod runs</h1>\n\
         <p><input id=\"filter\" placeholder=\"filter: words that must all appear\" size=\"40\"> \
         <button id=\"compare\">Compare picked runs</button></p>\n\
         <table id=\"runs\"><thead><tr><th></th><th data-sort>time</th><th data-sort>name</th><th data-sort>target</th>\
         <th data-sort>settings</th><th data-sort>verdict</th><th data-sort>ops</th><th data-sort>ok ops/s</th>\
         <th data-sort>p99 ms</th><th data-sort>availability</th><th data-sort>recovery s</th><th data-sort>peer msgs/op</th><th>files</th></tr></thead><tbody>\n",
    );
    for r in &runs {
        let rel = format!("{}/{}", r.name, r.stamp);
        let rel_e = escape(&rel);
        let _ = writeln!(
            s,
            "<tr><td><input type=\"checkbox\" value=\"{rel_e}\"></td><td>{}</td><td>{}</td><td>{} x{}</td><td>{}</td>\
             <td class=\"{v}\">{v}</td><td class=\"n\" data-v=\"{ops}\">{ops}</td>\
             <td class=\"n\" data-v=\"{tp:.3}\">{tp:.1}</td><td class=\"n\" data-v=\"{p99v}\">{p99}</td>\
             <td class=\"n\" data-v=\"{av}\">{avail}</td><td class=\"n\" data-v=\"{rec}\">{rec}</td><td class=\"n\" data-v=\"{msgsv}\">{msgs}</td>\
             <td><a href=\"/runs/{rel_e}/report.html\">report</a> <a href=\"/runs/{rel_e}/history.jsonl\">history</a> \
             <a href=\"/runs/{rel_e}/results.json\">results</a> <a href=\"/archive/{rel_e}\">tar</a></td></tr>",
            escape(&r.stamp),
            escape(&r.name),
            escape(&r.target),
            r.nodes,
            escape(&r.settings),
            v = escape(&r.verdict),
            ops = r.operations,
            tp = r.throughput,
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
    Html(s).into_response()
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
