//! The clock the server's limits read: the real monotonic clock by default, or a manual one
//! that only moves when a test advances it, so a token bucket refills or a strike is forgotten
//! exactly when the test says, without sleeping.

use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A source of `Instant`s. Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

#[derive(Debug)]
struct Manual {
    start: Instant,
    /// How far tests have advanced it: one owner of the time, behind one short lock.
    elapsed: Mutex<Duration>,
}

impl Clock {
    /// The monotonic system clock.
    pub fn real() -> Self {
        Self(None)
    }

    /// A clock standing still at the moment it is made, until [`Clock::advance`].
    pub fn manual() -> Self {
        Self(Some(Arc::new(Manual {
            start: Instant::now(),
            elapsed: Mutex::new(Duration::ZERO),
        })))
    }

    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(m) => m.start + *lock(&m.elapsed),
        }
    }

    /// Moves a manual clock forward by `by`. A real clock cannot be moved: a no-op, logged.
    pub fn advance(&self, by: Duration) {
        match &self.0 {
            None => tracing::warn!("advance called on the real clock; ignored"),
            Some(m) => *lock(&m.elapsed) += by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = Clock::manual();
        let t0 = clock.now();
        std::thread::yield_now();
        assert_eq!(clock.now(), t0);
        let other = clock.clone();
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now(), t0 + Duration::from_millis(1500));
    }

    #[test]
    fn real_clock_is_monotonic() {
        let clock = Clock::real();
        let a = clock.now();
        assert!(clock.now() >= a);
    }
}
