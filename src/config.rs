//! Configuration: the embedded default (`configs/default.toml`), an optional file laid over it,
//! and `SFU_LITE_<SECTION>_<FIELD>` environment overrides on top.
//!
//! Layers are merged as TOML trees before one strict deserialisation, so a file only names the
//! fields it changes, and an unknown or mistyped field fails start-up with its dotted name.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The default configuration, compiled into the binary.
pub const DEFAULT_TOML: &str = include_str!("../configs/default.toml");

/// Prefix of environment variables that override configuration fields.
pub const ENV_PREFIX: &str = "SFU_LITE_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Parse { path: String, message: String },
    #[error("config field `{field}`: {message}")]
    Field { field: String, message: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub signaling: SignalingConfig,
    pub media: MediaConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub static_dir: String,
    pub shutdown_grace_secs: u64,
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
    pub self_signed: bool,
    pub self_signed_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignalingConfig {
    pub announce_host_ips: bool,
    pub max_message_bytes: usize,
    pub events_per_second: u32,
    pub event_burst: u32,
    pub max_refused_events: u32,
    pub max_room_name_len: usize,
    pub max_display_name_len: usize,
    pub max_members_per_room: usize,
    pub max_rooms: usize,
    /// Chat bytes a room may fan out per second (a line's size times its recipients).
    pub room_chat_bytes_per_second: u64,
    /// The burst of that budget, in bytes.
    pub room_chat_burst_bytes: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub udp_port: u16,
    pub port_range: String,
    pub public_ips: Vec<IpAddr>,
    pub ips: Vec<IpAddr>,
    pub ice_servers: Vec<IceServer>,
    pub connect_timeout_secs: u64,
    pub ice_disconnected_timeout_ms: u64,
    pub ice_failed_timeout_ms: u64,
    pub max_tracks_per_participant: usize,
    pub subscriber_queue_packets: usize,
    pub keyframe_min_interval_ms: u64,
}

/// A STUN or TURN server handed to clients (and used by the server's own ICE agent).
/// `Debug` leaves the credential out, so logging a config never leaks it.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &if self.credential.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Config {
    /// The embedded default alone.
    pub fn embedded() -> Self {
        Self::load(None, std::iter::empty()).expect("embedded default config is valid")
    }

    /// Default, then `file` (if any), then `env` pairs (normally `std::env::vars()`).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = parse_tree("<embedded default>", DEFAULT_TOML)?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let layer = parse_tree(&path.display().to_string(), &text)?;
            merge(&mut tree, layer);
        }
        for (key, value) in env {
            if let Some(rest) = key.strip_prefix(ENV_PREFIX) {
                apply_env(&mut tree, rest, &value)?;
            }
        }
        let config: Config = serde_path_to_error(tree)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that cannot be expressed in the types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let field = |field: &str, message: &str| {
            Err(ConfigError::Field {
                field: field.into(),
                message: message.into(),
            })
        };
        let tls = &self.tls;
        if tls.cert.is_empty() != tls.key.is_empty() {
            return field("tls.cert", "tls.cert and tls.key must be given together");
        }
        if tls.self_signed && !tls.cert.is_empty() {
            return field(
                "tls.self_signed",
                "use either self_signed or cert/key, not both",
            );
        }
        if tls.self_signed && tls.self_signed_names.is_empty() {
            return field("tls.self_signed_names", "needs at least one name");
        }
        let s = &self.signaling;
        for (name, value) in [
            ("signaling.max_message_bytes", s.max_message_bytes),
            ("signaling.events_per_second", s.events_per_second as usize),
            ("signaling.event_burst", s.event_burst as usize),
            ("signaling.max_room_name_len", s.max_room_name_len),
            ("signaling.max_display_name_len", s.max_display_name_len),
            ("signaling.max_members_per_room", s.max_members_per_room),
            ("signaling.max_rooms", s.max_rooms),
            (
                "signaling.room_chat_bytes_per_second",
                s.room_chat_bytes_per_second as usize,
            ),
            (
                "signaling.room_chat_burst_bytes",
                s.room_chat_burst_bytes as usize,
            ),
            ("server.max_connections", self.server.max_connections),
            (
                "media.subscriber_queue_packets",
                self.media.subscriber_queue_packets,
            ),
            (
                "media.max_tracks_per_participant",
                self.media.max_tracks_per_participant,
            ),
            (
                "media.connect_timeout_secs",
                self.media.connect_timeout_secs as usize,
            ),
            (
                "media.ice_disconnected_timeout_ms",
                self.media.ice_disconnected_timeout_ms as usize,
            ),
            (
                "media.ice_failed_timeout_ms",
                self.media.ice_failed_timeout_ms as usize,
            ),
        ] {
            if value == 0 {
                return field(name, "must be greater than 0");
            }
        }
        if s.max_message_bytes > 16 * 1024 * 1024 {
            return field("signaling.max_message_bytes", "must be at most 16 MiB");
        }
        if let Err(message) = self.media.port_range() {
            return field("media.port_range", &message);
        }
        for server in &self.media.ice_servers {
            if server.urls.is_empty() {
                return field("media.ice_servers", "every entry needs at least one url");
            }
        }
        Ok(())
    }
}

