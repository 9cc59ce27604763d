//! Who may enter a room, and with which role: room policies ([`policy`]), signed tokens
//! ([`token`]), roles ([`role`]) and room passwords ([`password`]).
//!
//! [`Access`] holds the rules in force behind an `ArcSwap`: a join reads one consistent set,
//! and a reload (SIGHUP) swaps in a new one without touching anyone already in a room. The
//! decisions themselves are pure functions in the submodules; this module only feeds them the
//! config, the clock and the slow password check.

pub mod password;
pub mod policy;
pub mod role;
pub mod token;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::sfu::Source;
use crate::sync::lock;
pub use policy::{Action, Policies, RoomPolicy};
pub use role::Role;
pub use token::{Claims, Keys, TokenError};

/// Why someone may not enter, or may not do what they asked. Each maps to its own error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("this room is invite-only: a token is needed")]
    TokenRequired,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this room needs a password")]
    PasswordRequired,
    #[error("wrong password")]
    PasswordWrong,
    #[error("too many wrong passwords; wait a minute")]
    PasswordRateLimited,
    #[error("the room is locked")]
    RoomLocked,
    #[error("banned from this room")]
    Banned,
    #[error("your role may not publish {0:?} in this room")]
    PublishDenied(Source),
    #[error("chat is disabled in this room")]
    ChatDisabled,
    #[error("only moderators may do this")]
    NotModerator,
    #[error("a moderator muted this; only a moderator may lift it in this room")]
    UnmuteDenied,
}

/// The configuration error of access rules (a bad key, policy or rooms directory).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccessError(pub String);

/// One consistent set of rules.
pub struct Rules {
    pub policies: Policies,
    pub keys: Keys,
    pub max_token_bytes: usize,
}

/// Who entered, as decided by [`Access::admit`].
#[derive(Debug, Clone)]
pub struct Admitted {
    pub role: Role,
    /// The display name the token fixes, if it does.
    pub name: Option<String>,
    /// The token's subject, for bans.
    pub identity: Option<String>,
}

/// What a joiner presents.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    pub token: Option<&'a str>,
    pub password: Option<&'a str>,
    pub ip: Option<IpAddr>,
}

pub struct Access {
    rules: ArcSwap<Rules>,
    /// Wrong passwords; one short std lock, never held across the (slow) hash check.
    attempts: Mutex<password::Attempts>,
}

impl Access {
    pub fn new(config: &Config) -> Result<Arc<Self>, AccessError> {
        let auth = &config.auth;
        Ok(Arc::new(Self {
            rules: ArcSwap::from_pointee(rules(config)?),
            attempts: Mutex::new(password::Attempts::new(
                auth.password_failures_per_address,
                auth.password_failures_per_room,
            )),
        }))
    }

    /// Puts `config`'s rules in force for every later decision; on error nothing changes.
    pub fn reload(&self, config: &Config) -> Result<(), AccessError> {
        let new = rules(config)?;
        let rooms = new.policies.declared.len();
        self.rules.store(Arc::new(new));
        let auth = &config.auth;
        lock(&self.attempts).set_limits(
            auth.password_failures_per_address,
            auth.password_failures_per_room,
        );
        tracing::info!(declared_rooms = rooms, "access rules reloaded");
        Ok(())
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules.load_full()
    }

    /// The policy of `room` now.
    pub fn policy(&self, room: &str) -> RoomPolicy {
        self.rules.load().policies.get(room).clone()
    }

    /// Decides whether `creds` open `room`, and with which role. The room's lock, cap and bans
    /// are the room table's to check.
    pub async fn admit(
        &self,
        room: &str,
        creds: Credentials<'_>,
        now: Instant,
    ) -> Result<Admitted, Denial> {
        let rules = self.rules();
        let policy = rules.policies.get(room);
        let claims = creds
            .token
            .map(|t| rules.keys.verify(t, room, rules.max_token_bytes))
            .transpose()?;
        let role = match policy::entry(policy, claims.as_ref().map(|c| c.role))? {
            policy::Step::Admit(role) => role,
            policy::Step::Password(role) => {
                let given = creds.password.ok_or(Denial::PasswordRequired)?;
                self.check_password(&policy.password, given, creds.ip, room, now)
                    .await?;
                role
            }
        };
        Ok(Admitted {
            role,
            name: claims.as_ref().and_then(|c| c.name.clone()),
            identity: claims.and_then(|c| c.sub.or(c.name)),
        })
    }

    async fn check_password(
        &self,
        phc: &str,
        given: &str,
        ip: Option<IpAddr>,
        room: &str,
        now: Instant,
    ) -> Result<(), Denial> {
        if !lock(&self.attempts).allowed(ip, room, now) {
            return Err(Denial::PasswordRateLimited);
        }
        let (phc, given) = (phc.to_string(), given.to_string());
        let ok = tokio::task::spawn_blocking(move || password::verify(&phc, &given))
            .await
            .unwrap_or(false);
        if ok {
            return Ok(());
        }
        lock(&self.attempts).failed(ip, room, now);
        Err(Denial::PasswordWrong)
    }
}

fn rules(config: &Config) -> Result<Rules, AccessError> {
    let auth = &config.auth;
    let mut declared = config.rooms.clone();
    if !auth.rooms_dir.trim().is_empty() {
        declared.extend(read_rooms_dir(Path::new(auth.rooms_dir.trim()))?);
    }
    for (name, policy) in &declared {
        policy
            .validate()
            .map_err(|e| AccessError(format!("rooms.{name:?}: {e}")))?;
    }
    let undeclared = RoomPolicy {
        access: auth.default_room,
        ..RoomPolicy::default()
    };
    let keys = Keys::from_config(&auth.keys, auth.token_leeway_secs).map_err(AccessError)?;
    Ok(Rules {
        policies: Policies {
            undeclared,
            declared,
        },
        keys,
        max_token_bytes: auth.max_token_bytes,
    })
}

/// Each `NAME.toml` of `dir` declares room NAME (its fields as under `[rooms."NAME"]`).
fn read_rooms_dir(dir: &Path) -> Result<BTreeMap<String, RoomPolicy>, AccessError> {
    let err = |e: String| AccessError(format!("auth.rooms_dir {}: {e}", dir.display()));
    let mut rooms = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| err(e.to_string()))? {
        let path = entry.map_err(|e| err(e.to_string()))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
        let policy: RoomPolicy = toml::from_str(&text)
            .map_err(|e| err(format!("{}: {}", path.display(), e.message())))?;
        rooms.insert(name.to_string(), policy);
    }
    Ok(rooms)
}
