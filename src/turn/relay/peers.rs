//! The embedded relay relays to the SFU and nothing else.
//!
//! Two checks, one visible and one that cannot be bypassed:
//! - [`PeerFilter::check_request`]: a CreatePermission or ChannelBind whose peer is not one of
//!   the SFU's media addresses is answered `403 Forbidden` before the TURN server sees it.
//! - [`SfuOnlyConn`], the relay socket every allocation gets: it sends only to the SFU and
//!   drops datagrams from anyone else.
//!
//! The SFU's addresses are the ones a client can learn from its candidates: `media.public_ips`
//! and this host's own addresses, on the media port. Whichever one the client names, the relay
//! sends to the SFU over loopback (no NAT hairpin needed) and answers as that address.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use webrtc::stun::attributes::ATTR_XOR_PEER_ADDRESS;
use webrtc::stun::error_code::{ErrorCodeAttribute, CODE_FORBIDDEN};
use webrtc::stun::message::{
    Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, MAGIC_COOKIE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
};
use webrtc::turn::relay::RelayAddressGenerator;
use webrtc::util::{self, Conn};

use crate::sync::lock;

/// The SFU's media addresses a client may name as its peer.
#[derive(Debug)]
pub struct PeerFilter {
    ips: Vec<IpAddr>,
    port: u16,
    /// Where the relay really sends: the media socket over loopback.
    target: SocketAddr,
}

/// What to do with one message from a client.
pub enum Verdict {
    Pass,
    /// Answer this instead of serving the message.
    Answer(Vec<u8>),
}

impl PeerFilter {
    /// `media` is the SFU's bound media address; `public_ips` those it announces.
    pub fn new(media: SocketAddr, public_ips: &[IpAddr]) -> Self {
        let loopback: IpAddr = if media.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        };
        let target_ip = if media.ip().is_unspecified() {
            loopback
        } else {
            media.ip()
        };
        let mut ips: Vec<IpAddr> = public_ips.to_vec();
        ips.push(target_ip);
        if media.ip().is_unspecified() {
            ips.extend(
                if_addrs::get_if_addrs()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i.ip()),
            );
        }
        ips.sort();
        ips.dedup();
        Self {
            ips,
            port: media.port(),
            target: SocketAddr::new(target_ip, media.port()),
        }
    }

    pub fn allows(&self, peer: SocketAddr) -> bool {
        peer.port() == self.port && self.ips.contains(&peer.ip())
    }

    /// Refuses a CreatePermission or ChannelBind that names any peer but the SFU.
    pub fn check_request(&self, frame: &[u8]) -> Verdict {
        if frame.first().is_none_or(|b| b >> 6 != 0) {
            return Verdict::Pass; // ChannelData: the relay socket checks where it goes.
        }
        let mut m = Message::new();
        if m.unmarshal_binary(frame).is_err() {
            return Verdict::Pass; // The server answers malformed messages itself.
        }
        let names_peer = m.typ.class == CLASS_REQUEST
            && (m.typ.method == METHOD_CREATE_PERMISSION || m.typ.method == METHOD_CHANNEL_BIND);
        if !names_peer {
            return Verdict::Pass;
        }
        let refused = m
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
            .any(|a| xor_address(&a.value, &m.transaction_id.0).is_none_or(|p| !self.allows(p)));
        if !refused {
            return Verdict::Pass;
        }
        tracing::debug!("embedded TURN relay: refused a peer that is not this server");
        match forbidden(&m) {
            Some(answer) => Verdict::Answer(answer),
            None => Verdict::Answer(Vec::new()),
        }
    }
}

/// A `403 Forbidden` answer to `request`.
fn forbidden(request: &Message) -> Option<Vec<u8>> {
    let mut answer = Message::new();
    let setters: [Box<dyn Setter>; 3] = [
        Box::new(request.transaction_id),
        Box::new(MessageType::new(request.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code: CODE_FORBIDDEN,
            reason: b"this relay reaches its own server only".to_vec(),
        }),
    ];
    answer.build(&setters).ok()?;
    Some(answer.raw)
}

