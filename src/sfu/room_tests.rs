//! The room core on simulated time: plain `Instant` arithmetic, no runtime, no sleeps.

use std::time::{Duration, Instant};

use super::*;

fn key(p: &str, mid: &str) -> TrackKey {
    (p.to_string(), mid.to_string())
}

fn sub(s: &str, p: &str, mid: &str) -> Action {
    Action::Subscribe {
        subscriber: s.into(),
        track: key(p, mid),
    }
}

fn unsub(s: &str, p: &str, mid: &str) -> Action {
    Action::Unsubscribe {
        subscriber: s.into(),
        track: key(p, mid),
    }
}

/// A room and a clock that advances 10 ms per event.
struct Sim {
    room: Room,
    now: Instant,
}

impl Sim {
    fn new() -> Self {
        Self {
            room: Room::new(),
            now: Instant::now(),
        }
    }

    fn on(&mut self, event: Event) -> Vec<Action> {
        self.now += Duration::from_millis(10);
        self.room.handle(event, self.now)
    }

    fn join(&mut self, id: &str) -> Vec<Action> {
        self.on(Event::Join { id: id.into() })
    }

    fn leave(&mut self, id: &str) -> Vec<Action> {
        self.on(Event::Leave { id: id.into() })
    }

    fn publish(&mut self, id: &str, mid: &str) -> Vec<Action> {
        self.on(Event::Publish {
            id: id.into(),
            mid: mid.into(),
            kind: MediaKind::Video,
            source: Source::Camera,
        })
    }

    fn unpublish(&mut self, id: &str, mid: &str) -> Vec<Action> {
        self.on(Event::Unpublish {
            id: id.into(),
            mid: mid.into(),
        })
    }

    fn mute(&mut self, p: &str, mid: &str, muted: bool) -> Vec<Action> {
        self.on(Event::Mute {
            track: key(p, mid),
            muted,
        })
    }

    fn wants(&mut self, s: &str, p: &str, mid: &str, want: Want) -> Vec<Action> {
        self.on(Event::Wants {
            subscriber: s.into(),
            track: key(p, mid),
            want,
        })
    }
}

#[test]
fn members_are_kept_in_join_order() {
    let mut sim = Sim::new();
    for id in ["c", "a", "b"] {
        assert!(sim.join(id).is_empty());
    }
    sim.join("a");
    let order: Vec<&str> = sim.room.members().map(|(id, _)| id).collect();
    assert_eq!(order, ["c", "a", "b"], "a second join changes nothing");
}

#[test]
fn published_track_goes_to_every_other_member_in_join_order() {
    let mut sim = Sim::new();
    for id in ["a", "b", "c"] {
        sim.join(id);
    }
    assert_eq!(
        sim.publish("b", "0"),
        vec![sub("a", "b", "0"), sub("c", "b", "0")]
    );
    assert!(
        sim.room.subscriptions_of("b").is_empty(),
        "never your own track"
    );
}

#[test]
fn late_joiner_gets_every_existing_track() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    sim.publish("a", "0");
    sim.publish("a", "1");
    sim.publish("b", "0");
    let actions = sim.join("late");
    assert_eq!(
        actions,
        vec![
            sub("late", "a", "0"),
            sub("late", "a", "1"),
            sub("late", "b", "0")
        ]
    );
    assert_eq!(
        sim.room.subscriptions_of("late"),
        vec![key("a", "0"), key("a", "1"), key("b", "0")]
    );
    assert_eq!(
        sim.room.subscribed_since("late", &key("a", "0")),
        Some(sim.now),
        "subscriptions carry the time they were decided"
    );
}

#[test]
fn leaver_tracks_removed_everywhere() {
    let mut sim = Sim::new();
    for id in ["a", "b", "c"] {
        sim.join(id);
    }
    sim.publish("a", "0");
    sim.publish("a", "1");
    sim.publish("b", "0");
    let actions = sim.leave("a");
    assert_eq!(
        actions,
        vec![
            unsub("b", "a", "0"),
            unsub("b", "a", "1"),
            unsub("c", "a", "0"),
            unsub("c", "a", "1"),
        ],
        "the leaver's own subscriptions end with it and are not reported"
    );
    assert_eq!(sim.room.subscriptions_of("c"), vec![key("b", "0")]);
    assert_eq!(sim.room.tracks().count(), 1);
}

#[test]
fn unpublished_track_is_unsubscribed_and_others_stay() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    sim.publish("a", "0");
    sim.publish("a", "1");
    assert_eq!(sim.unpublish("a", "0"), vec![unsub("b", "a", "0")]);
    assert_eq!(sim.room.subscriptions_of("b"), vec![key("a", "1")]);
    assert!(
        sim.unpublish("a", "0").is_empty(),
        "a second unpublish changes nothing"
    );
}

#[test]
fn republished_mid_is_resubscribed() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    sim.publish("a", "0");
    assert_eq!(
        sim.publish("a", "0"),
        vec![unsub("b", "a", "0"), sub("b", "a", "0")],
        "a new track on the same mid replaces the old one"
    );
}

