//! Closes the blocking clients' idle connections. ureq drops a pooled
//! connection idle past its age only when the agent next looks, so a
//! client with nothing to do would hold its connection (its socket, its
//! buffers, the server long gone) for as long as it lives. One thread per
//! process, running only while some client has a pooled connection, swaps
//! the agent of a client idle for its `pool_idle` for a fresh one: the old
//! agent's pool goes with it, and the client hears it went idle.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How often the thread looks, at most.
const LOOK: Duration = Duration::from_millis(250);

/// One client's agent, and what the reaper needs to know about it.
pub(crate) struct Slot {
    agent: Mutex<ureq::Agent>,
    make: Box<dyn Fn() -> ureq::Agent + Send + Sync>,
    keep: Duration,
    /// Exchanges whose response is not done with: their connections are
    /// not in the pool yet.
    busy: AtomicUsize,
    /// When the agent was last done with an exchange, if it may have a
    /// pooled connection since it was made.
    used: Mutex<Option<Instant>>,
    /// Whether the slot is in the watched list (changed under its lock).
    watched: AtomicBool,
    on_idle: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

impl Slot {
    /// A slot whose agents `make` builds, reaped once idle for `keep`.
    pub fn new(
        keep: Duration,
        make: impl Fn() -> ureq::Agent + Send + Sync + 'static,
    ) -> Arc<Slot> {
        Arc::new(Slot {
            agent: Mutex::new(make()),
            make: Box::new(make),
            keep,
            busy: AtomicUsize::new(0),
            used: Mutex::new(None),
            watched: AtomicBool::new(false),
            on_idle: Mutex::new(None),
        })
    }

    /// The agent, for an exchange not counted busy (a listening stream:
    /// its connection is never pooled while it lives, and an agent swapped
    /// under it only means it is not pooled after).
    pub fn agent(&self) -> ureq::Agent {
        self.agent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether it may hold a pooled connection.
    fn pending(&self) -> bool {
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// The agent for an exchange, counted busy until [`Slot::done`].
    pub fn begin(&self) -> ureq::Agent {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.agent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// An exchange ended: its connection may be pooled now.
    pub fn done(self: &Arc<Self>) {
        *self.used.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.busy.fetch_sub(1, Ordering::SeqCst);
        // Already watched: no process-wide lock on every call's end (the
        // thread's pass re-checks before it lets a slot go; see `run`).
        if !self.watched.load(Ordering::SeqCst) {
            watch(self);
        }
    }

    /// Calls `hook` whenever the agent was reaped.
    pub fn on_idle(&self, hook: Arc<dyn Fn() + Send + Sync>) {
        *self.on_idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// Reaps the agent if it has been idle long enough.
    fn reap(&self, now: Instant) {
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = *used else {
            return;
        };
        if self.busy.load(Ordering::SeqCst) > 0 || now.duration_since(at) < self.keep {
            return;
        }
        *used = None;
        drop(used);
        let fresh = (self.make)();
        let old = std::mem::replace(
            &mut *self.agent.lock().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        drop(old);
        let hook = self
            .on_idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook();
        }
    }
}

/// The slots being watched, and whether the thread runs.
fn watched() -> &'static Mutex<Vec<Weak<Slot>>> {
    static WATCHED: OnceLock<Mutex<Vec<Weak<Slot>>>> = OnceLock::new();
    WATCHED.get_or_init(Default::default)
}

static RUNNING: AtomicBool = AtomicBool::new(false);

/// Watches `slot` until it is reaped, starting the thread if it is not
/// running.
fn watch(slot: &Arc<Slot>) {
    {
        // Under the list's lock, so the thread's pass (which drops a slot
        // with nothing pooled, under the same lock) and this never miss
        // each other.
        let mut list = watched().lock().unwrap_or_else(PoisonError::into_inner);
        if !slot.watched.swap(true, Ordering::SeqCst) {
            list.push(Arc::downgrade(slot));
        }
    }
    if !RUNNING.swap(true, Ordering::SeqCst) {
        let started = std::thread::Builder::new()
            .name("mcp-recovery-reaper".into())
            .spawn(run);
        if started.is_err() {
            // No thread: connections are then dropped by ureq's own age
            // check at the next request, as before.
            RUNNING.store(false, Ordering::SeqCst);
        }
    }
}

fn run() {
    loop {
        std::thread::sleep(LOOK);
        let slots: Vec<Weak<Slot>> = watched()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = Instant::now();
        for slot in slots.iter().filter_map(Weak::upgrade) {
            slot.reap(now);
        }
        // Kept: every slot that may hold a pooled connection now, read
        // under the list's lock (see `watch`): one pass, no search.
        let mut list = watched().lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| match w.upgrade() {
            Some(slot) if slot.pending() => true,
            Some(slot) => {
                // Unwatched, then looked at once more: an exchange that
                // ended in between saw it still watched and did not add it
                // again, but its `used` is set by now.
                slot.watched.store(false, Ordering::SeqCst);
                let again = slot.pending();
                slot.watched.store(again, Ordering::SeqCst);
                again
            }
            None => false,
        });
        if list.is_empty() {
            // Stop; a slot pushed meanwhile restarts it (checked under the
            // lock, so none is missed).
            RUNNING.store(false, Ordering::SeqCst);
            return;
        }
    }
}