/// Decodes an XOR-PEER-ADDRESS value (RFC 5389 §15.2): family, port and address XORed with
/// the magic cookie (and, for IPv6, the transaction id).
fn xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&cookie);
    key[4..].copy_from_slice(transaction_id);
    let ip: IpAddr = match (value.get(1)?, value.len()) {
        (1, 8) => {
            let b: [u8; 4] = std::array::from_fn(|i| value[4 + i] ^ key[i]);
            b.into()
        }
        (2, 20) => {
            let b: [u8; 16] = std::array::from_fn(|i| value[4 + i] ^ key[i]);
            b.into()
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Gives every allocation an [`SfuOnlyConn`].
pub struct SfuOnlyRelays {
    pub filter: Arc<PeerFilter>,
}

#[async_trait]
impl RelayAddressGenerator for SfuOnlyRelays {
    fn validate(&self) -> Result<(), webrtc::turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        _use_ipv4: bool,
        _requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), webrtc::turn::Error> {
        // Bound next to the target so the kernel routes it over loopback.
        let bind = SocketAddr::new(self.filter.target.ip(), 0);
        let socket = tokio::net::UdpSocket::bind(bind).await?;
        let relayed = socket.local_addr()?;
        let conn = SfuOnlyConn {
            socket,
            filter: self.filter.clone(),
            named: Mutex::new(self.filter.target),
        };
        Ok((Arc::new(conn), relayed))
    }
}

/// An allocation's relay socket: to the SFU only, from the SFU only.
pub struct SfuOnlyConn {
    socket: tokio::net::UdpSocket,
    filter: Arc<PeerFilter>,
    /// The SFU address the client last named, which answers appear to come from.
    named: Mutex<SocketAddr>,
}

#[async_trait]
impl Conn for SfuOnlyConn {
    async fn connect(&self, _addr: SocketAddr) -> util::Result<()> {
        Err(util::Error::Other("relay sockets are not connected".into()))
    }

    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        loop {
            let (n, from) = self.socket.recv_from(buf).await?;
            if from == self.filter.target {
                return Ok((n, *lock(&self.named)));
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> util::Result<usize> {
        Err(util::Error::Other("relay sockets are not connected".into()))
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> util::Result<usize> {
        if !self.filter.allows(target) {
            return Err(util::Error::Other(
                "relay refuses a peer that is not this server".into(),
            ));
        }
        *lock(&self.named) = target;
        Ok(self.socket.send_to(buf, self.filter.target).await?)
    }

    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_media_port_on_the_servers_addresses_is_allowed() {
        let f = PeerFilter::new(
            "127.0.0.1:4000".parse().unwrap(),
            &["203.0.113.7".parse().unwrap()],
        );
        assert!(f.allows("127.0.0.1:4000".parse().unwrap()));
        assert!(f.allows("203.0.113.7:4000".parse().unwrap()));
        assert!(!f.allows("127.0.0.1:4001".parse().unwrap()));
        assert!(!f.allows("127.0.0.2:4000".parse().unwrap()));
        assert_eq!(f.target, "127.0.0.1:4000".parse::<SocketAddr>().unwrap());
    }

    proptest::proptest! {
        /// Client bytes, however malformed, never panic the filter or the classifier.
        #[test]
        fn client_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
                                    cookie in proptest::bool::ANY) {
            let mut frame = bytes;
            if cookie && frame.len() >= 20 {
                frame[0] = 0;
                frame[1] = 0x08; // CreatePermission request
                frame[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            let f = PeerFilter::new("127.0.0.1:4000".parse().unwrap(), &[]);
            let _ = f.check_request(&frame);
            let _ = super::super::classify(&frame);
            let _ = xor_address(&frame, &[0; 12]);
        }
    }

    #[test]
    fn xor_peer_address_decodes_ipv4() {
        // 127.0.0.1:4000 XOR the cookie.
        let port = 4000u16 ^ 0x2112;
        let ip = [127 ^ 0x21, 0x12, 0xA4, 1 ^ 0x42];
        let mut value = vec![0, 1];
        value.extend_from_slice(&port.to_be_bytes());
        value.extend_from_slice(&ip);
        assert_eq!(
            xor_address(&value, &[0; 12]),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(xor_address(&value[..6], &[0; 12]), None);
    }
}
