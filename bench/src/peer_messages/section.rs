//! The "Peer messages" section of `report.html`: the figure per client
//! operation, then the messages by type and by node, or why the figure
//! is not available.

use synod_checker::Section;

use super::PeerMessages;

/// The report's "Peer messages" section: per op, then by type and node.
pub fn peer_section(m: Result<&PeerMessages, &&'static str>) -> Section {
    let heading = "Peer messages".to_string();
    let m = match m {
        Ok(m) => m,
        Err(why) => {
            return Section {
                heading,
                text: format!("Not available: {why}."),
                ..Section::default()
            }
        }
    };
    let per_op = |v: u64| {
        if m.completed_ops > 0 {
            format!("{:.3}", v as f64 / m.completed_ops as f64)
        } else {
            "-".into()
        }
    };
    let mut text = format!(
        "{} per client operation: {} protocol messages sent by all nodes (heartbeats \
         included) over {} completed operations (ok + fail + info); {} samples of every \
         node's /admin/metrics, {:.1} s apart.",
        m.per_op
            .map(|p| format!("{p:.3}"))
            .unwrap_or_else(|| "-".into()),
        m.sent,
        m.completed_ops,
        m.samples,
        m.interval_s
    );
    if !m.restarts.is_empty() {
        let r: Vec<String> = m
            .restarts
            .iter()
            .map(|(n, k)| format!("{n} x{k}"))
            .collect();
        text += &format!(
            " Restarts seen: {} (what a node sent in the interval before it died is not counted).",
            r.join(", ")
        );
    }
    for g in &m.gaps {
        text += &format!(" {g}.");
    }
    let mut rows: Vec<Vec<String>> = m
        .by_type
        .iter()
        .map(|(k, &v)| vec![format!("type {k}"), v.to_string(), per_op(v)])
        .collect();
    rows.extend(
        m.by_node
            .iter()
            .map(|(n, &v)| vec![format!("node {n}"), v.to_string(), per_op(v)]),
    );
    rows.push(vec!["all".into(), m.sent.to_string(), per_op(m.sent)]);
    Section {
        heading,
        text,
        header: vec!["sent by".into(), "messages".into(), "per op".into()],
        rows,
    }
}
