//! Pure limit logic, free of sockets so it can be tested directly: the per-socket event gate
//! (token bucket, once-a-second `rate_limited` answers, refusal strikes) and the room and
//! display name rules.

use std::time::{Duration, Instant};

use crate::config::SignalingConfig;

/// A socket's strikes are forgotten after this long without a refusal, so a long-lived client
/// that makes the odd mistake is never disconnected for it; only a sustained abuser is.
const STRIKE_MEMORY: Duration = Duration::from_secs(60);
/// At most one `rate_limited` answer per socket per this interval; the rest are dropped.
const RATE_ANSWER_INTERVAL: Duration = Duration::from_secs(1);

/// What the gate says about one incoming event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Over the rate: answer with `rate_limited`.
    Answer,
    /// Over the rate and already answered within the last second: drop silently.
    Drop,
}

/// Per-socket event gate: a token bucket refilled at `events_per_second` up to `event_burst`,
/// and a count of refused events that decides when a socket is cut off.
#[derive(Debug)]
pub struct Gate {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    last_answer: Option<Instant>,
    strikes: u32,
    last_strike: Instant,
    max_strikes: u32,
}

impl Gate {
    pub fn new(config: &SignalingConfig, now: Instant) -> Self {
        Self {
            rate: f64::from(config.events_per_second),
            burst: f64::from(config.event_burst),
            tokens: f64::from(config.event_burst),
            refilled: now,
            last_answer: None,
            strikes: 0,
            last_strike: now,
            max_strikes: config.max_refused_events.max(1),
        }
    }

    /// Takes one token for an incoming event.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Accept;
        }
        match self.last_answer {
            Some(at) if now.saturating_duration_since(at) < RATE_ANSWER_INTERVAL => Admission::Drop,
            _ => {
                self.last_answer = Some(now);
                Admission::Answer
            }
        }
    }

    /// Counts one refused (answered or dropped) event. True when the socket has now been refused
    /// `max_refused_events` times without a quiet minute, and must be disconnected.
    pub fn strike(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last_strike) > STRIKE_MEMORY {
            self.strikes = 0;
        }
        self.last_strike = now;
        self.strikes = self.strikes.saturating_add(1);
        self.strikes >= self.max_strikes
    }
}

/// Room names: 1..=max characters, each a letter or digit (any script) or one of `-`, `_`, `.`.
pub fn check_room_name(name: &str, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err("room name is empty".into());
    }
    if len > max {
        return Err(format!(
            "room name has {len} characters, at most {max} allowed"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "room name may contain letters, digits, '-', '_' and '.', not {c:?}"
        ));
    }
    Ok(())
}

/// Display names: 1..=max characters, not only whitespace, no control characters.
pub fn check_display_name(name: &str, max: usize) -> Result<(), String> {
    let len = name.chars().count();
    if name.trim().is_empty() {
        return Err("display name is empty".into());
    }
    if len > max {
        return Err(format!(
            "display name has {len} characters, at most {max} allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("display name may not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(rate: u32, burst: u32, max_refused: u32) -> SignalingConfig {
        let mut c = Config::embedded().signaling;
        c.events_per_second = rate;
        c.event_burst = burst;
        c.max_refused_events = max_refused;
        c
    }

    #[test]
    fn burst_then_one_answer_per_second_then_refill() {
        let t0 = Instant::now();
        let mut gate = Gate::new(&config(10, 3, 100), t0);
        for _ in 0..3 {
            assert_eq!(gate.admit(t0), Admission::Accept);
        }
        assert_eq!(gate.admit(t0), Admission::Answer);
        assert_eq!(gate.admit(t0), Admission::Drop);
        let later = t0 + Duration::from_millis(150);
        assert_eq!(gate.admit(later), Admission::Accept);
        assert_eq!(gate.admit(later), Admission::Drop);
        let much_later = t0 + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(gate.admit(much_later), Admission::Accept);
        }
        assert_eq!(gate.admit(much_later), Admission::Answer);
    }

    #[test]
    fn strikes_cut_off_and_are_forgotten_after_quiet() {
        let t0 = Instant::now();
        let mut gate = Gate::new(&config(10, 3, 3), t0);
        assert!(!gate.strike(t0));
        assert!(!gate.strike(t0));
        let quiet = t0 + STRIKE_MEMORY + Duration::from_secs(1);
        assert!(!gate.strike(quiet));
        assert!(!gate.strike(quiet));
        assert!(gate.strike(quiet));
    }

    #[test]
    fn room_names() {
        assert!(check_room_name("standup-2.b_x", 64).is_ok());
        assert!(check_room_name("聊天室", 64).is_ok());
        assert!(check_room_name("", 64).is_err());
        assert!(check_room_name("a b", 64).is_err());
        assert!(check_room_name("a/b", 64).is_err());
        assert!(check_room_name(&"a".repeat(65), 64).is_err());
        assert!(check_room_name(&"é".repeat(64), 64).is_ok());
    }

    #[test]
    fn display_names() {
        assert!(check_display_name("Ada Lovelace", 64).is_ok());
        assert!(check_display_name("   ", 64).is_err());
        assert!(check_display_name("a\u{0}b", 64).is_err());
        assert!(check_display_name("a\nb", 64).is_err());
        assert!(check_display_name(&"x".repeat(65), 64).is_err());
    }
}
