//! Which simulcast layer each of one subscriber's video subscriptions carries, and which layers
//! a publisher may pause. Pure: inputs and `now` in, decisions out; no async, no WebRTC types.
//!
//! The rule, per subscriber, recomputed every tick:
//! 1. A hidden tile gets nothing. A visible tile never gets a layer larger than it needs (the
//!    smallest layer at least as wide and as tall as the tile; the top one if none is). A
//!    track the page never reported is treated as a large visible tile.
//! 2. The downlink estimate is shared by all of the subscriber's subscriptions, in priority
//!    order (screen share, then the active speaker, then the rest): first every visible tile
//!    gets the lowest layer (even over budget: a plain track has no other), then each, in
//!    that order, is raised as far as the rest of the budget and its tile allow.
//! 3. Hysteresis: a layer above the one already chosen is taken only after the budget has
//!    covered it with a margin (`up_margin`, ×1.2) for `up_hold` (2 s) without a break; going
//!    down happens at once. A new subscription gets the best layer that fits at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One layer a track offers, lowest first in [`Input::layers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOption {
    pub index: u8,
    /// What it costs (measured, or nominal while paused).
    pub bps: u64,
    /// Frame size, 0 when unknown.
    pub width: u32,
    pub height: u32,
}

/// What the page shows of a track (`view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub width: u32,
    pub height: u32,
    pub visible: bool,
}

/// Who gets the budget first when it is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Other,
    Speaker,
    Screen,
}

/// One video subscription of the subscriber.
#[derive(Debug, Clone)]
pub struct Input<K> {
    pub key: K,
    pub layers: Vec<LayerOption>,
    pub tile: Option<Tile>,
    pub priority: Priority,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    target: Option<u8>,
    /// Since when something above `target` has been affordable with the margin.
    up_since: Option<Instant>,
}

/// One subscriber's layer choice with its hysteresis state.
#[derive(Debug)]
pub struct Selector<K> {
    state: HashMap<K, State>,
    up_margin: f64,
    up_hold: Duration,
}

impl<K: Clone + Eq + Hash> Default for Selector<K> {
    fn default() -> Self {
        Self::new(1.2, Duration::from_secs(2))
    }
}

/// The highest layer position (into `layers`) the tile needs; `None` for a hidden tile.
fn tile_cap(layers: &[LayerOption], tile: Option<Tile>) -> Option<usize> {
    let top = layers.len().checked_sub(1)?;
    let Some(tile) = tile else { return Some(top) };
    if !tile.visible {
        return None;
    }
    let covers = |l: &LayerOption| {
        (l.width == 0 && l.height == 0) || (l.width >= tile.width && l.height >= tile.height)
    };
    Some(layers.iter().position(covers).unwrap_or(top))
}

impl<K: Clone + Eq + Hash> Selector<K> {
    pub fn new(up_margin: f64, up_hold: Duration) -> Self {
        Self {
            state: HashMap::new(),
            up_margin,
            up_hold,
        }
    }

    /// The layer (index) for each input, in input order; `None`: forward nothing.
    pub fn decide(
        &mut self,
        now: Instant,
        budget_bps: u64,
        inputs: &[Input<K>],
    ) -> Vec<Option<u8>> {
        self.state.retain(|k, _| inputs.iter().any(|i| &i.key == k));
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].priority));
        let caps: Vec<Option<usize>> = inputs.iter().map(|i| tile_cap(&i.layers, i.tile)).collect();
        let mut chosen: Vec<Option<usize>> = vec![None; inputs.len()];
        let mut left = budget_bps as f64;
        // Every visible tile keeps at least the lowest layer, even over budget: a plain track
        // has no other, and a tile that goes black under congestion is worse than a coarse
        // one (the loss-based estimate would otherwise turn video off on a merely lossy link).
        for &i in &order {
            if caps[i].is_some() {
                chosen[i] = Some(0);
                left -= inputs[i].layers[0].bps as f64;
            }
        }
        for &i in &order {
            let (Some(at), Some(cap)) = (chosen[i], caps[i]) else {
                continue;
            };
            let layers = &inputs[i].layers;
            let st = self.state.get(&inputs[i].key).copied();
            // The layer held now, as a position; a new subscription holds nothing yet.
            let held = st
                .and_then(|s| s.target)
                .and_then(|t| layers.iter().position(|l| l.index == t));
            let fresh = st.is_none();
            let base = layers[at].bps as f64;
            let mut pick = at;
            let mut wants_up = false;
            for cand in (at + 1..=cap).rev() {
                let cost = layers[cand].bps as f64;
                let within_held = fresh || held.is_some_and(|h| cand <= h);
                if within_held {
                    if cost - base <= left {
                        pick = cand;
                        break;
                    }
                    continue;
                }
                if cost * self.up_margin - base <= left {
                    wants_up = true;
                    let since = st.and_then(|s| s.up_since).unwrap_or(now);
                    if now.duration_since(since) >= self.up_hold {
                        pick = cand;
                        break;
                    }
                }
            }
            left -= layers[pick].bps as f64 - base;
            chosen[i] = Some(pick);
            let raised_above_held = held.is_none_or(|h| pick > h);
            let entry = self.state.entry(inputs[i].key.clone()).or_default();
            entry.up_since = match (wants_up && !(raised_above_held && !fresh), entry.up_since) {
                (true, Some(s)) => Some(s),
                (true, None) => Some(now),
                (false, _) => None,
            };
        }
        let out: Vec<Option<u8>> = chosen
            .iter()
            .zip(inputs)
            .map(|(c, i)| c.map(|p| i.layers[p].index))
            .collect();
        for (i, target) in inputs.iter().zip(&out) {
            self.state.entry(i.key.clone()).or_default().target = *target;
        }
        out
    }
}

