//! Short-lived TURN credentials in the TURN REST scheme (draft-uberti-behave-turn-rest), the
//! one coturn's `use-auth-secret` checks: username `"<expiry unix seconds>:<participant>"`,
//! password `base64(HMAC-SHA1(secret, username))`. The server that shares the secret needs no
//! user table: it recomputes the password and refuses a username whose expiry has passed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One participant's TURN username and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Credentials for `participant`, valid until `now + ttl`.
pub fn issue(secret: &[u8], participant: &str, now: SystemTime, ttl: Duration) -> Credentials {
    let expiry = unix_secs(now).saturating_add(ttl.as_secs());
    let username = format!("{expiry}:{participant}");
    let password = password(secret, &username);
    Credentials { username, password }
}

/// The password that goes with `username`.
pub fn password(secret: &[u8], username: &str) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(username.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `username` is in the scheme and has not expired at `now`.
pub fn is_current(username: &str, now: SystemTime) -> bool {
    let expiry = username.split_once(':').map_or(username, |(e, _)| e);
    expiry
        .parse::<u64>()
        .is_ok_and(|expiry| expiry >= unix_secs(now))
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_the_published_rest_example() {
        // HMAC-SHA1 of a known username and key, computed independently with
        // `printf %s 1700000000:alice | openssl dgst -sha1 -hmac s3cret -binary | base64`.
        assert_eq!(
            password(b"s3cret", "1700000000:alice"),
            "TtElzSjT0GdnTQ9xdcRNxx96yQs="
        );
    }

    #[test]
    fn username_carries_expiry_and_participant() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let c = issue(b"k", "p1", now, Duration::from_secs(60));
        assert_eq!(c.username, "1060:p1");
        assert_eq!(c.password, password(b"k", "1060:p1"));
        assert!(is_current(&c.username, now));
        assert!(is_current(&c.username, now + Duration::from_secs(60)));
        assert!(!is_current(&c.username, now + Duration::from_secs(61)));
        assert!(!is_current("soon:p1", now));
        assert!(!format!("{c:?}").contains(&c.password));
    }
}
