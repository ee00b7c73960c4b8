//! The fold: every fault in force summed into one [`Desired`] state, which
//! the nemesis compares with what it last applied and re-applies
//! idempotently. Healing is the fold of no faults.

use std::collections::{BTreeMap, BTreeSet};

use super::{Effect, Fault, Skew};
use crate::backend::{Link, LinkFault, NodeName};

/// The state every fault in force adds up to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    /// Links with a fault; every other link is healthy.
    pub links: BTreeMap<Link, LinkFault>,
    pub paused: BTreeSet<NodeName>,
    /// Down nodes, and whether by power loss.
    pub down: BTreeMap<NodeName, bool>,
    pub clocks: BTreeMap<NodeName, Skew>,
}

impl Desired {
    /// Folds the faults in force into one state. Later faults win where two
    /// set the same thing (two clock skews on a node).
    pub fn of(faults: &[Fault]) -> Desired {
        let mut d = Desired::default();
        for f in faults {
            match &f.effect {
                Effect::Blocked(links) => {
                    for l in links {
                        d.links.entry(*l).or_default().blackhole = true;
                    }
                }
                Effect::Slow(links, delay) => {
                    for l in links {
                        d.links.entry(*l).or_default().delay = Some(*delay);
                    }
                }
                Effect::Reset(links) => {
                    for l in links {
                        d.links.entry(*l).or_default().reset = true;
                    }
                }
                Effect::Paused(nodes) => d.paused.extend(nodes),
                Effect::Down { nodes, power_loss } => {
                    for n in nodes {
                        d.down.insert(*n, *power_loss);
                    }
                }
                Effect::Clock(skews) => d.clocks.extend(skews),
            }
        }
        d
    }

    /// The fault on `link` (healthy if none).
    pub fn link(&self, link: Link) -> LinkFault {
        self.links.get(&link).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultKind;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn nodes(n: u32) -> Vec<NodeName> {
        (1..=n).map(NodeName).collect()
    }

    #[test]
    fn isolating_a_node_cuts_exactly_its_links() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let f = Fault::generate(FaultKind::Partition, &nodes(3), Some(NodeName(3)), &mut rng);
            if f.value["shape"] == "isolate-leader" {
                let d = Desired::of(&[f]);
                assert_eq!(d.links.len(), 4);
                for (l, lf) in &d.links {
                    assert!(l.from == NodeName(3) || l.to == NodeName(3));
                    assert!(lf.blackhole);
                }
                return;
            }
        }
        panic!("no isolate-leader drawn in 50 tries");
    }

    #[test]
    fn healing_is_the_empty_state() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let faults: Vec<Fault> = FaultKind::ALL
            .iter()
            .map(|&k| Fault::generate(k, &nodes(3), None, &mut rng))
            .collect();
        assert_ne!(Desired::of(&faults), Desired::default());
        assert_eq!(Desired::of(&[]), Desired::default());
    }
}
