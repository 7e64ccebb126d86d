//! The fence every side effect passes just before it acts: this instance
//! still holds the lease, under the token the action was started with.
//!
//! The election publishes, at each grant or renewal, the instant its belief
//! in the lease ends (the renewal's send time + TTL − a margin, on the
//! monotonic clock) and the token of the lease; at a step-down it clears
//! it. A check reads two atomics and the clock, so a Redis write, an
//! `exec`, an HTTP call or a delivery costs no round trip to the lease
//! store. The clock keeps running while the process is stopped (SIGSTOP, a
//! long GC-like pause of the host), so a leader that wakes up past its
//! lease is fenced at its very next side effect, before its election task
//! has even had the chance to notice.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// Why an action was refused. The text is what a playbook's run record and
/// the logs say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fenced: this instance no longer holds the HA lease (token {token}); the new leader runs it")]
pub struct Fenced {
    /// The token the action was started under (0: it never had one).
    pub token: u64,
}

#[derive(Default)]
struct State {
    token: AtomicU64,
    /// Milliseconds after [`base`] at which the lease stops being ours, plus
    /// one; zero while we do not lead.
    until: AtomicU64,
}

/// A cheap, cloneable view of this instance's hold on the lease.
#[derive(Clone, Default)]
pub struct Fence(Arc<State>);

/// The origin of the fence's clock: any instant before the first grant.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    at.saturating_duration_since(base()).as_millis() as u64 + 1
}

impl Fence {
    /// The lease is ours under `token` until `until`. The token is stored
    /// before the deadline, so a check never sees a new deadline with an
    /// old token.
    pub(super) fn grant(&self, token: u64, until: Instant) {
        base();
        self.0.token.store(token, Ordering::SeqCst);
        self.0.until.store(millis(until), Ordering::SeqCst);
    }

    /// We no longer lead.
    pub(super) fn clear(&self) {
        self.0.until.store(0, Ordering::SeqCst);
    }

    /// The token of the lease we hold now, if we hold it.
    pub fn current(&self) -> Option<u64> {
        let until = self.0.until.load(Ordering::SeqCst);
        let token = self.0.token.load(Ordering::SeqCst);
        (until != 0 && millis(Instant::now()) < until).then_some(token)
    }

    /// Whether this instance holds the lease now, under any token.
    pub fn holds(&self) -> bool {
        self.current().is_some()
    }

    /// Passes when the lease is still ours under `token`: an action started
    /// under an older lease stays fenced even after this instance leads
    /// again, since another leader may have redone it meanwhile.
    pub fn check(&self, token: u64) -> Result<(), Fenced> {
        match self.current() {
            Some(t) if t == token && token != 0 => Ok(()),
            _ => Err(Fenced { token }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fence_passes_only_its_token_and_only_until_the_deadline() {
        let fence = Fence::default();
        assert_eq!(fence.check(1), Err(Fenced { token: 1 }), "never granted");
        fence.grant(1, Instant::now() + Duration::from_secs(60));
        assert_eq!(fence.check(1), Ok(()));
        assert!(fence.check(2).is_err(), "another token");
        fence.grant(2, Instant::now() + Duration::from_secs(60));
        assert!(fence.check(1).is_err(), "a run of an older lease stays fenced");
        fence.clear();
        assert!(fence.check(2).is_err() && !fence.holds());
        fence.grant(3, Instant::now() + Duration::from_millis(30));
        assert!(fence.holds());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(fence.check(3), Err(Fenced { token: 3 }), "past the deadline");
        assert_eq!(
            Fenced { token: 3 }.to_string(),
            "fenced: this instance no longer holds the HA lease (token 3); the new leader runs it"
        );
    }
}
