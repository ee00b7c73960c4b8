//! The life of one HTTP/1 connection: its header and idle timeouts, the
//! trial's short deadline, the token check before routing, and the socket
//! watched so that a response hyper writes by itself gets a JSON body.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower::ServiceExt;

use super::slots::{Class, Slot};
use super::{lock, Config, Trust, MAX_HEADERS, MAX_HEAD_BYTES, TRIAL_HEADER_TIMEOUT};
use crate::server::api::{self, ApiError};
use crate::server::metrics::Metrics;
use crate::server::peer_stream;

/// Timing of one connection, shared by its IO and its service.
#[derive(Debug)]
struct Activity {
    /// Requests handed to the router and not yet answered.
    serving: usize,
    /// Answers the router produced that have not been written yet: a
    /// status line written beyond these is hyper's own error response.
    answers: usize,
    /// When the first byte of the next request head arrived.
    head_started: Option<Instant>,
    /// Bytes of the current request line so far, and whether it ended.
    line_bytes: usize,
    line_done: bool,
    /// Since when nothing has happened (accept, or the last answer).
    idle_since: Instant,
}

impl Activity {
    /// When the connection times out, if nothing happens before.
    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Instant> {
        if self.serving > 0 {
            return None;
        }
        Some(match self.head_started {
            Some(t) => t + header_timeout,
            None => self.idle_since + idle_timeout,
        })
    }
}

