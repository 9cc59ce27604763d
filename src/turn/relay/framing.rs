//! TURN over TCP as a datagram [`Conn`], so the `turn` crate's server (built for UDP
//! listeners) can serve a TCP connection.
//!
//! Over TCP, TURN needs no extra framing (RFC 5766 §2.1, §11.5): a STUN message carries its
//! length in bytes 2..4 (plus the 20-byte header), a ChannelData message in bytes 2..4 (plus
//! its 4-byte header, padded to a multiple of 4 on a stream). The top two bits tell them apart:
//! `00` STUN, `01` ChannelData.
//!
//! Every read first passes through the relay's [`PeerFilter`]: a CreatePermission or
//! ChannelBind naming a peer other than the SFU is answered 403 here and never reaches the
//! server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{watch, Mutex};
use webrtc::util::{self, Conn};

use super::peers::{PeerFilter, Verdict};

/// Largest message accepted from a client: the `turn` server reads into a 1,500-byte buffer,
/// and a browser's ChannelData is one UDP datagram of media.
pub const MAX_FRAME: usize = 1500;
/// How long a write may stay blocked (the client stopped reading) before the connection ends.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// One accepted TURN/TCP connection.
pub struct TcpConn {
    reader: Mutex<Reader>,
    writer: Mutex<OwnedWriteHalf>,
    local: SocketAddr,
    peer: SocketAddr,
    filter: Arc<PeerFilter>,
    /// Read deadlines: for the first message, then between messages.
    first_timeout: Duration,
    idle_timeout: Duration,
    /// Set to `true` when the connection ends, from either side or by shutdown.
    closed: watch::Sender<bool>,
}

struct Reader {
    half: OwnedReadHalf,
    got_one: bool,
}

impl TcpConn {
    pub fn new(
        stream: tokio::net::TcpStream,
        filter: Arc<PeerFilter>,
        first_timeout: Duration,
        idle_timeout: Duration,
    ) -> io::Result<Self> {
        let local = stream.local_addr()?;
        let peer = stream.peer_addr()?;
        let (read, write) = stream.into_split();
        Ok(Self {
            reader: Mutex::new(Reader {
                half: read,
                got_one: false,
            }),
            writer: Mutex::new(write),
            local,
            peer,
            filter,
            first_timeout,
            idle_timeout,
            closed: watch::channel(false).0,
        })
    }

    /// Resolves once the connection has ended.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Ends the connection: the next (or pending) read fails, which stops the server's loop.
    pub fn end(&self) {
        self.closed.send_replace(true);
    }

    /// Reads one whole message into `buf`; `Ok(None)` for one too big to serve (skipped).
    async fn read_frame(&self, reader: &mut Reader, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut header = [0u8; 4];
        reader.half.read_exact(&mut header).await?;
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let (total, padded) = match header[0] >> 6 {
            0b00 => (20 + len, 20 + len),
            0b01 => (4 + len, 4 + len.div_ceil(4) * 4),
            _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "not TURN")),
        };
        if padded > buf.len().min(MAX_FRAME) {
            skip(&mut reader.half, padded - 4).await?;
            return Ok(None);
        }
        buf[..4].copy_from_slice(&header);
        reader.half.read_exact(&mut buf[4..padded]).await?;
        Ok(Some(total))
    }

    async fn write_all(&self, bytes: &[u8]) -> util::Result<()> {
        let mut writer = self.writer.lock().await;
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.end();
                Err(e.into())
            }
            Err(_) => {
                self.end();
                Err(util::Error::Other("TURN client stopped reading".into()))
            }
        }
    }
}

async fn skip(half: &mut OwnedReadHalf, mut n: usize) -> io::Result<()> {
    let mut sink = [0u8; 512];
    while n > 0 {
        let take = n.min(sink.len());
        half.read_exact(&mut sink[..take]).await?;
        n -= take;
    }
    Ok(())
}

fn closed_error() -> util::Error {
    util::Error::Io(io::Error::from(io::ErrorKind::ConnectionAborted).into())
}

#[async_trait]
impl Conn for TcpConn {
    async fn connect(&self, _addr: SocketAddr) -> util::Result<()> {
        Err(util::Error::Other(
            "a TURN/TCP connection is already connected".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> util::Result<usize> {
        self.recv_from(buf).await.map(|(n, _)| n)
    }

    async fn recv_from(&self, buf: &mut [u8]) -> util::Result<(usize, SocketAddr)> {
        let mut closed = self.closed();
        let mut reader = self.reader.lock().await;
        loop {
            let limit = if reader.got_one {
                self.idle_timeout
            } else {
                self.first_timeout
            };
            let frame = tokio::select! {
                r = tokio::time::timeout(limit, self.read_frame(&mut reader, buf)) => r,
                _ = closed.wait_for(|c| *c) => return Err(closed_error()),
            };
            let n = match frame {
                Ok(Ok(Some(n))) => n,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    self.end();
                    return Err(e.into());
                }
                Err(_) => {
                    self.end();
                    return Err(util::Error::Other("TURN client idle".into()));
                }
            };
            reader.got_one = true;
            match self.filter.check_request(&buf[..n]) {
                Verdict::Pass => return Ok((n, self.peer)),
                Verdict::Answer(refusal) => {
                    self.write_all(&refusal).await?;
                }
            }
        }
    }

    async fn send(&self, buf: &[u8]) -> util::Result<usize> {
        self.send_to(buf, self.peer).await
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> util::Result<usize> {
        if *self.closed.borrow() {
            return Err(closed_error());
        }
        // ChannelData on a stream is padded to a multiple of 4 (RFC 5766 §11.5).
        let pad = if buf.first().is_some_and(|b| b >> 6 == 0b01) {
            (4 - buf.len() % 4) % 4
        } else {
            0
        };
        if pad == 0 {
            self.write_all(buf).await?;
        } else {
            let mut framed = Vec::with_capacity(buf.len() + pad);
            framed.extend_from_slice(buf);
            framed.resize(buf.len() + pad, 0);
            self.write_all(&framed).await?;
        }
        Ok(buf.len())
    }

    fn local_addr(&self) -> util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    async fn close(&self) -> util::Result<()> {
        self.end();
        let mut writer = self.writer.lock().await;
        let _ = writer.shutdown().await;
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}
