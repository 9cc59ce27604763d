//! Which subscriptions a load run must see, and what a silent one costs.
//!
//! Loss counted from sequence numbers only covers streams that delivered at least one packet:
//! a subscription that never started would otherwise vanish from the figures. The tool knows
//! every peer it started, so it knows the expected subscriptions (every track of every other
//! publisher in the same room) and charges a silent one with every packet its publisher sent
//! while both were present. Pure: the caller passes presence times and counts in.

use crate::sfu::Source;

/// One joined peer as the expectation sees it.
#[derive(Debug, Clone)]
pub struct Presence {
    /// The participant id the server knows it by.
    pub id: String,
    /// The room it is in (any key equal for peers of one room).
    pub room: usize,
    /// Seconds from its join to the end of the measured run.
    pub present_s: f64,
    /// Its published tracks and how many packets each sent in that time.
    pub tracks: Vec<(Source, u64)>,
}

/// One expected subscription that delivered nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Silent {
    pub subscriber: String,
    pub publisher: String,
    pub source: Source,
    /// Packets its publisher sent while both were present: all lost for this subscriber.
    pub lost_packets: u64,
}

/// Expected and started subscriptions of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectation {
    pub expected: usize,
    pub started: usize,
    pub silent: Vec<Silent>,
}

impl Expectation {
    /// Packets lost on subscriptions that never started.
    pub fn silent_lost_packets(&self) -> u64 {
        self.silent.iter().map(|s| s.lost_packets).sum()
    }
}

/// Every (subscriber, publisher track) pair of `peers` in the same room, with `started` telling
/// whether the subscriber received anything of that track.
pub fn subscriptions(
    peers: &[Presence],
    started: impl Fn(&Presence, &str, Source) -> bool,
) -> Expectation {
    let mut out = Expectation::default();
    for sub in peers {
        for publisher in peers
            .iter()
            .filter(|p| p.room == sub.room && p.id != sub.id)
        {
            for &(source, sent) in &publisher.tracks {
                out.expected += 1;
                if started(sub, &publisher.id, source) {
                    out.started += 1;
                    continue;
                }
                out.silent.push(Silent {
                    subscriber: sub.id.clone(),
                    publisher: publisher.id.clone(),
                    source,
                    lost_packets: sent_while_both_present(sent, publisher, sub),
                });
            }
        }
    }
    out
}

/// The publisher's packets scaled to the time both were present (its send rate times the
/// overlap; the later joiner's presence is the overlap, as nobody leaves before the end).
fn sent_while_both_present(sent: u64, publisher: &Presence, sub: &Presence) -> u64 {
    if publisher.present_s <= 0.0 {
        return 0;
    }
    let overlap = sub.present_s.min(publisher.present_s).max(0.0);
    (sent as f64 * overlap / publisher.present_s).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, room: usize, present_s: f64, tracks: &[(Source, u64)]) -> Presence {
        Presence {
            id: id.into(),
            room,
            present_s,
            tracks: tracks.to_vec(),
        }
    }

    #[test]
    fn every_other_publishers_track_in_the_room_is_expected() {
        let peers = [
            peer(
                "a",
                0,
                10.0,
                &[(Source::Camera, 100), (Source::Microphone, 500)],
            ),
            peer("b", 0, 10.0, &[(Source::Camera, 100)]),
            peer("c", 0, 10.0, &[]),
            peer("d", 1, 10.0, &[(Source::Camera, 100)]),
        ];
        let e = subscriptions(&peers, |_, _, _| true);
        // a gets b's 1; b gets a's 2; c gets 3; d is alone in its room.
        assert_eq!((e.expected, e.started), (6, 6));
        assert!(e.silent.is_empty());
    }

    #[test]
    fn a_silent_subscription_is_lost_for_the_time_both_were_present() {
        let peers = [
            peer("early", 0, 10.0, &[(Source::Camera, 1000)]),
            peer("late", 0, 4.0, &[]),
        ];
        let e = subscriptions(&peers, |_, _, _| false);
        assert_eq!((e.expected, e.started), (1, 0));
        assert_eq!(
            e.silent,
            vec![Silent {
                subscriber: "late".into(),
                publisher: "early".into(),
                source: Source::Camera,
                lost_packets: 400,
            }]
        );
        // The publisher that joined later: all it sent counts.
        let peers = [
            peer("sub", 0, 10.0, &[]),
            peer("pub", 0, 4.0, &[(Source::Microphone, 200)]),
        ];
        let e = subscriptions(&peers, |_, _, _| false);
        assert_eq!(e.silent_lost_packets(), 200);
    }

    #[test]
    fn started_is_asked_per_track() {
        let peers = [
            peer(
                "a",
                0,
                5.0,
                &[(Source::Camera, 50), (Source::Microphone, 250)],
            ),
            peer("b", 0, 5.0, &[]),
        ];
        let e = subscriptions(&peers, |sub, publisher, source| {
            sub.id == "b" && publisher == "a" && source == Source::Camera
        });
        assert_eq!((e.expected, e.started), (2, 1));
        assert_eq!(e.silent[0].source, Source::Microphone);
        assert_eq!(e.silent_lost_packets(), 250);
    }
}
