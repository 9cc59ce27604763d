//! The subscriber side's layer choice at work: every `TICK`, one participant's video
//! subscriptions, their tiles (`view`) and its downlink estimate go through the pure
//! [`Selector`]; the targets it returns are set on the sinks (with a keyframe request on the
//! target layer: the switch happens on its keyframe), and each completed switch is reported
//! (`SfuEvent::Layer`). And the publisher side's pause: one task per simulcast up track tells
//! the publisher which layers anyone needs (`SfuEvent::Layers`, through the [`PauseGate`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::forward::{Sink, UpTrack, NO_LAYER};
use super::layers::{Input, PauseGate, Priority, Selector, Tile};
use super::peer::Peer;
use super::{SfuEvent, Source, TileView};
use crate::sync::lock;

/// How often layer choices are revisited.
const TICK: Duration = Duration::from_millis(250);
/// A target that has not produced its keyframe by then is asked again.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);
/// Kept aside from the estimate for each audio subscription (Opus at ~32 kbit/s + headers).
const AUDIO_RESERVE_BPS: u64 = 48_000;
/// Tile reports kept per subscriber at most (one per m-line is the most a page can need).
const MAX_VIEWS: usize = 256;

/// One subscription as the selector sees it.
#[derive(Clone)]
pub(crate) struct DownEntry {
    pub mid: String,
    pub up: Arc<UpTrack>,
    pub sink: Arc<Sink>,
}

/// One participant's layer-choice state (one owner: its `Peer`, behind a short std mutex).
#[derive(Default)]
pub(crate) struct Adapt {
    pub downs: Vec<DownEntry>,
    views: HashMap<String, Tile>,
    selector: Selector<String>,
    /// The layer last reported per mid (`SfuEvent::Layer`).
    reported: HashMap<String, u8>,
    /// The target last asked for per mid, and when.
    asked: HashMap<String, (u8, Instant)>,
}

impl Peer {
    /// The page's tiles. Entries for mids this subscriber does not receive are ignored.
    pub fn set_view(&self, tiles: Vec<TileView>) {
        let mut a = lock(&self.adapt);
        for t in tiles {
            if !a.downs.iter().any(|d| d.mid == t.mid) {
                continue;
            }
            if a.views.len() >= MAX_VIEWS && !a.views.contains_key(&t.mid) {
                continue;
            }
            let tile = Tile {
                width: t.width,
                height: t.height,
                visible: t.visible,
            };
            a.views.insert(t.mid, tile);
        }
        drop(a);
        self.adapt_tick();
    }

    /// Replaces the list of subscriptions (after a reconcile); forgets tiles of gone mids.
    pub(super) fn set_downs(&self, downs: Vec<DownEntry>) {
        let mut a = lock(&self.adapt);
        a.views.retain(|mid, _| downs.iter().any(|d| &d.mid == mid));
        a.reported
            .retain(|mid, _| downs.iter().any(|d| &d.mid == mid));
        a.asked.retain(|mid, _| downs.iter().any(|d| &d.mid == mid));
        a.downs = downs;
    }

    /// One round of layer choice for this subscriber.
    pub(super) fn adapt_tick(&self) {
        let now = Instant::now();
        let estimate = self.downlink.estimate();
        let mut events = Vec::new();
        let mut keyframes: Vec<(Arc<UpTrack>, u8)> = Vec::new();
        {
            let mut guard = lock(&self.adapt);
            let a = &mut *guard;
            let audio = a.downs.iter().filter(|d| !d.up.is_video()).count() as u64;
            let budget = estimate.saturating_sub(audio * AUDIO_RESERVE_BPS);
            let video: Vec<&DownEntry> = a.downs.iter().filter(|d| d.up.is_video()).collect();
            let inputs: Vec<Input<String>> = video
                .iter()
                .map(|d| Input {
                    key: d.mid.clone(),
                    layers: d.up.layer_options(now),
                    tile: a.views.get(&d.mid).copied(),
                    priority: match d.up.source {
                        Source::Screen => Priority::Screen,
                        _ if self.shared.rooms.is_speaking(&self.room, &d.up.publisher) => {
                            Priority::Speaker
                        }
                        _ => Priority::Other,
                    },
                })
                .collect();
            let targets = a.selector.decide(now, budget, &inputs);
            tracing::trace!(participant = %self.id, estimate, ?targets, "layer choice");
            for (d, target) in video.iter().zip(targets) {
                let target = target.unwrap_or(NO_LAYER);
                let current = d.sink.current();
                d.sink.set_target(target);
                if target != NO_LAYER && target != current {
                    let ask = match a.asked.get(&d.mid) {
                        Some(&(t, at)) => t != target || now.duration_since(at) >= KEYFRAME_RETRY,
                        None => true,
                    };
                    if ask {
                        a.asked.insert(d.mid.clone(), (target, now));
                        keyframes.push((d.up.clone(), target));
                    }
                }
                if current != NO_LAYER && a.reported.get(&d.mid) != Some(&current) {
                    a.reported.insert(d.mid.clone(), current);
                    if let Some(rid) = d.up.rid_of(current) {
                        events.push(SfuEvent::Layer {
                            mid: d.mid.clone(),
                            rid,
                        });
                    }
                }
            }
        }
        for (up, layer) in keyframes {
            up.request_layer_keyframe(layer);
        }
        for e in events {
            tracing::debug!(participant = %self.id, room = %self.room, event = ?e, "layer switched");
            let _ = self.events.try_send(e);
        }
    }
}

/// Revisits this peer's layer choices every [`TICK`] until it ends.
pub(super) async fn adapt_task(weak: Weak<Peer>) {
    let Some(mut shutdown) = weak.upgrade().map(|p| p.shutdown.subscribe()) else {
        return;
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(peer) = weak.upgrade() else { return };
        peer.adapt_tick();
    }
}

/// Tells the publisher of simulcast track `up` which of its layers anyone needs, until the
/// track ends.
pub(super) async fn pause_task(up: Weak<UpTrack>, events: tokio::sync::mpsc::Sender<SfuEvent>) {
    let mut gate = PauseGate::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(up) = up.upgrade() else { return };
        if up.is_ended() {
            return;
        }
        let needed = up.needed_layers();
        let Some(active) = gate.decide(Instant::now(), &needed) else {
            continue;
        };
        let active: BTreeMap<String, bool> = up
            .rids()
            .into_iter()
            .zip(active)
            .map(|((rid, _), on)| (rid, on))
            .collect();
        let event = SfuEvent::Layers {
            mid: up.mid.clone(),
            active,
        };
        tracing::debug!(publisher = %up.publisher, mid = %up.mid, ?event, "publisher layers");
        let _ = events.try_send(event);
    }
}