impl MediaConfig {
    /// `port_range` parsed: `None` when empty (single muxed port).
    pub fn port_range(&self) -> Result<Option<(u16, u16)>, String> {
        let text = self.port_range.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let (lo, hi) = text
            .split_once('-')
            .ok_or_else(|| format!("expected \"LOW-HIGH\", got {text:?}"))?;
        let lo: u16 = lo.trim().parse().map_err(|e| format!("low port: {e}"))?;
        let hi: u16 = hi.trim().parse().map_err(|e| format!("high port: {e}"))?;
        if lo == 0 || lo > hi {
            return Err(format!("need 0 < LOW <= HIGH, got {lo}-{hi}"));
        }
        Ok(Some((lo, hi)))
    }

    /// The UDP port for muxed media given the HTTP listen port.
    pub fn effective_udp_port(&self, http_port: u16) -> u16 {
        if self.udp_port == 0 {
            http_port
        } else {
            self.udp_port
        }
    }
}

fn parse_tree(path: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>().map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.message().to_string(),
    })
}

/// Lays `layer` over `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `rest` is the variable name after the prefix, e.g. `SIGNALING_MAX_ROOMS`.
fn apply_env(tree: &mut toml::Table, rest: &str, value: &str) -> Result<(), ConfigError> {
    let lower = rest.to_ascii_lowercase();
    let unknown = || ConfigError::Field {
        field: format!("{ENV_PREFIX}{rest}"),
        message: "environment variable names no known config field".into(),
    };
    let (section, field) = lower.split_once('_').ok_or_else(unknown)?;
    let table = match tree.get_mut(section) {
        Some(toml::Value::Table(t)) => t,
        _ => return Err(unknown()),
    };
    if !table.contains_key(field) {
        return Err(unknown());
    }
    // Read the value as TOML so numbers, booleans and lists keep their types; otherwise a string.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    table.insert(field.to_string(), parsed);
    Ok(())
}

/// Deserialises the merged tree, naming the offending field on failure.
fn serde_path_to_error(tree: toml::Table) -> Result<Config, ConfigError> {
    // Deserialise section by section so an error names `section.field`.
    let mut probe = tree.clone();
    for section in ["server", "tls", "signaling", "media"] {
        let value = probe.remove(section).ok_or_else(|| ConfigError::Field {
            field: section.into(),
            message: "missing section".into(),
        })?;
        let result = match section {
            "server" => value.try_into::<ServerConfig>().map(drop),
            "tls" => value.try_into::<TlsConfig>().map(drop),
            "signaling" => value.try_into::<SignalingConfig>().map(drop),
            _ => value.try_into::<MediaConfig>().map(drop),
        };
        if let Err(e) = result {
            return Err(ConfigError::Field {
                field: section_field(section, &e.to_string()),
                message: e.to_string(),
            });
        }
    }
    if let Some(extra) = probe.keys().next() {
        return Err(ConfigError::Field {
            field: extra.clone(),
            message: "unknown section".into(),
        });
    }
    toml::Value::Table(tree)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Field {
            field: "config".into(),
            message: e.to_string(),
        })
}

/// Best effort at `section.field` from a serde message such as "unknown field `foo`".
fn section_field(section: &str, message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(|f| format!("{section}.{f}"))
        .unwrap_or_else(|| section.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn embedded_default_is_valid_and_safe() {
        let c = Config::embedded();
        assert_eq!(c.server.listen.port(), 8000);
        assert!(!c.signaling.announce_host_ips);
        assert!(c.media.ice_servers.is_empty());
        assert_eq!(c.signaling.max_members_per_room, 50);
        assert_eq!(c.signaling.max_message_bytes, 65536);
        assert_eq!(c.media.effective_udp_port(8000), 8000);
    }

    #[test]
    fn file_overrides_only_named_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[signaling]\nmax_members_per_room = 7\n").unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.signaling.max_members_per_room, 7);
        assert_eq!(c.signaling.max_rooms, 1000);
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("SFU_LITE_SERVER_LISTEN", "127.0.0.1:9"),
                ("SFU_LITE_SIGNALING_ANNOUNCE_HOST_IPS", "true"),
                ("SFU_LITE_MEDIA_PUBLIC_IPS", "[\"203.0.113.7\"]"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9");
        assert!(c.signaling.announce_host_ips);
        assert_eq!(c.media.public_ips.len(), 1);
    }

    #[test]
    fn debug_output_never_shows_a_turn_credential() {
        let c = Config::load(
            None,
            env(&[(
                "SFU_LITE_MEDIA_ICE_SERVERS",
                r#"[{ urls = ["turn:127.0.0.1:3478"], username = "u", credential = "hunter2" }]"#,
            )]),
        )
        .unwrap();
        assert_eq!(c.media.ice_servers[0].credential, "hunter2");
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn bad_field_is_named() {
        let err = Config::load(None, env(&[("SFU_LITE_SIGNALING_MAX_ROOMS", "\"many\"")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("signaling"), "{err}");
        let err = Config::load(None, env(&[("SFU_LITE_SIGNALING_NOPE", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SFU_LITE_SIGNALING_NOPE"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[media]\nudp_prot = 1\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("media.udp_prot"), "{err}");
        let err = Config::load(None, env(&[("SFU_LITE_MEDIA_PORT_RANGE", "9-3")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("media.port_range"), "{err}");
    }
}
