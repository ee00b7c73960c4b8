//! Reading a node's `/admin/metrics` page: the `direction="sent"`
//! counters of the peer-message metric, by message type, out of the
//! Prometheus text format (only as much of it as the node renders and
//! Prometheus allows for a counter line).

use super::Sample;

/// The metric the nodes count peer messages in.
const METRIC: &str = synod_wire::metrics::PEER_MESSAGES_TOTAL;

/// Why a metrics page could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no {METRIC}{{direction=\"sent\"}} counter in the metrics (not a synod-node?)")]
    NoCounter,
}

/// Reads the `direction="sent"` counters of [`METRIC`] from a Prometheus
/// text page, by their `type` label. Other metrics, comments and other
/// directions are skipped; a malformed line of our metric is an error.
pub fn parse_sent(text: &str) -> Result<Sample, ParseError> {
    let mut sample = Sample::new();
    let mut found = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        // `synod_peer_messages_total_foo` is another metric.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let bad = |reason: &str| ParseError::Line {
            line: i + 1,
            reason: format!("{reason}: {line:?}"),
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => {
                let end = closing_brace(r).ok_or_else(|| bad("unclosed label set"))?;
                (
                    parse_labels(&r[..end]).ok_or_else(|| bad("bad labels"))?,
                    &r[end + 1..],
                )
            }
            None => (Vec::new(), rest),
        };
        let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if label("direction") != Some("sent") {
            continue;
        }
        let kind = label("type").unwrap_or("other").to_string();
        // The value, then an optional timestamp.
        let value = value
            .split_whitespace()
            .next()
            .ok_or_else(|| bad("no value"))?;
        let count = parse_count(value).ok_or_else(|| bad("the value is not a count"))?;
        *sample.entry(kind).or_default() += count;
        found = true;
    }
    if found {
        Ok(sample)
    } else {
        Err(ParseError::NoCounter)
    }
}

/// The index of the `}` closing a label set, skipping quoted values.
fn closing_brace(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `a="x",b="y\"z"` into pairs; `None` if it is not that shape.
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim().to_string();
        if name.is_empty() {
            return None;
        }
        let body = rest[eq + 1..].trim_start();
        let mut chars = body.char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match c {
                _ if escaped => {
                    value.push(match c {
                        'n' => '\n',
                        other => other,
                    });
                    escaped = false;
                }
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name, value));
        rest = body[end? + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Some(out)
}

/// A counter value: an integer, or a float that is one (Prometheus allows
/// `1e+06`).
fn parse_count(s: &str) -> Option<u64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let f = s.parse::<f64>().ok()?;
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pairs: &[(&str, u64)]) -> Sample {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    const PAGE: &str = "\
# HELP synod_peer_messages_total Protocol messages by direction and type.
# TYPE synod_peer_messages_total counter
synod_peer_messages_total{direction=\"sent\",type=\"accept\"} 120
synod_peer_messages_total{direction=\"received\",type=\"accept\"} 7
synod_peer_messages_total{direction=\"sent\",type=\"heartbeat\"} 33
synod_peer_messages_total{type=\"accepted\", direction=\"sent\"} 1e3 1700000000000
# HELP synod_peer_messages_dropped_total Messages dropped.
synod_peer_messages_dropped_total 99
synod_requests_total{op=\"read\",outcome=\"ok\"} 5
";

    #[test]
    fn parses_sent_counters_by_type_and_skips_the_rest() {
        let s = parse_sent(PAGE).unwrap();
        assert_eq!(
            s,
            sample(&[("accept", 120), ("heartbeat", 33), ("accepted", 1000)])
        );
    }

    #[test]
    fn parses_the_shape_the_node_renders() {
        // node/src/server/metrics.rs: both directions per kind, zeros
        // included (the suite smoke test reads real nodes).
        let mut page = String::new();
        for (i, k) in ["prepare", "promise", "other"].iter().enumerate() {
            page += &format!(
                "synod_peer_messages_total{{direction=\"sent\",type=\"{k}\"}} {i}\n\
                 synod_peer_messages_total{{direction=\"received\",type=\"{k}\"}} 50\n"
            );
        }
        let s = parse_sent(&page).unwrap();
        assert_eq!(s, sample(&[("prepare", 0), ("promise", 1), ("other", 2)]));
    }

    #[test]
    fn quoted_braces_and_escapes_in_labels() {
        let s = parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"a}\\\"b\"} 4\n")
            .unwrap();
        assert_eq!(s, sample(&[("a}\"b", 4)]));
    }

    #[test]
    fn a_page_without_the_counter_or_with_a_bad_value_is_an_error() {
        assert_eq!(
            parse_sent("etcd_server_has_leader 1\n"),
            Err(ParseError::NoCounter)
        );
        let e = parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\"} -3\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e =
            parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\" 3\n").unwrap_err();
        assert!(e.to_string().contains("unclosed"), "{e}");
        let e =
            parse_sent("synod_peer_messages_total{direction=\"sent\",type=\"x\"}\n").unwrap_err();
        assert!(e.to_string().contains("no value"), "{e}");
    }
}
