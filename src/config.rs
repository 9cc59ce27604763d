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
    pub turn: TurnConfig,
    pub auth: AuthConfig,
    pub cluster: ClusterConfig,
    /// Declared rooms, `[rooms."name"]` (see [`crate::access::policy`]).
    #[serde(default)]
    pub rooms: std::collections::BTreeMap<String, crate::access::RoomPolicy>,
}

/// TURN for clients (see `configs/default.toml` `[turn]`). `Debug` hides the secret.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    pub urls: Vec<String>,
    pub secret: Secret,
    pub ttl_secs: u64,
    pub embedded: bool,
    pub embedded_host: String,
}

/// `[cluster]`: several nodes sharing rooms through Redis (see `configs/default.toml`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Empty = a single node. May hold a password, hence a [`Secret`].
    pub redis_url: Secret,
    pub node_id: String,
    /// This node's own signaling URL, handed to joiners redirected here.
    pub url: String,
    pub heartbeat_ms: u64,
    pub node_ttl_ms: u64,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

/// `[auth]`: tokens, the rule for undeclared rooms, the admin API's key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Who may enter a room not declared under `[rooms]`: "open" or "invite" (token only).
    pub default_room: crate::access::policy::Entry,
    /// A directory of `NAME.toml` files, each declaring room NAME; empty = none.
    pub rooms_dir: String,
    /// Bearer key of the admin API (`/api/v1`); empty = the API is off (404). Never logged.
    pub admin_key: Secret,
    /// Tokens longer than this are refused before being parsed.
    pub max_token_bytes: usize,
    /// Clock skew allowed when checking a token's `exp` and `nbf`.
    pub token_leeway_secs: u64,
    /// Wrong room passwords allowed per minute from one address, and against one room.
    pub password_failures_per_address: u32,
    pub password_failures_per_room: u32,
    /// Token keys by name (`kid`).
    #[serde(default)]
    pub keys: std::collections::BTreeMap<String, crate::access::token::KeyConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub static_dir: String,
    pub shutdown_grace_secs: u64,
    pub max_connections: usize,
    /// Socket.IO sessions, and separately TCP connections, from one client address. 0 = none.
    pub max_connections_per_address: usize,
    /// New Socket.IO sessions per second from one address (token bucket). 0 = no limit.
    pub handshakes_per_address_per_second: u32,
    pub handshake_burst: u32,
    /// Open TCP connections in all; 0 = the open-file limit minus a reserve.
    pub max_tcp_connections: usize,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` header names the client (IPs or CIDRs).
    pub trusted_proxies: Vec<String>,
    /// A session that has not connected a namespace within this is closed.
    pub connect_timeout_secs: u64,
    /// Engine.IO heartbeat; a socket whose writes are stuck for `ping_timeout_secs` is cut.
    pub ping_interval_secs: u64,
    pub ping_timeout_secs: u64,
    /// Packets queued towards one client before further emits to it fail.
    pub send_queue_packets: usize,
    /// A connection must send a request's headers within this many seconds of its first byte.
    pub header_read_timeout_secs: u64,
    /// An open connection with no request in flight (and not a WebSocket) is closed after this.
    pub idle_timeout_secs: u64,
    /// Serve `/metrics` on this address instead of `listen`; empty = on `listen`.
    pub metrics_listen: String,
    /// Bearer key for `/metrics` on `listen` from other than loopback; empty = loopback only.
    pub metrics_key: Secret,
}

impl ServerConfig {
    /// `trusted_proxies` parsed.
    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|t| IpNet::parse(t))
            .collect()
    }

    /// `metrics_listen` parsed: `None` when empty.
    pub fn metrics_listen(&self) -> Result<Option<SocketAddr>, String> {
        let text = self.metrics_listen.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|e| format!("expected an address like 127.0.0.1:9100: {e}"))
    }
}

/// A string that `Debug` never shows (a key in the config).
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

/// An address block such as `10.0.0.0/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|e| format!("{text:?} is not an IP address or CIDR: {e}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
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
    /// Sockets on the tutorial's namespace `/`, whose every connect sends the whole roster to
    /// every member (O(N²) bytes); counted apart from `server.max_connections`.
    pub max_tutorial_sockets: usize,
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
    /// How long a connection that went down may take to come back (ICE restarts) before its
    /// participant is removed.
    pub ice_failed_timeout_ms: u64,
    pub max_tracks_per_participant: usize,
    pub subscriber_queue_packets: usize,
    pub keyframe_min_interval_ms: u64,
    /// A subscriber's downlink estimate before any feedback (kbit/s); see `docs/sfu.md`.
    pub downlink_initial_kbps: u64,
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
            ("signaling.max_tutorial_sockets", s.max_tutorial_sockets),
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
                "server.connect_timeout_secs",
                self.server.connect_timeout_secs as usize,
            ),
            (
                "server.ping_interval_secs",
                self.server.ping_interval_secs as usize,
            ),
            (
                "server.ping_timeout_secs",
                self.server.ping_timeout_secs as usize,
            ),
            ("server.send_queue_packets", self.server.send_queue_packets),
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs as usize,
            ),
            (
                "server.idle_timeout_secs",
                self.server.idle_timeout_secs as usize,
            ),
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
        if let Err(message) = self.server.trusted_proxies() {
            return field("server.trusted_proxies", &message);
        }
        if let Err(message) = self.server.metrics_listen() {
            return field("server.metrics_listen", &message);
        }
        if let Err(message) = self.media.port_range() {
            return field("media.port_range", &message);
        }
        let turn = &self.turn;
        if !turn.urls.is_empty() && turn.secret.is_empty() {
            return field("turn.secret", "required when turn.urls is set");
        }
        if let Some(url) = turn
            .urls
            .iter()
            .find(|u| !(u.starts_with("turn:") || u.starts_with("turns:")))
        {
            return field(
                "turn.urls",
                &format!("{url:?} is not a turn: or turns: URL"),
            );
        }
        if (turn.embedded || !turn.urls.is_empty()) && turn.ttl_secs == 0 {
            return field("turn.ttl_secs", "must be greater than 0");
        }
        let a = &self.auth;
        for (name, value) in [
            ("auth.max_token_bytes", a.max_token_bytes),
            (
                "auth.password_failures_per_address",
                a.password_failures_per_address as usize,
            ),
            (
                "auth.password_failures_per_room",
                a.password_failures_per_room as usize,
            ),
        ] {
            if value == 0 {
                return field(name, "must be greater than 0");
            }
        }
        if let Err(e) = crate::access::Access::new(self) {
            return field("auth", &e.0);
        }
        for server in &self.media.ice_servers {
            if server.urls.is_empty() {
                return field("media.ice_servers", "every entry needs at least one url");
            }
        }
        let c = &self.cluster;
        if c.enabled() {
            let url = &c.redis_url.0;
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return field("cluster.redis_url", "must be a redis:// or rediss:// URL");
            }
            if !(c.url.starts_with("http://") || c.url.starts_with("https://")) {
                return field(
                    "cluster.url",
                    "required with cluster.redis_url: this node's http(s):// URL",
                );
            }
            if c.heartbeat_ms == 0 || c.node_ttl_ms < 2 * c.heartbeat_ms {
                return field(
                    "cluster.node_ttl_ms",
                    "must be at least twice cluster.heartbeat_ms (one lost beat is no death)",
                );
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
    for section in [
        "server",
        "tls",
        "signaling",
        "media",
        "turn",
        "auth",
        "cluster",
    ] {
        let value = probe.remove(section).ok_or_else(|| ConfigError::Field {
            field: section.into(),
            message: "missing section".into(),
        })?;
        let result = match section {
            "server" => value.try_into::<ServerConfig>().map(drop),
            "tls" => value.try_into::<TlsConfig>().map(drop),
            "signaling" => value.try_into::<SignalingConfig>().map(drop),
            "turn" => value.try_into::<TurnConfig>().map(drop),
            "auth" => value.try_into::<AuthConfig>().map(drop),
            "cluster" => value.try_into::<ClusterConfig>().map(drop),
            _ => value.try_into::<MediaConfig>().map(drop),
        };
        if let Err(e) = result {
            return Err(ConfigError::Field {
                field: section_field(section, &e.to_string()),
                message: e.to_string(),
            });
        }
    }
    probe.remove("rooms");
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
        assert!(c.server.trusted_proxies.is_empty());
        assert!(c.server.metrics_listen().unwrap().is_none());
        assert!(c.server.max_connections_per_address > 0);
        assert!(c.server.connect_timeout_secs <= 10);
    }

    #[test]
    fn trusted_proxies_take_addresses_and_blocks() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap()));
        let err = Config::load(
            None,
            env(&[("SFU_LITE_SERVER_TRUSTED_PROXIES", "[\"10.0.0.0/33\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.trusted_proxies"), "{err}");
    }

    #[test]
    fn file_overrides_only_named_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[signaling]\nmax_members_per_room = 7\n").unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.signaling.max_members_per_room, 7);
        assert_eq!(c.signaling.max_rooms, 1000);
        assert_eq!(c.signaling.max_tutorial_sockets, 200);
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
    fn debug_output_never_shows_the_metrics_key() {
        let c = Config::load(None, env(&[("SFU_LITE_SERVER_METRICS_KEY", "s3cret-key")])).unwrap();
        assert_eq!(c.server.metrics_key.0, "s3cret-key");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-key"), "{shown}");
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
    fn debug_output_never_shows_the_turn_secret_and_urls_need_it() {
        let urls = (
            "SFU_LITE_TURN_URLS",
            r#"["turn:127.0.0.1:3478?transport=tcp"]"#,
        );
        let err = Config::load(None, env(&[urls])).unwrap_err().to_string();
        assert!(err.contains("turn.secret"), "{err}");
        let c = Config::load(None, env(&[urls, ("SFU_LITE_TURN_SECRET", "n0t-for-logs")])).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("n0t-for-logs"), "{shown}");
        let err = Config::load(
            None,
            env(&[
                ("SFU_LITE_TURN_URLS", r#"["stun:x"]"#),
                ("SFU_LITE_TURN_SECRET", "s"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("turn.urls"), "{err}");
    }

    #[test]
    fn rooms_load_from_tables_and_a_directory_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let rooms = dir.path().join("rooms");
        std::fs::create_dir(&rooms).unwrap();
        std::fs::write(rooms.join("board.toml"), "access = \"invite\"\n").unwrap();
        let path = dir.path().join("c.toml");
        let text = format!(
            "[auth]\nrooms_dir = {:?}\n[rooms.\"hall\"]\npublish = \"presenters\"\n",
            rooms.display().to_string()
        );
        std::fs::write(&path, text).unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        let access = crate::access::Access::new(&c).unwrap();
        let rules = access.rules();
        assert_eq!(
            rules.policies.get("board").access,
            crate::access::policy::Entry::Invite
        );
        assert_eq!(
            rules.policies.get("hall").publish,
            crate::access::policy::Publishers::Presenters
        );
        assert_eq!(
            rules.policies.get("other"),
            &crate::access::RoomPolicy::default()
        );
        std::fs::write(&path, "[rooms.\"hall\"]\npassword = \"plain text\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("auth") && err.contains("hall"), "{err}");
        let err = Config::load(None, env(&[("SFU_LITE_AUTH_DEFAULT_ROOM", "closed")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth"), "{err}");
    }

    #[test]
    fn a_cluster_needs_a_redis_url_and_this_nodes_url() {
        assert!(
            !Config::embedded().cluster.enabled(),
            "a single node by default"
        );
        let redis = ("SFU_LITE_CLUSTER_REDIS_URL", "redis://:pw@127.0.0.1:6379/");
        let err = Config::load(None, env(&[redis])).unwrap_err().to_string();
        assert!(err.contains("cluster.url"), "{err}");
        let url = ("SFU_LITE_CLUSTER_URL", "https://node1.example.com");
        let c = Config::load(None, env(&[redis, url])).unwrap();
        assert!(c.cluster.enabled());
        assert!(
            !format!("{c:?}").contains("pw@"),
            "the Redis password is never shown"
        );
        let bad = ("SFU_LITE_CLUSTER_REDIS_URL", "http://127.0.0.1:6379/");
        let err = Config::load(None, env(&[bad, url]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.redis_url"), "{err}");
        let beat = ("SFU_LITE_CLUSTER_HEARTBEAT_MS", "2000");
        let err = Config::load(None, env(&[redis, url, beat]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cluster.node_ttl_ms"), "{err}");
    }

    #[test]
    fn the_production_sample_needs_tokens_for_undeclared_rooms() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/production.toml");
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.auth.default_room, crate::access::policy::Entry::Invite);
        assert_eq!(
            Config::embedded().auth.default_room,
            crate::access::policy::Entry::Open
        );
        assert!(Config::embedded().auth.admin_key.is_empty());
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