#[test]
fn muted_track_is_forwarded_to_nobody_until_unmuted() {
    let mut sim = Sim::new();
    for id in ["a", "b", "c"] {
        sim.join(id);
    }
    sim.publish("a", "0");
    assert_eq!(
        sim.mute("a", "0", true),
        vec![unsub("b", "a", "0"), unsub("c", "a", "0")]
    );
    assert!(
        sim.join("d").is_empty(),
        "a late joiner does not get a muted track"
    );
    assert_eq!(
        sim.mute("a", "0", false),
        vec![sub("b", "a", "0"), sub("c", "a", "0"), sub("d", "a", "0")]
    );
    assert!(sim.mute("a", "0", false).is_empty());
}

#[test]
fn wants_off_unsubscribes_only_that_subscriber_and_on_brings_it_back() {
    let mut sim = Sim::new();
    for id in ["a", "b", "c"] {
        sim.join(id);
    }
    sim.publish("a", "0");
    assert_eq!(
        sim.wants("b", "a", "0", Want::Off),
        vec![unsub("b", "a", "0")]
    );
    assert_eq!(sim.room.subscriptions_of("c"), vec![key("a", "0")]);
    assert!(sim.mute("a", "0", true).len() == 1, "only c was subscribed");
    assert!(
        sim.mute("a", "0", false) == vec![sub("c", "a", "0")],
        "b's wish outlives a mute"
    );
    assert_eq!(sim.wants("b", "a", "0", Want::On), vec![sub("b", "a", "0")]);
}

#[test]
fn wishes_for_unknown_or_gone_tracks_are_not_kept() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    assert!(sim.wants("b", "a", "0", Want::Off).is_empty());
    assert_eq!(
        sim.publish("a", "0"),
        vec![sub("b", "a", "0")],
        "a wish made before the track existed is ignored"
    );
    sim.wants("b", "a", "0", Want::Off);
    sim.unpublish("a", "0");
    assert_eq!(
        sim.publish("a", "0"),
        vec![sub("b", "a", "0")],
        "a wish ends with its track"
    );
}

#[test]
fn keyframe_is_requested_when_a_subscription_starts() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    sim.publish("a", "0");
    let started = |sim: &mut Sim| {
        sim.on(Event::Started {
            subscriber: "b".into(),
            track: key("a", "0"),
        })
    };
    assert_eq!(
        started(&mut sim),
        vec![Action::RequestKeyframe {
            track: key("a", "0")
        }]
    );
    sim.wants("b", "a", "0", Want::Off);
    assert!(
        started(&mut sim).is_empty(),
        "a subscription that is no longer wanted asks for nothing"
    );
}

#[test]
fn events_from_non_members_change_nothing() {
    let mut sim = Sim::new();
    sim.join("a");
    assert!(sim.publish("ghost", "0").is_empty());
    assert!(sim.wants("ghost", "a", "0", Want::Off).is_empty());
    assert!(sim.leave("ghost").is_empty());
    assert_eq!(sim.room.tracks().count(), 0);
}

#[test]
fn empty_room_reports_empty() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    sim.publish("a", "0");
    sim.leave("a");
    assert!(!sim.room.is_empty());
    sim.leave("b");
    assert!(sim.room.is_empty());
    assert_eq!(sim.room.tracks().count(), 0);
    assert!(sim.room.subscriptions_of("b").is_empty());
}

#[test]
fn matrix_stays_consistent_over_many_events() {
    // A deterministic walk: after every event the matrix equals the rule applied from scratch.
    let mut sim = Sim::new();
    let ids = ["a", "b", "c", "d"];
    for step in 0u32..2_000 {
        let id = ids[(step.wrapping_mul(7) % 4) as usize];
        let other = ids[(step.wrapping_mul(13) % 4) as usize];
        let mid = ((step / 4) % 3).to_string();
        match step % 7 {
            0 | 1 => drop(sim.join(id)),
            2 => drop(sim.publish(id, &mid)),
            3 => drop(sim.unpublish(id, &mid)),
            4 => drop(sim.mute(id, &mid, step % 2 == 0)),
            5 => drop(sim.wants(
                other,
                id,
                &mid,
                if step % 3 == 0 { Want::Off } else { Want::On },
            )),
            _ => drop(sim.leave(id)),
        }
        for (m, _) in sim.room.members() {
            let expected: Vec<TrackKey> = sim
                .room
                .tracks()
                .filter(|(k, _, _, muted, _)| k.0 != m && !muted)
                .map(|(k, ..)| k.clone())
                .filter(|k| sim.room.wish(m, k) != Some(Want::Off))
                .collect();
            assert_eq!(sim.room.subscriptions_of(m), expected, "step {step}");
        }
    }
}

#[test]
fn a_mute_made_before_the_first_packet_or_across_a_republish_holds() {
    let mut sim = Sim::new();
    sim.join("a");
    sim.join("b");
    // A moderator's mute can land between the offer and the track's first packet.
    assert!(sim.mute("a", "0", true).is_empty());
    assert!(sim.publish("a", "0").is_empty(), "published muted");
    // A republish on the same mid (renegotiation) stays muted too.
    sim.unpublish("a", "0");
    assert!(sim.publish("a", "0").is_empty());
    assert_eq!(sim.mute("a", "0", false), vec![sub("b", "a", "0")]);
    // A leaver's mutes go with it.
    sim.mute("a", "0", true);
    sim.leave("a");
    sim.join("a");
    assert_eq!(sim.publish("a", "0"), vec![sub("b", "a", "0")]);
}
