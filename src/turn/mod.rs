//! TURN for clients whose network blocks UDP to the media port. The server is ICE-lite and
//! never uses TURN itself: a blocked client allocates a relay, and the relay sends UDP to the
//! SFU's media port on its behalf.
//!
//! - [`credentials`]: per-participant short-lived credentials (TURN REST scheme).
//! - [`IceServers`]: what one participant's join acknowledgement lists — `media.ice_servers`
//!   as configured, the external TURN server (`turn.urls`) with fresh credentials, and the
//!   embedded relay's URL with credentials of its own.
//! - [`relay`]: the embedded relay, TURN over TCP on the HTTP port, relaying only to the SFU.

pub mod credentials;
pub mod relay;

use std::time::{Duration, SystemTime};

use crate::config::{Config, IceServer, Secret};

/// Builds each participant's `ice_servers`. Holds the secrets; `Debug` shows none of them.
pub struct IceServers {
    fixed: Vec<IceServer>,
    external: Vec<String>,
    external_secret: Secret,
    ttl: Duration,
    embedded: Option<EmbeddedUrl>,
}

/// Where the embedded relay is reached, and the secret its credentials are made with.
pub struct EmbeddedUrl {
    /// Empty = the host the client's page came from.
    pub host: String,
    pub port: u16,
    pub secret: Secret,
}

impl std::fmt::Debug for IceServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServers")
            .field("fixed", &self.fixed)
            .field("external", &self.external)
            .field("embedded", &self.embedded.as_ref().map(|e| e.port))
            .finish_non_exhaustive()
    }
}

impl IceServers {
    /// `embedded` is set when the embedded relay runs.
    pub fn new(config: &Config, embedded: Option<EmbeddedUrl>) -> Self {
        Self {
            fixed: config.media.ice_servers.clone(),
            external: config.turn.urls.clone(),
            external_secret: config.turn.secret.clone(),
            ttl: Duration::from_secs(config.turn.ttl_secs),
            embedded,
        }
    }

    /// The list for `participant` (its public id), now. `page_host` is the `Host` the client
    /// used, port included or not.
    pub fn for_participant(&self, participant: &str, page_host: Option<&str>) -> Vec<IceServer> {
        self.at(participant, page_host, SystemTime::now())
    }

    fn at(&self, participant: &str, page_host: Option<&str>, now: SystemTime) -> Vec<IceServer> {
        let mut list = self.fixed.clone();
        let entry = |urls: Vec<String>, secret: &Secret| {
            let c = credentials::issue(secret.0.as_bytes(), participant, now, self.ttl);
            IceServer {
                urls,
                username: c.username,
                credential: c.password,
            }
        };
        if !self.external.is_empty() {
            list.push(entry(self.external.clone(), &self.external_secret));
        }
        if let Some(e) = &self.embedded {
            let host = Some(e.host.trim())
                .filter(|h| !h.is_empty())
                .or_else(|| page_host.and_then(host_part));
            if let Some(host) = host {
                let url = format!("turn:{host}:{}?transport=tcp", e.port);
                list.push(entry(vec![url], &e.secret));
            }
        }
        list
    }
}

/// The host of a `Host` header value (`example.org:8000`, `[::1]:8000`, `example.org`), if it
/// is something a URL can carry.
fn host_part(header: &str) -> Option<&str> {
    let header = header.trim();
    let host = if header.starts_with('[') {
        &header[..=header.find(']')?]
    } else {
        header.rsplit_once(':').map_or(header, |(h, _)| h)
    };
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(embedded: bool) -> IceServers {
        let mut config = Config::embedded();
        config.turn.urls = vec!["turn:127.0.0.1:3478?transport=tcp".into()];
        config.turn.secret = Secret("coturn-secret".into());
        config.turn.ttl_secs = 600;
        let embedded = embedded.then(|| EmbeddedUrl {
            host: String::new(),
            port: 8000,
            secret: Secret("relay-secret".into()),
        });
        IceServers::new(&config, embedded)
    }

    #[test]
    fn each_participant_gets_its_own_expiring_credentials() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let list = servers(false).at("alice", None, now);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].username, "1600:alice");
        assert_eq!(
            list[0].credential,
            credentials::password(b"coturn-secret", "1600:alice")
        );
        let bob = servers(false).at("bob", None, now);
        assert_ne!(bob[0].credential, list[0].credential);
    }

    #[test]
    fn embedded_relay_url_names_the_page_host_and_http_port() {
        let now = SystemTime::UNIX_EPOCH;
        let list = servers(true).at("p", Some("meet.example.org:8443"), now);
        assert_eq!(list[1].urls, ["turn:meet.example.org:8000?transport=tcp"]);
        assert_eq!(
            list[1].credential,
            credentials::password(b"relay-secret", &list[1].username)
        );
        let v6 = servers(true).at("p", Some("[::1]:8000"), now);
        assert_eq!(v6[1].urls, ["turn:[::1]:8000?transport=tcp"]);
        let odd = servers(true).at("p", Some("evil\"host"), now);
        assert_eq!(
            odd.len(),
            1,
            "a Host header no URL can carry gives no embedded entry"
        );
        let shown = format!("{:?}", servers(true));
        assert!(
            !shown.contains("relay-secret") && !shown.contains("coturn-secret"),
            "{shown}"
        );
    }
}
