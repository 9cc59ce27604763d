//! Log set-up for the binary: `RUST_LOG` when given, a sensible default otherwise, and a filter
//! that drops the warnings webrtc-rs prints for every normal participant.
//!
//! A participant that joins, talks and leaves made about ten WARN lines of webrtc-rs (ICE
//! checks before the first candidate arrives, the SRTP session closing under its own readers,
//! a DTLS close alert for an endpoint already gone). None of them is a problem, and an admin who
//! sees ten warnings per person stops reading warnings. They are dropped by exact message, so
//! every other warning from the same modules still shows.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// (target prefix, text the message contains): expected in every normal session.
const EXPECTED: &[(&str, &str)] = &[
    // Checks start before the client's first trickled candidate: nothing to pair yet.
    (
        "webrtc_ice::agent::agent_internal",
        "pingAllCandidates called with no candidate pairs",
    ),
    // Closing an agent closes its candidates, which then report that the agent is closed.
    ("webrtc_ice::agent::agent_internal", "the agent is closed"),
    // Closing a PeerConnection ends the SRTP session its accept loops wait on.
    (
        "webrtc::peer_connection::peer_connection_internal",
        "SessionSRTP has been closed",
    ),
    (
        "webrtc::peer_connection::peer_connection_internal",
        "dtls_transport unavailable",
    ),
    // A peer's DTLS close alert arriving after its endpoint was removed from the UDP mux.
    ("webrtc::mux", "no endpoint for packet"),
];

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::registry()
        .with(filter)
        .with(DropExpected)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}

/// Drops the warnings listed in [`EXPECTED`].
struct DropExpected;

impl<S: Subscriber> Layer<S> for DropExpected {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::WARN {
            return true;
        }
        let target = log_target(event).unwrap_or_else(|| meta.target().to_string());
        let candidates: Vec<&str> = EXPECTED
            .iter()
            .filter(|(prefix, _)| target.starts_with(prefix))
            .map(|(_, text)| *text)
            .collect();
        if candidates.is_empty() {
            return true;
        }
        let mut message = Message::default();
        event.record(&mut message);
        !candidates.iter().any(|text| message.0.contains(text))
    }
}

/// `log` records bridged into tracing carry their real target in a `log.target` field.
fn log_target(event: &Event<'_>) -> Option<String> {
    #[derive(Default)]
    struct Target(Option<String>);
    impl Visit for Target {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "log.target" {
                self.0 = Some(value.to_string());
            }
        }
        fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
    }
    let mut target = Target::default();
    event.record(&mut target);
    target.0
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Collects the messages that get past the filter.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
            let mut m = Message::default();
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }

    #[test]
    fn expected_webrtc_warnings_are_dropped_and_others_kept() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(DropExpected)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "webrtc::mux", "Warning: mux: no endpoint for packet starting with 21");
            tracing::warn!(target: "webrtc::mux", "mux: something new");
            tracing::warn!(target: "webrtc_ice::agent::agent_internal", "[controlled]: pingAllCandidates called with no candidate pairs. Connection is not possible yet.");
            tracing::error!(target: "webrtc::mux", "no endpoint for packet (but an error)");
            tracing::warn!(target: "sfu_lite", "no endpoint for packet, said by us");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                "mux: something new".to_string(),
                "no endpoint for packet (but an error)".to_string(),
                "no endpoint for packet, said by us".to_string(),
            ]
        );
    }
}
