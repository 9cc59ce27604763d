//! The keyframe-request throttle: at most one PLI per published track per interval.
//!
//! Pure and clock-free (time is passed in) so it is tested without sockets. A request that
//! arrives inside the interval is not lost: the caller waits [`KeyframeThrottle::delay`] and
//! sends then, so a late joiner still gets its keyframe, just not a second one for free.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
}

impl KeyframeThrottle {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
        }
    }

    /// How long to wait from `now` before a request may be sent (zero: send now).
    pub fn delay(&self, now: Instant) -> Duration {
        match self.last_sent {
            None => Duration::ZERO,
            Some(last) => (last + self.min_interval).saturating_duration_since(now),
        }
    }

    /// Records that a request went out at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_goes_out_at_once() {
        let t = KeyframeThrottle::new(Duration::from_millis(500));
        assert_eq!(t.delay(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn second_request_inside_interval_waits_for_the_rest_of_it() {
        let mut t = KeyframeThrottle::new(Duration::from_millis(500));
        let t0 = Instant::now();
        t.sent(t0);
        assert_eq!(
            t.delay(t0 + Duration::from_millis(200)),
            Duration::from_millis(300)
        );
        assert_eq!(t.delay(t0), Duration::from_millis(500));
    }

    #[test]
    fn request_after_interval_goes_out_at_once() {
        let mut t = KeyframeThrottle::new(Duration::from_millis(500));
        let t0 = Instant::now();
        t.sent(t0);
        assert_eq!(t.delay(t0 + Duration::from_millis(500)), Duration::ZERO);
        assert_eq!(t.delay(t0 + Duration::from_secs(3)), Duration::ZERO);
    }
}
