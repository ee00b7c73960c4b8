//! The network: every message a node releases is lost, duplicated or
//! delayed (hence reordered) here, and cut links drop it.

use rand::Rng;

use super::{Event, Sim};
use crate::message::Message;

impl Sim {
    pub(super) fn transmit(&mut self, from: usize, to: usize, msg: Message) {
        self.stats.messages += 1;
        if self.blocked.contains(&(from, to)) {
            return;
        }
        if self.faulty && self.rng.gen_range(0..100) < self.cfg.loss {
            return;
        }
        if self.faulty && self.rng.gen_range(0..100) < self.cfg.dup {
            let d = self.delay();
            self.schedule(
                d,
                Event::Deliver {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
        let d = self.delay();
        self.schedule(d, Event::Deliver { from, to, msg });
    }

    /// A message's delay: mostly a fast network (1-3 ms, faster than a
    /// slow disk, so replies race fsyncs as on loopback), sometimes up to
    /// `delay_ms`.
    pub(super) fn delay(&mut self) -> u64 {
        let top = if self.rng.gen_bool(0.7) {
            self.cfg.delay_ms.min(3)
        } else {
            self.cfg.delay_ms
        };
        self.rng.gen_range(1..=top.max(1))
    }
}
