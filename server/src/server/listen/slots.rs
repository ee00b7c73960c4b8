//! The connection slots: the clients' share, the reserve closed to
//! connections that have not shown the cluster token, the trials admitted
//! into it and the eviction of the oldest trial (the parent module's doc
//! has the policy).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::lock;

/// What a connection is to the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Has not shown the token; counts against the clients' share.
    Client,
    /// Accepted into the reserve; must show the token at once.
    Trial,
    /// Has shown the token; never evicted.
    Trusted,
    /// A trial told to make room; its slot counts until it is gone.
    Evicted,
}

/// The connection slots and who holds them.
pub(super) struct Slots {
    max: usize,
    reserved: usize,
    state: Mutex<SlotState>,
    /// Pinged whenever a slot is released.
    pub(super) freed: Notify,
}

#[derive(Default)]
struct SlotState {
    clients: usize,
    trusted: usize,
    /// Oldest first: the one evicted when the reserve is full.
    trials: VecDeque<Arc<Slot>>,
    /// Evicted trials not yet closed; over the limit for a moment.
    leaving: usize,
    next_id: u64,
}

impl SlotState {
    /// Slots held, not counting evicted trials on their way out.
    fn total(&self) -> usize {
        self.clients + self.trusted + self.trials.len()
    }
}

/// One connection's hold on a slot; released on drop.
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
    class: Mutex<Class>,
    /// Pinged to close the connection (a trial evicted by a newer one).
    pub(super) evict: Notify,
}

impl Slots {
    pub(super) fn new(max: usize, reserved: usize) -> Slots {
        Slots {
            max,
            reserved,
            state: Mutex::new(SlotState::default()),
            freed: Notify::new(),
        }
    }

    pub(super) fn has_room(&self) -> bool {
        let st = lock(&self.state);
        st.total() < self.max || !st.trials.is_empty()
    }

    /// A slot for a connection just accepted: the clients' share, else a
    /// trial in the reserve (evicting the oldest trial if it is full).
    pub(super) fn admit(self: &Arc<Self>) -> Option<Arc<Slot>> {
        let mut st = lock(&self.state);
        let class = if st.clients < self.max - self.reserved && st.total() < self.max {
            Class::Client
        } else if st.total() < self.max {
            Class::Trial
        } else {
            let oldest = st.trials.pop_front()?;
            // Its slot passes to the newcomer now.
            *lock(&oldest.class) = Class::Evicted;
            st.leaving += 1;
            oldest.evict.notify_one();
            Class::Trial
        };
        st.next_id += 1;
        let slot = Arc::new(Slot {
            id: st.next_id,
            slots: self.clone(),
            class: Mutex::new(class),
            evict: Notify::new(),
        });
        match class {
            Class::Client => st.clients += 1,
            _ => st.trials.push_back(slot.clone()),
        }
        Some(slot)
    }
}

impl Slot {
    pub(super) fn class(&self) -> Class {
        *lock(&self.class)
    }

    /// The connection showed the cluster token: it leaves the clients'
    /// share (or its trial) and is never evicted.
    pub fn trust(&self) {
        let mut st = lock(&self.slots.state);
        let mut class = lock(&self.class);
        match *class {
            Class::Trusted | Class::Evicted => return,
            Class::Client => st.clients -= 1,
            Class::Trial => st.trials.retain(|s| s.id != self.id),
        }
        st.trusted += 1;
        *class = Class::Trusted;
    }

    pub(super) fn release(&self) {
        let mut st = lock(&self.slots.state);
        match *lock(&self.class) {
            Class::Client => st.clients -= 1,
            Class::Trial => st.trials.retain(|s| s.id != self.id),
            Class::Trusted => st.trusted -= 1,
            Class::Evicted => st.leaving -= 1,
        }
        drop(st);
        self.slots.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_takes_trials_and_evicts_the_oldest() {
        let slots = Arc::new(Slots::new(4, 2));
        let c1 = slots.admit().unwrap();
        let c2 = slots.admit().unwrap();
        assert_eq!((c1.class(), c2.class()), (Class::Client, Class::Client));
        let t1 = slots.admit().unwrap();
        let t2 = slots.admit().unwrap();
        assert_eq!((t1.class(), t2.class()), (Class::Trial, Class::Trial));
        assert!(slots.has_room(), "a trial can always be evicted");
        let t3 = slots.admit().unwrap();
        assert_eq!(t3.class(), Class::Trial);
        // t1 was told to go; t3 holds its slot already.
        assert_eq!(t1.class(), Class::Evicted);
        t1.release();
        t2.trust();
        t3.trust();
        assert!(!slots.has_room(), "4 connections, none evictable");
        assert!(slots.admit().is_none());
        // A trusted client frees the clients' share.
        c1.trust();
        c2.release();
        let c3 = slots.admit().unwrap();
        assert_eq!(c3.class(), Class::Client);
    }
}
