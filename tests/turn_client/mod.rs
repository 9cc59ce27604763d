//! A small raw TURN-over-TCP client (RFC 5766) for the relay tests: Allocate with long-term
//! credentials, CreatePermission, and the error code of any refusal. Real bytes on a real
//! socket, against the embedded relay or coturn. Each test file uses part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use webrtc::stun::agent::TransactionId;
use webrtc::stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use webrtc::stun::error_code::ErrorCodeAttribute;
use webrtc::stun::integrity::MessageIntegrity;
use webrtc::stun::message::{
    Getter, Message, MessageType, Setter, CLASS_ERROR_RESPONSE, CLASS_REQUEST, METHOD_ALLOCATE,
    METHOD_CREATE_PERMISSION,
};
use webrtc::stun::textattrs::TextAttribute;
use webrtc::turn::proto::peeraddr::PeerAddress;
use webrtc::turn::proto::relayaddr::RelayedAddress;
use webrtc::turn::proto::reqtrans::RequestedTransport;
use webrtc::turn::proto::PROTO_UDP;

const WAIT: Duration = Duration::from_secs(10);

pub struct TurnTcp {
    stream: TcpStream,
    auth: Option<Auth>,
}

#[derive(Clone)]
struct Auth {
    username: String,
    password: String,
    realm: String,
    nonce: String,
}

/// A refusal: the STUN error code.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub u16);

impl TurnTcp {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TURN connect in time")
            .expect("TURN server accepts");
        Self { stream, auth: None }
    }

    /// Allocates a UDP relay with these credentials; the relayed address, or the refusal.
    pub async fn allocate(
        &mut self,
        username: &str,
        password: &str,
    ) -> Result<SocketAddr, Refused> {
        // The first request goes without credentials: the 401 carries the realm and nonce.
        let first = self.request(METHOD_ALLOCATE, allocate_attrs()).await;
        let code = error_code(&first).expect("an unauthenticated Allocate is refused");
        assert_eq!(code, 401, "asks for credentials");
        self.auth = Some(Auth {
            username: username.into(),
            password: password.into(),
            realm: text(&first, ATTR_REALM),
            nonce: text(&first, ATTR_NONCE),
        });
        let answer = self.request(METHOD_ALLOCATE, allocate_attrs()).await;
        if let Some(code) = error_code(&answer) {
            return Err(Refused(code));
        }
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&answer).expect("XOR-RELAYED-ADDRESS");
        Ok(SocketAddr::new(relayed.ip, relayed.port))
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), Refused> {
        let attrs: Vec<Box<dyn Setter>> = vec![Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })];
        let answer = self.request(METHOD_CREATE_PERMISSION, attrs).await;
        match error_code(&answer) {
            Some(code) => Err(Refused(code)),
            None => Ok(()),
        }
    }

    /// Whether the server has closed the connection (reads EOF or an error within the wait).
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(WAIT, self.stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    /// Sends one request (authenticated once credentials are known) and reads its answer.
    async fn request(
        &mut self,
        method: webrtc::stun::message::Method,
        attrs: Vec<Box<dyn Setter>>,
    ) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        if let Some(a) = self.auth.clone() {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                a.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, a.realm.clone())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, a.nonce.clone())));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                a.username, a.realm, a.password,
            )));
        }
        let mut m = Message::new();
        m.build(&setters).expect("request builds");
        self.stream.write_all(&m.raw).await.expect("request sent");
        tokio::time::timeout(WAIT, self.read_message())
            .await
            .expect("TURN server answers in time")
    }

    async fn read_message(&mut self) -> Message {
        loop {
            let mut header = [0u8; 4];
            self.stream
                .read_exact(&mut header)
                .await
                .expect("answer header");
            let len = u16::from_be_bytes([header[2], header[3]]) as usize;
            let is_stun = header[0] >> 6 == 0;
            let rest = if is_stun {
                16 + len
            } else {
                len.div_ceil(4) * 4
            };
            let mut body = vec![0u8; rest];
            self.stream
                .read_exact(&mut body)
                .await
                .expect("answer body");
            if !is_stun {
                continue; // ChannelData: not what these tests wait for.
            }
            let mut raw = header.to_vec();
            raw.extend_from_slice(&body);
            let mut m = Message::new();
            m.unmarshal_binary(&raw).expect("a STUN answer");
            return m;
        }
    }
}

fn allocate_attrs() -> Vec<Box<dyn Setter>> {
    vec![Box::new(RequestedTransport {
        protocol: PROTO_UDP,
    })]
}

fn error_code(m: &Message) -> Option<u16> {
    if m.typ.class != CLASS_ERROR_RESPONSE {
        return None;
    }
    let mut e = ErrorCodeAttribute::default();
    Some(e.get_from(m).map_or(0, |()| e.code.0))
}

fn text(m: &Message, attr: webrtc::stun::attributes::AttrType) -> String {
    TextAttribute::get_from_as(m, attr)
        .map(|t| t.text)
        .unwrap_or_default()
}