pub(super) async fn connection(
    stream: TcpStream,
    app: Router,
    config: Arc<Config>,
    slot: Arc<Slot>,
    mut shutdown: watch::Receiver<bool>,
) {
    let metrics = config.metrics.clone();
    metrics.connections_open.fetch_add(1, Relaxed);
    match first_byte(&stream, &slot, &config, &mut shutdown).await {
        First::Http => {}
        First::PeerStream => {
            if let Some(st) = config.peer_streams.clone() {
                let trust = || slot.trust();
                peer_stream::serve(stream, st, config.idle_timeout, trust, shutdown).await;
            }
            metrics.connections_open.fetch_sub(1, Relaxed);
            slot.release();
            return;
        }
        First::Nothing(why) => {
            if let Some(why) = why {
                metrics.connection_closed(why);
            }
            metrics.connections_open.fetch_sub(1, Relaxed);
            slot.release();
            return;
        }
    }
    let activity = Arc::new(Mutex::new(Activity {
        serving: 0,
        answers: 0,
        head_started: None,
        line_bytes: 0,
        line_done: false,
        idle_since: Instant::now(),
    }));
    let head_began = Arc::new(Notify::new());
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
        head_began: head_began.clone(),
        metrics: metrics.clone(),
        replacement: None,
    };
    let service = {
        let activity = activity.clone();
        let slot = slot.clone();
        let config = config.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            let activity = activity.clone();
            let slot = slot.clone();
            let config = config.clone();
            async move {
                {
                    let mut a = lock(&activity);
                    a.serving += 1;
                    a.head_started = None;
                    a.line_bytes = 0;
                    a.line_done = false;
                }
                let resp = answer(req, app, &slot, &config).await;
                let mut a = lock(&activity);
                a.serving -= 1;
                a.answers += 1;
                a.idle_since = Instant::now();
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // A trial has one short deadline from its accept, bytes or not.
        let (header_timeout, idle_timeout) = if slot.class() == Class::Trial {
            (TRIAL_HEADER_TIMEOUT, TRIAL_HEADER_TIMEOUT)
        } else {
            (config.header_timeout, config.idle_timeout)
        };
        let deadline = lock(&activity).deadline(header_timeout, idle_timeout);
        let far = Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() && !closing => {
                let a = lock(&activity);
                let now = Instant::now();
                if a.deadline(header_timeout, idle_timeout).is_some_and(|d| d <= now) {
                    metrics.connection_closed(if a.head_started.is_some() {
                        "header-timeout"
                    } else {
                        "idle"
                    });
                    break;
                }
            }
            _ = head_began.notified() => {}
            _ = slot.evict.notified() => {
                metrics.connection_closed("evicted");
                break;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    metrics.connections_open.fetch_sub(1, Relaxed);
    slot.release();
}

/// What a new connection turned out to be by its first byte.
enum First {
    Http,
    PeerStream,
    /// Closed, or silent past its timeout (the reason to count, if any).
    Nothing(Option<&'static str>),
}

/// Looks at the first byte without consuming it: a peer stream's preface
/// starts with one no HTTP request starts with. A connection that sends
/// nothing within the idle timeout (a trial's within its short one) is
/// closed, as the HTTP side would.
async fn first_byte(
    stream: &TcpStream,
    slot: &Slot,
    config: &Config,
    shutdown: &mut watch::Receiver<bool>,
) -> First {
    let wait = if slot.class() == Class::Trial {
        TRIAL_HEADER_TIMEOUT
    } else {
        config.idle_timeout
    };
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        r = tokio::time::timeout(wait, stream.peek(&mut first)) => r,
        _ = shutdown.changed() => return First::Nothing(None),
    };
    match peeked {
        Ok(Ok(1)) if first[0] == peer_stream::PREFACE[0] => First::PeerStream,
        Ok(Ok(1)) => First::Http,
        Ok(_) => First::Nothing(None),
        Err(_) => First::Nothing(Some("idle")),
    }
}

/// Routes one request, unless the connection is on trial and the request
/// does not carry the token.
async fn answer(
    req: Request<Incoming>,
    app: Router,
    slot: &Arc<Slot>,
    config: &Config,
) -> Response {
    let mut req = req.map(Body::new);
    if slot.class() == Class::Trial {
        if api::bearer_matches(req.headers(), &config.token) {
            slot.trust();
        } else {
            config.metrics.connection_closed("refused");
            config.metrics.http_error("overloaded");
            let mut resp = ApiError::overloaded(
                "the node is at its connection limit; only the cluster's own traffic is \
                 admitted now",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    }
    req.extensions_mut().insert(Trust(slot.clone()));
    match app.oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

/// The connection's socket, watched: reads start the header clock, and a
/// response hyper writes on its own gets a JSON body.
pub(super) struct Watched {
    inner: TcpStream,
    activity: Arc<Mutex<Activity>>,
    head_began: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// Our answer in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn saw_bytes(&self, bytes: &[u8]) {
        let mut a = lock(&self.activity);
        if a.serving > 0 || bytes.is_empty() {
            return;
        }
        if a.head_started.is_none() {
            a.head_started = Some(Instant::now());
            a.line_bytes = 0;
            a.line_done = false;
            self.head_began.notify_one();
        }
        if !a.line_done {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    a.line_bytes += i;
                    a.line_done = true;
                }
                None => a.line_bytes += bytes.len(),
            }
        }
    }

    /// Writes what is left of the replacement; ready once all of it is.
    fn drain_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = self.replacement.as_mut() {
            if *done == bytes.len() {
                return Poll::Ready(Ok(()));
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }

    /// The JSON answer for a status hyper chose by itself.
    fn replacement_for(&self, status: u16) -> Vec<u8> {
        let line_too_long = {
            let a = lock(&self.activity);
            !a.line_done || a.line_bytes >= MAX_HEAD_BYTES / 2
        };
        let (status, error, reason) = match status {
            431 | 414 if status == 414 || line_too_long => (
                StatusCode::URI_TOO_LONG,
                "too-large",
                format!("the request line is over {} bytes", MAX_HEAD_BYTES / 2),
            ),
            431 => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too-large",
                format!(
                    "the request head is over {MAX_HEAD_BYTES} bytes or has over {MAX_HEADERS} headers"
                ),
            ),
            _ => (
                StatusCode::BAD_REQUEST,
                "bad-request",
                "the request is not valid HTTP/1.1".to_string(),
            ),
        };
        self.metrics.http_error(error);
        let body = api::error_body(error, true, &reason).to_string();
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        )
        .into_bytes()
    }
}

/// The status code of a response head at the start of `buf`, if any.
fn status_of(buf: &[u8]) -> Option<u16> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.saw_bytes(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacement.is_none() {
            if let Some(status) = status_of(buf).filter(|s| *s >= 200) {
                let ours = {
                    let mut a = lock(&self.activity);
                    let ours = a.answers > 0;
                    a.answers = a.answers.saturating_sub(1);
                    ours
                };
                if !ours {
                    let bytes = self.replacement_for(status);
                    self.replacement = Some((bytes, 0));
                }
            }
        }
        if self.replacement.is_some() {
            // hyper's own answer is swallowed whole; ours goes instead.
            std::task::ready!(self.drain_replacement(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_recognised_only_at_the_start() {
        assert_eq!(
            status_of(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            Some(431)
        );
        assert_eq!(status_of(b"HTTP/1.0 400 Bad Request\r\n"), Some(400));
        assert_eq!(status_of(b"{\"value\":1}"), None);
        assert_eq!(status_of(b"HTTP/1.1 4x1"), None);
        assert_eq!(status_of(b"HTTP/1.1 "), None);
    }
}