/// Whether to tell a publisher which of its layers are active: at once when a layer becomes
/// needed (a subscriber waits for it), at most once per `min_interval` when layers are only
/// dropped (a tile that flickers must not make the publisher's encoder flap).
#[derive(Debug)]
pub struct PauseGate {
    sent: Option<Vec<bool>>,
    last_sent: Option<Instant>,
    min_interval: Duration,
}

impl Default for PauseGate {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}

impl PauseGate {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            sent: None,
            last_sent: None,
            min_interval,
        }
    }

    /// `needed[i]`: someone receives or waits for layer `i`. `Some`: send this active set now.
    pub fn decide(&mut self, now: Instant, needed: &[bool]) -> Option<Vec<bool>> {
        if self.sent.as_deref() == Some(needed) {
            return None;
        }
        let newly_needed = match &self.sent {
            None => true,
            Some(prev) => needed
                .iter()
                .enumerate()
                .any(|(i, &n)| n && !prev.get(i).copied().unwrap_or(false)),
        };
        let quiet = self
            .last_sent
            .is_none_or(|t| now.duration_since(t) >= self.min_interval);
        if !(newly_needed || quiet) {
            return None;
        }
        self.sent = Some(needed.to_vec());
        self.last_sent = Some(now);
        Some(needed.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: u64 = 150_000;
    const H: u64 = 500_000;
    const F: u64 = 1_500_000;

    fn three() -> Vec<LayerOption> {
        [(Q, 320, 180), (H, 640, 360), (F, 1280, 720)]
            .iter()
            .enumerate()
            .map(|(i, &(bps, width, height))| LayerOption {
                index: i as u8,
                bps,
                width,
                height,
            })
            .collect()
    }

    fn input(key: &str, tile: Option<Tile>, priority: Priority) -> Input<String> {
        Input {
            key: key.into(),
            layers: three(),
            tile,
            priority,
        }
    }

    fn tile(width: u32, height: u32, visible: bool) -> Option<Tile> {
        Some(Tile {
            width,
            height,
            visible,
        })
    }

    #[test]
    fn new_subscription_gets_the_top_layer_the_estimate_allows() {
        let mut s = Selector::default();
        let now = Instant::now();
        let one = [input("a", None, Priority::Other)];
        assert_eq!(s.decide(now, 3_000_000, &one), vec![Some(2)]);
        let mut s = Selector::default();
        assert_eq!(s.decide(now, 400_000, &one), vec![Some(0)]);
        let mut s = Selector::default();
        assert_eq!(s.decide(now, 600_000, &one), vec![Some(1)]);
    }

    #[test]
    fn small_tile_gets_the_low_layer_and_hidden_gets_nothing() {
        let mut s = Selector::default();
        let now = Instant::now();
        let inputs = [
            input("small", tile(320, 180, true), Priority::Other),
            input("mid", tile(400, 200, true), Priority::Other),
            input("hidden", tile(1280, 720, false), Priority::Other),
            input("big", tile(1920, 1080, true), Priority::Other),
        ];
        assert_eq!(
            s.decide(now, 10_000_000, &inputs),
            vec![Some(0), Some(1), None, Some(2)]
        );
    }

    #[test]
    fn short_budget_goes_to_screen_then_speaker_then_the_rest() {
        let mut s = Selector::default();
        let now = Instant::now();
        let inputs = [
            input("rest", None, Priority::Other),
            input("speaker", None, Priority::Speaker),
            input("screen", None, Priority::Screen),
        ];
        // Everyone gets q (450k), then screen takes f (+1.35M), speaker h (+350k), rest stays.
        assert_eq!(
            s.decide(now, 2_200_000, &inputs),
            vec![Some(0), Some(1), Some(2)]
        );
        // Not even q for all: everyone keeps q, nobody gets more.
        let mut s = Selector::default();
        assert_eq!(
            s.decide(now, 100_000, &inputs),
            vec![Some(0), Some(0), Some(0)]
        );
    }

    #[test]
    fn down_at_once_up_only_after_the_margin_held() {
        let mut s = Selector::default();
        let t0 = Instant::now();
        let one = [input("a", None, Priority::Other)];
        assert_eq!(s.decide(t0, 3_000_000, &one), vec![Some(2)]);
        // The estimate collapses: down at once.
        assert_eq!(
            s.decide(t0 + Duration::from_millis(250), 400_000, &one),
            vec![Some(0)]
        );
        // Enough for h, not with the margin: stays.
        let t = t0 + Duration::from_secs(1);
        assert_eq!(s.decide(t, 550_000, &one), vec![Some(0)]);
        assert_eq!(
            s.decide(t + Duration::from_secs(5), 550_000, &one),
            vec![Some(0)]
        );
        // With the margin, only after 2 s without a break.
        let t = t + Duration::from_secs(6);
        assert_eq!(s.decide(t, 700_000, &one), vec![Some(0)]);
        assert_eq!(
            s.decide(t + Duration::from_millis(1000), 700_000, &one),
            vec![Some(0)]
        );
        // A dip restarts the wait.
        assert_eq!(
            s.decide(t + Duration::from_millis(1500), 500_000, &one),
            vec![Some(0)]
        );
        assert_eq!(
            s.decide(t + Duration::from_millis(2500), 700_000, &one),
            vec![Some(0)]
        );
        assert_eq!(
            s.decide(t + Duration::from_millis(4000), 700_000, &one),
            vec![Some(0)]
        );
        assert_eq!(
            s.decide(t + Duration::from_millis(4600), 700_000, &one),
            vec![Some(1)]
        );
        // And straight to f when it is covered by then.
        let t = t + Duration::from_secs(10);
        assert_eq!(s.decide(t, 2_000_000, &one), vec![Some(1)]);
        assert_eq!(
            s.decide(t + Duration::from_secs(2), 2_000_000, &one),
            vec![Some(2)]
        );
    }

    #[test]
    fn estimate_hovering_at_a_layer_does_not_flap() {
        let mut s = Selector::default();
        let t0 = Instant::now();
        let one = [input("a", None, Priority::Other)];
        s.decide(t0, 400_000, &one);
        let mut switches = 0;
        let mut last = Some(0);
        for step in 0..400u64 {
            // 480–620 kbit/s: around h's cost but never above it with the margin.
            let budget = 480_000 + (step * 37 % 140) * 1000;
            let got = s.decide(t0 + Duration::from_millis(250 * step), budget, &one);
            if got[0] != last {
                switches += 1;
                last = got[0];
            }
        }
        assert_eq!(switches, 0);
    }

    #[test]
    fn pause_gate_resumes_at_once_and_pauses_at_most_once_a_second() {
        let mut g = PauseGate::default();
        let t0 = Instant::now();
        assert_eq!(
            g.decide(t0, &[true, true, true]),
            Some(vec![true, true, true])
        );
        assert_eq!(g.decide(t0, &[true, true, true]), None);
        // Dropping f right after: waits out the second.
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(g.decide(ms(300), &[true, true, false]), None);
        assert_eq!(
            g.decide(ms(1000), &[true, true, false]),
            Some(vec![true, true, false])
        );
        // Needing f again: at once.
        assert_eq!(
            g.decide(ms(1100), &[true, true, true]),
            Some(vec![true, true, true])
        );
        assert_eq!(g.decide(ms(1200), &[false, false, false]), None);
        assert_eq!(
            g.decide(ms(2100), &[false, false, false]),
            Some(vec![false; 3])
        );
    }
}
