//! Closes the blocking clients' idle connections. ureq drops a pooled
//! connection idle past its age only when the agent next looks, so a
//! client with nothing to do would hold its connection (its socket, its
//! buffers, the server long gone) for as long as it lives. One thread per
//! process, running only while some agent may have a pooled connection or
//! some client is yet to be told it went idle, swaps an agent with no
//! exchange ended for its `pool_idle` for a fresh one (the old agent's
//! pool goes with it), and tells each client once it has been idle that
//! long.
//!
//! Clients with the same settings and principal share one agent, and so
//! its pool ([`Slot`]): an HTTP/1 connection carries no session, and a process
//! holding a thousand sessions to a few servers keeps a few connections
//! per server, not one per session.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

/// How often the thread looks, at most.
const LOOK: Duration = Duration::from_millis(250);

type Hook = Arc<dyn Fn() + Send + Sync>;

/// When something (an agent, a client) was last done with an exchange,
/// until the reaper acted on it, and whether the reaper's list holds it.
#[derive(Default)]
struct Used {
    at: Mutex<Option<Instant>>,
    /// Changed under the list's lock.
    watched: AtomicBool,
}

impl Used {
    /// An exchange of `it` ended at `now`: watched until acted on (no
    /// process-wide lock when it already is; the thread's pass re-checks
    /// before it lets one go, see `run`).
    fn set(it: Arc<dyn Watched>, now: Instant) {
        let used = it.used();
        *used.at.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        if !used.watched.load(Ordering::SeqCst) {
            watch(it);
        }
    }

