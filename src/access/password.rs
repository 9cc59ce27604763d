//! Room passwords: Argon2id hashes in PHC form, and the pure limiter of wrong guesses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A new Argon2id hash (the crate's recommended parameters) of `password`, as a PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `phc`. A hash that does not parse matches nothing. Slow on
/// purpose (tens of milliseconds): run it off the async threads.
pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The window over which wrong passwords are counted.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses and rooms remembered at most; beyond, expired entries are dropped, and if none
/// is, every guess is refused until some expire (memory stays bounded under a spray).
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Address(IpAddr),
    Room(String),
}

/// Wrong guesses per client address and per room, in fixed windows of [`WINDOW`]: at most
/// `per_address` from one address and `per_room` against one room per window. Time is passed
/// in, so tests drive it.
#[derive(Debug)]
pub struct Attempts {
    per_address: u32,
    per_room: u32,
    counts: HashMap<Key, (Instant, u32)>,
}

impl Attempts {
    pub fn new(per_address: u32, per_room: u32) -> Self {
        Self {
            per_address,
            per_room,
            counts: HashMap::new(),
        }
    }

    /// Whether a guess from `ip` at `room` may be checked now.
    pub fn allowed(&mut self, ip: Option<IpAddr>, room: &str, now: Instant) -> bool {
        let by_address = ip.is_none_or(|ip| self.under(&Key::Address(ip), self.per_address, now));
        by_address && self.under(&Key::Room(room.to_string()), self.per_room, now)
    }

    /// Records a wrong guess.
    pub fn failed(&mut self, ip: Option<IpAddr>, room: &str, now: Instant) {
        if self.counts.len() >= MAX_ENTRIES {
            self.counts
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let keys = ip
            .map(Key::Address)
            .into_iter()
            .chain([Key::Room(room.into())]);
        for key in keys {
            if self.counts.len() >= MAX_ENTRIES && !self.counts.contains_key(&key) {
                continue;
            }
            let entry = self.counts.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= WINDOW {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    fn under(&self, key: &Key, max: u32, now: Instant) -> bool {
        if self.counts.len() >= MAX_ENTRIES && !self.counts.contains_key(key) {
            return false;
        }
        match self.counts.get(key) {
            Some((start, n)) if now.duration_since(*start) < WINDOW => *n < max,
            _ => true,
        }
    }

    pub fn set_limits(&mut self, per_address: u32, per_room: u32) {
        self.per_address = per_address;
        self.per_room = per_room;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_its_password_only() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn wrong_guesses_are_limited_per_address_then_per_room() {
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut limit = Attempts::new(3, 5);
        for _ in 0..3 {
            assert!(limit.allowed(Some(a), "r", t0));
            limit.failed(Some(a), "r", t0);
        }
        assert!(!limit.allowed(Some(a), "r", t0), "address over its limit");
        assert!(
            !limit.allowed(Some(a), "other", t0),
            "the address is limited in every room"
        );
        for _ in 0..2 {
            assert!(limit.allowed(Some(b), "r", t0));
            limit.failed(Some(b), "r", t0);
        }
        assert!(!limit.allowed(Some(b), "r", t0), "room over its limit");
        assert!(limit.allowed(Some(b), "other", t0));
        let later = t0 + WINDOW;
        assert!(limit.allowed(Some(a), "r", later), "a new window forgives");
    }
}
