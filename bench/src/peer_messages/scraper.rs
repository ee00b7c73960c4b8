//! The [`Scraper`]: every node's counters sampled right before the
//! workload, every [`INTERVAL`] while it runs and once more (with retries)
//! after the clients stop, each node's samples kept in a [`Tally`].

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::metrics_text::parse_sent;
use super::{summarise, PeerMessages, Sample, Tally, INTERVAL};

/// A scrape gives up after this long: a paused node must not hold up the
/// sample of the others.
const SCRAPE_TIMEOUT: Duration = Duration::from_millis(800);

/// Attempts at the last sample for a node that does not answer (it may be
/// finishing a restart the heal started).
const FINAL_ATTEMPTS: u32 = 4;

/// One scrape of one node.
async fn scrape(http: &reqwest::Client, url: &str, token: &str) -> Result<Sample, String> {
    let r = http
        .get(format!("{url}/admin/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    let text = r.text().await.map_err(|e| e.to_string())?;
    parse_sent(&text).map_err(|e| e.to_string())
}

/// Scrapes the nodes at `which` at once; returns who answered what.
async fn round(
    http: &reqwest::Client,
    nodes: &[(String, String)],
    token: &str,
    which: &[usize],
) -> Vec<(usize, Result<Sample, String>)> {
    let mut set = JoinSet::new();
    for &i in which {
        let (http, url, token) = (http.clone(), nodes[i].1.clone(), token.to_string());
        set.spawn(async move { (i, scrape(&http, &url, &token).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(pair) = r {
            out.push(pair);
        }
    }
    out
}

/// What the sampling task hands back: the tallies, the rounds, the gaps.
type Tallied = (Vec<(String, Tally)>, u32, Vec<String>);

/// Samples every node's counters from before the workload to after it.
/// Dropped without [`Scraper::finish`] (the run failed), it stops sampling.
pub struct Scraper {
    stop: watch::Sender<bool>,
    /// `None` once `finish` took it.
    task: Option<tokio::task::JoinHandle<Tallied>>,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Scraper {
    /// Takes the baseline sample of `nodes` (`(name, base URL)`), then
    /// keeps sampling every [`INTERVAL`] in the background.
    pub async fn start(nodes: Vec<(String, String)>, token: String) -> anyhow::Result<Scraper> {
        let http = reqwest::Client::builder()
            .timeout(SCRAPE_TIMEOUT)
            .connect_timeout(SCRAPE_TIMEOUT)
            .build()?;
        let mut tallies: Vec<(String, Tally)> = nodes
            .iter()
            .map(|(n, _)| (n.clone(), Tally::default()))
            .collect();
        let all: Vec<usize> = (0..nodes.len()).collect();
        let mut gaps = Vec::new();
        let mut first_error: BTreeMap<usize, String> = BTreeMap::new();
        for (i, r) in round(&http, &nodes, &token, &all).await {
            match r {
                Ok(s) => tallies[i].1.observe(s),
                Err(e) => {
                    first_error.insert(i, e);
                }
            }
        }
        for (i, e) in &first_error {
            tracing::warn!(node = %nodes[*i].0, error = %e, "cannot read peer-message counters at the start");
            gaps.push(format!(
                "{} did not answer at the start ({e}): counted from its first answer",
                nodes[*i].0
            ));
        }
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut samples = 1;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(INTERVAL) => {}
                    _ = stop_rx.changed() => break,
                }
                for (i, r) in round(&http, &nodes, &token, &all).await {
                    if let Ok(s) = r {
                        tallies[i].1.observe(s);
                    }
                }
                samples += 1;
            }
            // The last sample: every node should be back (the heal
            // restarted and resumed them), but a restart may still be
            // finishing, so ask the silent ones again.
            let mut pending = all.clone();
            let mut errors = BTreeMap::new();
            for attempt in 0..FINAL_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(INTERVAL).await;
                }
                for (i, r) in round(&http, &nodes, &token, &pending).await {
                    match r {
                        Ok(s) => {
                            tallies[i].1.observe(s);
                            pending.retain(|&p| p != i);
                        }
                        Err(e) => {
                            errors.insert(i, e);
                        }
                    }
                }
                if pending.is_empty() {
                    break;
                }
            }
            samples += 1;
            for i in pending {
                let why = errors.remove(&i).unwrap_or_default();
                tracing::warn!(node = %nodes[i].0, error = %why, "cannot read peer-message counters at the end");
                gaps.push(if tallies[i].1.started() {
                    format!(
                        "{} did not answer at the end ({why}): counted up to its last answer",
                        nodes[i].0
                    )
                } else {
                    format!("{} never answered ({why}): not counted", nodes[i].0)
                });
            }
            (tallies, samples, gaps)
        });
        Ok(Scraper {
            stop,
            task: Some(task),
        })
    }

    /// Takes the last sample and sums up, with `completed_ops` client
    /// operations completed in the run. `Ok(None)`: no node ever answered
    /// with its counters (a node without `/admin/metrics`).
    pub async fn finish(mut self, completed_ops: u64) -> anyhow::Result<Option<PeerMessages>> {
        self.stop.send_replace(true);
        let task = self
            .task
            .take()
            .ok_or_else(|| anyhow::anyhow!("the metrics scraper was already finished"))?;
        let (tallies, samples, gaps) = task
            .await
            .map_err(|e| anyhow::anyhow!("the metrics scraper failed: {e}"))?;
        Ok(summarise(&tallies, completed_ops, samples, gaps))
    }
}