    fn is_set(&self) -> bool {
        self.at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Clears it, if it is set and `keep` old by `now`: then the reaper
    /// acts, once.
    fn take_due(&self, now: Instant, keep: Duration) -> bool {
        let mut used = self.at.lock().unwrap_or_else(PoisonError::into_inner);
        let due = used.is_some_and(|at| now.saturating_duration_since(at) >= keep);
        if due {
            *used = None;
        }
        due
    }
}

/// An agent, shared by the clients with the same settings and principal,
/// and what the reaper needs to know about it.
pub(crate) struct Slot {
    agent: Mutex<ureq::Agent>,
    make: Box<dyn Fn() -> ureq::Agent + Send + Sync>,
    keep: Duration,
    /// When the agent was last done with an exchange, if it may have a
    /// pooled connection since it was made.
    used: Used,
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
            used: Used::default(),
        })
    }

    fn agent(&self) -> ureq::Agent {
        self.agent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the reaper thread watches: a slot, to reap its agent; a user, to
/// tell it it went idle.
trait Watched: Send + Sync {
    /// Acts if it has been idle long enough.
    fn look(&self, now: Instant);
    /// When it was last done with, and whether it is watched.
    fn used(&self) -> &Used;
}

impl Watched for Slot {
    fn used(&self) -> &Used {
        &self.used
    }

    /// Reaps the agent if no exchange ended for the keep, even with
    /// exchanges out (a long call of one client must not keep every
    /// other's idle connections open). Each holds the agent it started
    /// with: its connection goes back to that agent's pool when it ends,
    /// and the pool goes (closing what it holds) with the last exchange
    /// on it, so a connection may sit there until a slower exchange of
    /// the same agent ends (at most its read timeout).
    fn look(&self, now: Instant) {
        if !self.used.take_due(now, self.keep) {
            return;
        }
        let fresh = (self.make)();
        let old = std::mem::replace(
            &mut *self.agent.lock().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        drop(old);
    }
}

/// One client's use of a (maybe shared) [`Slot`].
pub(crate) struct User {
    slot: Arc<Slot>,
    /// This client's exchanges not done with.
    busy: AtomicUsize,
    /// When this client was last done with an exchange, until the reaper
    /// told it it has been idle.
    used: Used,
    on_idle: Mutex<Option<Hook>>,
}

impl User {
    /// A client of `slot`.
    pub fn new(slot: Arc<Slot>) -> Arc<User> {
        Arc::new(User {
            slot,
            busy: AtomicUsize::new(0),
            used: Used::default(),
            on_idle: Mutex::new(None),
        })
    }

    /// The agent, for an exchange not counted busy (a listening stream:
    /// its connection is never pooled while it lives, and an agent swapped
    /// under it only means it is not pooled after).
    pub fn agent(&self) -> ureq::Agent {
        self.slot.agent()
    }

    /// The agent for an exchange, counted busy until [`User::done`]. Not
    /// under the lock the reaper reads it with: a client told it went
    /// idle just as a call of its starts only gives back capacity its
    /// engine then allocates again.
    pub fn begin(&self) -> ureq::Agent {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.slot.agent()
    }

    /// An exchange ended: its connection may be pooled now.
    pub fn done(self: &Arc<Self>) {
        let now = Instant::now();
        Used::set(self.slot.clone(), now);
        Used::set(self.clone(), now);
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// Calls `hook` whenever this client has been idle for the keep.
    pub fn on_idle(&self, hook: Hook) {
        *self.on_idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }
}

impl Watched for User {
    fn used(&self) -> &Used {
        &self.used
    }

    /// Tells the client if it has been idle long enough.
    fn look(&self, now: Instant) {
        // Busy: told once its exchanges are done and the keep has passed.
        if self.busy.load(Ordering::SeqCst) > 0 || !self.used.take_due(now, self.slot.keep) {
            return;
        }
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

/// What is being watched, and whether the thread runs.
fn watched() -> &'static Mutex<Vec<Weak<dyn Watched>>> {
    static WATCHED: OnceLock<Mutex<Vec<Weak<dyn Watched>>>> = OnceLock::new();
    WATCHED.get_or_init(Default::default)
}

static RUNNING: AtomicBool = AtomicBool::new(false);

/// Watches `it` until nothing is pending, starting the thread if it is
/// not running.
fn watch(it: Arc<dyn Watched>) {
    {
        // Under the list's lock, so the thread's pass (which drops one
        // with nothing pending, under the same lock) and this never miss
        // each other.
        let mut list = watched().lock().unwrap_or_else(PoisonError::into_inner);
        if !it.used().watched.swap(true, Ordering::SeqCst) {
            list.push(Arc::downgrade(&it));
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
        let all: Vec<Weak<dyn Watched>> = watched()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = Instant::now();
        for it in all.iter().filter_map(Weak::upgrade) {
            it.look(now);
        }
        // Kept: all that is still pending, read under the list's lock
        // (see `watch`): one pass, no search.
        let mut list = watched().lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| match w.upgrade() {
            Some(it) if it.used().is_set() => true,
            Some(it) => {
                // Unwatched, then looked at once more: an exchange that
                // ended in between saw it still watched and did not add it
                // again, but its `used` is set by now.
                let used = it.used();
                used.watched.store(false, Ordering::SeqCst);
                let again = used.is_set();
                used.watched.store(again, Ordering::SeqCst);
                again
            }
            None => false,
        });
        if list.is_empty() {
            // Stop; one pushed meanwhile restarts it (checked under the
            // lock, so none is missed).
            RUNNING.store(false, Ordering::SeqCst);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(user: &User) -> Arc<AtomicUsize> {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        user.on_idle(Arc::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        }));
        n
    }

    /// Two clients of one agent: each is told once it has been idle for
    /// the keep, not while it has an exchange out; the agent is reaped
    /// once no exchange ended for the keep, even with one out. Time is passed in (the keep is an hour, so
    /// the reaper thread itself never acts during the test).
    #[test]
    fn clients_sharing_an_agent_are_told_each_on_its_own() {
        let keep = Duration::from_secs(3600);
        let slot = Slot::new(keep, ureq::Agent::new_with_defaults);
        let (a, b) = (User::new(slot.clone()), User::new(slot.clone()));
        let (told_a, told_b) = (told(&a), told(&b));
        a.begin();
        a.done();
        b.begin();
        let later = Instant::now() + keep;
        for it in [&*slot as &dyn Watched, &*a, &*b] {
            it.look(later);
        }
        assert_eq!(told_a.load(Ordering::SeqCst), 1, "idle for the keep");
        assert_eq!(told_b.load(Ordering::SeqCst), 0, "an exchange out");
        assert!(
            !slot.used.is_set(),
            "reaped: no exchange ended for the keep"
        );
        assert!(!a.used.is_set() && !b.used.is_set());
        b.done();
        let later = Instant::now() + keep;
        for it in [&*slot as &dyn Watched, &*a, &*b] {
            it.look(later);
        }
        assert_eq!(told_a.load(Ordering::SeqCst), 1, "told once per idle spell");
        assert_eq!(told_b.load(Ordering::SeqCst), 1);
        assert!(!slot.used.is_set(), "reaped again");
    }
}
