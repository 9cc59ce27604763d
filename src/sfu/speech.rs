//! Who is speaking, from the RFC 6464 audio level each audio packet carries (0 = loudest,
//! 127 = silence, in -dBov). Pure: levels and `now` in, changes out.
//!
//! Hysteresis so the indicator (and the speaker's priority in the layer choice) does not
//! flicker between words: a score follows the share of loud packets (an exponential average
//! over ~10 packets, 200 ms of Opus); speaking starts when it passes `START` and stops only when
//! it has fallen under `STOP` *and* no loud packet came for `HANG`.

use std::time::{Duration, Instant};

/// Louder than -50 dBov counts as voice.
const LOUD: u8 = 50;
const START: f32 = 0.6;
const STOP: f32 = 0.2;
const HANG: Duration = Duration::from_millis(1000);
/// Weight of each new packet in the score.
const ALPHA: f32 = 0.1;

#[derive(Debug, Clone, Default)]
pub struct SpeechDetector {
    score: f32,
    speaking: bool,
    last_loud: Option<Instant>,
}

impl SpeechDetector {
    pub fn new() -> Self {
        Self::default()
    }

    /// One packet's level; `Some(speaking)` when that changes.
    pub fn on_level(&mut self, now: Instant, level: u8) -> Option<bool> {
        let loud = level <= LOUD;
        self.score = self.score * (1.0 - ALPHA) + if loud { ALPHA } else { 0.0 };
        if loud {
            self.last_loud = Some(now);
        }
        let quiet_for = self
            .last_loud
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        let next = if self.speaking {
            !(self.score < STOP && quiet_for >= HANG)
        } else {
            self.score > START
        };
        (next != self.speaking).then(|| {
            self.speaking = next;
            next
        })
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` packets 20 ms apart at `level`; returns the changes.
    fn feed(d: &mut SpeechDetector, t: &mut Instant, n: usize, level: u8) -> Vec<bool> {
        (0..n)
            .filter_map(|_| {
                *t += Duration::from_millis(20);
                d.on_level(*t, level)
            })
            .collect()
    }

    #[test]
    fn voice_starts_speaking_and_silence_ends_it_after_the_hang() {
        let mut d = SpeechDetector::new();
        let mut t = Instant::now();
        assert!(
            feed(&mut d, &mut t, 50, 127).is_empty(),
            "silence says nothing"
        );
        assert_eq!(feed(&mut d, &mut t, 15, 30), vec![true]);
        // Half a second of pause between words: still speaking.
        assert!(feed(&mut d, &mut t, 25, 127).is_empty());
        assert!(d.speaking());
        assert_eq!(feed(&mut d, &mut t, 100, 127), vec![false]);
    }

    #[test]
    fn a_cough_is_not_speech_and_flicker_does_not_toggle() {
        let mut d = SpeechDetector::new();
        let mut t = Instant::now();
        assert!(feed(&mut d, &mut t, 3, 10).is_empty());
        assert!(feed(&mut d, &mut t, 20, 127).is_empty());
        let mut changes = 0;
        for _ in 0..50 {
            changes += feed(&mut d, &mut t, 1, 20).len();
            changes += feed(&mut d, &mut t, 1, 127).len();
        }
        assert_eq!(
            changes, 0,
            "50 % loud packets stay under the start threshold"
        );
    }
}
