//! A pure byte budget (token bucket) on a clock passed in, so it is tested without sleeping.
//! Rooms use one to bound the chat bytes they fan out per second.

use std::time::Instant;

/// Refilled at `rate` bytes per second up to `burst`. A charge larger than the burst is capped at
/// the burst, so one maximum-size line is still allowed once the bucket is full again.
#[derive(Debug)]
pub struct ByteBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl ByteBudget {
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            refilled: now,
        }
    }

    /// Takes `bytes` if the budget allows them now; false (and nothing taken) otherwise.
    pub fn take(&mut self, bytes: u64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        let cost = (bytes as f64).min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_rate() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(1000, 3000, t0);
        assert!(b.take(2000, t0));
        assert!(b.take(1000, t0));
        assert!(!b.take(1, t0), "burst used up");
        let t1 = t0 + Duration::from_millis(500);
        assert!(!b.take(600, t1), "only 500 bytes refilled");
        assert!(b.take(500, t1));
        let t2 = t1 + Duration::from_secs(60);
        assert!(b.take(3000, t2), "refill stops at the burst");
        assert!(!b.take(1, t2));
    }

    #[test]
    fn a_charge_over_the_burst_passes_only_on_a_full_bucket() {
        let t0 = Instant::now();
        let mut b = ByteBudget::new(100, 1000, t0);
        assert!(b.take(1_000_000, t0));
        assert!(!b.take(1_000_000, t0 + Duration::from_secs(5)));
        assert!(b.take(1_000_000, t0 + Duration::from_secs(10)));
    }
}
