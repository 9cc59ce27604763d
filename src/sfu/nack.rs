//! The NACK interceptors of every PeerConnection (server and headless client): a responder
//! that answers NACKs from a [`History`] per outgoing stream, and a generator that NACKs the
//! holes of every incoming stream on a [`NackPolicy`] and asks for a keyframe (PLI) when it
//! gives up on one. They replace webrtc-rs's pair, whose responder lost its history on a late
//! packet and whose generator asked every 100 ms, without limit, for as long as a hole was in
//! its 8,192-packet window (see `recovery.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Error, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader,
    RTPWriter,
};
use webrtc::rtcp::packet::Packet as RtcpPacket;
use webrtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use webrtc::rtcp::transport_feedbacks::transport_layer_nack::{
    nack_pairs_from_sequence_numbers, TransportLayerNack,
};
use webrtc::rtp::packet::Packet;

use super::kept::Kept;
use super::recovery::{Gaps, History, NackPolicy};
use crate::metrics::{inc, Metrics};
use crate::sync::lock;

type IResult<T> = Result<T, Error>;

/// Whether a stream negotiated generic NACK (video here; audio does not).
fn supports_nack(info: &StreamInfo) -> bool {
    info.rtcp_feedback
        .iter()
        .any(|fb| fb.typ == "nack" && fb.parameter.is_empty())
}

/// Builds a [`Responder`] per PeerConnection.
pub struct ResponderBuilder {
    pub history: usize,
    pub history_age: Duration,
    pub metrics: Arc<Metrics>,
}

impl InterceptorBuilder for ResponderBuilder {
    fn build(&self, _id: &str) -> IResult<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Responder {
            history: self.history,
            history_age: self.history_age,
            metrics: self.metrics.clone(),
            streams: Arc::default(),
        }))
    }
}

/// One outgoing stream: its history and the writer retransmissions go to.
struct SentStream {
    history: Mutex<History<Kept>>,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

type SentStreams = Arc<Mutex<HashMap<u32, Arc<SentStream>>>>;

pub struct Responder {
    history: usize,
    history_age: Duration,
    metrics: Arc<Metrics>,
    streams: SentStreams,
}

#[async_trait]
impl RTPWriter for SentStream {
    async fn write(&self, pkt: &Packet, a: &Attributes) -> IResult<usize> {
        lock(&self.history).add(pkt.header.sequence_number, Kept::new(pkt), Instant::now());
        self.next.write(pkt, a).await
    }
}

struct NackReader {
    parent: Arc<dyn RTCPReader + Send + Sync>,
    streams: SentStreams,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl RTCPReader for NackReader {
    async fn read(
        &self,
        buf: &mut [u8],
        a: &Attributes,
    ) -> IResult<(Vec<Box<dyn RtcpPacket + Send + Sync>>, Attributes)> {
        let (pkts, attr) = self.parent.read(buf, a).await?;
        for p in &pkts {
            let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() else {
                continue;
            };
            let Some(stream) = lock(&self.streams).get(&nack.media_ssrc).cloned() else {
                continue;
            };
            // Answered here, in the reader's task, rather than in a task per NACK: a
            // subscriber that floods NACKs slows its own RTCP reading, nothing else. What one
            // NACK can ask for is bounded by the history.
            let now = Instant::now();
            for seq in nack.nacks.iter().flat_map(|pair| pair.into_iter()) {
                let Some(packet) = lock(&stream.history).get(seq, now).and_then(|k| k.packet())
                else {
                    continue;
                };
                if stream.next.write(&packet, &Attributes::new()).await.is_ok() {
                    inc(&self.metrics.retransmitted_packets);
                }
            }
        }
        Ok((pkts, attr))
    }
}

#[async_trait]
impl Interceptor for Responder {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        Arc::new(NackReader {
            parent: reader,
            streams: self.streams.clone(),
            metrics: self.metrics.clone(),
        })
    }

    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        writer
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        if !supports_nack(info) {
            return writer;
        }
        let stream = Arc::new(SentStream {
            history: Mutex::new(History::new(self.history, self.history_age)),
            next: writer,
        });
        lock(&self.streams).insert(info.ssrc, stream.clone());
        stream
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        lock(&self.streams).remove(&info.ssrc);
    }

    async fn bind_remote_stream(
        &self,
        _info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        reader
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> IResult<()> {
        lock(&self.streams).clear();
        Ok(())
    }
}

/// Builds a [`Generator`] per PeerConnection.
pub struct GeneratorBuilder {
    pub policy: NackPolicy,
    /// How often due NACKs are looked for while some stream has a hole.
    pub tick: Duration,
    /// At most one PLI per stream per this, however many packets are given up.
    pub pli_interval: Duration,
    pub metrics: Arc<Metrics>,
}

impl InterceptorBuilder for GeneratorBuilder {
    fn build(&self, _id: &str) -> IResult<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Generator {
            shared: Arc::new(GenShared {
                policy: self.policy,
                tick: self.tick,
                pli_interval: self.pli_interval,
                metrics: self.metrics.clone(),
                streams: Mutex::default(),
                wake: Notify::new(),
                closed: Default::default(),
            }),
        }))
    }
}

/// One incoming stream's holes and when it last asked for a keyframe.
struct RecvStream {
    gaps: Mutex<Gaps>,
    last_pli: Mutex<Option<Instant>>,
}

struct GenShared {
    policy: NackPolicy,
    tick: Duration,
    pli_interval: Duration,
    metrics: Arc<Metrics>,
    streams: Mutex<HashMap<u32, Arc<RecvStream>>>,
    /// Woken by a reader that saw a new hole, so the NACK task sleeps while nothing is missing.
    wake: Notify,
    closed: std::sync::atomic::AtomicBool,
}

pub struct Generator {
    shared: Arc<GenShared>,
}

struct GapReader {
    parent: Arc<dyn RTPReader + Send + Sync>,
    stream: Arc<RecvStream>,
    shared: Arc<GenShared>,
}

#[async_trait]
impl RTPReader for GapReader {
    async fn read(&self, buf: &mut [u8], a: &Attributes) -> IResult<(Packet, Attributes)> {
        let (pkt, attr) = self.parent.read(buf, a).await?;
        let hole = {
            let mut gaps = lock(&self.stream.gaps);
            gaps.on_packet(pkt.header.sequence_number, Instant::now());
            !gaps.is_empty()
        };
        if hole {
            self.shared.wake.notify_one();
        }
        Ok((pkt, attr))
    }
}

impl GenShared {
    /// One pass over every stream: the NACKs and PLIs due now, and whether any hole is left.
    fn due(
        &self,
        now: Instant,
        sender_ssrc: u32,
    ) -> (Vec<Box<dyn RtcpPacket + Send + Sync>>, bool) {
        let mut out: Vec<Box<dyn RtcpPacket + Send + Sync>> = Vec::new();
        let mut pending = false;
        for (&ssrc, stream) in lock(&self.streams).iter() {
            let due = {
                let mut gaps = lock(&stream.gaps);
                let due = gaps.poll(now);
                pending |= !gaps.is_empty();
                due
            };
            if !due.nack.is_empty() {
                out.push(Box::new(TransportLayerNack {
                    sender_ssrc,
                    media_ssrc: ssrc,
                    nacks: nack_pairs_from_sequence_numbers(&due.nack),
                }));
            }
            if due.gave_up {
                let mut last = lock(&stream.last_pli);
                if last.is_none_or(|t| now.duration_since(t) >= self.pli_interval) {
                    *last = Some(now);
                    out.push(Box::new(PictureLossIndication {
                        sender_ssrc,
                        media_ssrc: ssrc,
                    }));
                }
            }
        }
        (out, pending)
    }

    /// Sends what is due every `tick` while a hole is open; sleeps until woken otherwise.
    async fn run(self: Arc<Self>, writer: Arc<dyn RTCPWriter + Send + Sync>) {
        use std::sync::atomic::Ordering;
        let sender_ssrc = rand::random::<u32>();
        while !self.closed.load(Ordering::Relaxed) {
            let (packets, pending) = self.due(Instant::now(), sender_ssrc);
            for p in packets {
                let any = p.as_any();
                let metric = if any.is::<TransportLayerNack>() {
                    &self.metrics.nacks_sent
                } else {
                    &self.metrics.plis_sent
                };
                if writer.write(&[p], &Attributes::new()).await.is_ok() {
                    inc(metric);
                }
            }
            if pending {
                tokio::time::sleep(self.tick).await;
            } else {
                self.wake.notified().await;
            }
        }
    }
}

#[async_trait]
impl Interceptor for Generator {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    /// Called once per PeerConnection: starts its NACK task, which ends on [`Generator::close`].
    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        tokio::spawn(self.shared.clone().run(writer.clone()));
        writer
    }

    async fn bind_local_stream(
        &self,
        _info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        writer
    }

    async fn unbind_local_stream(&self, _info: &StreamInfo) {}

    async fn bind_remote_stream(
        &self,
        info: &StreamInfo,
        reader: Arc<dyn RTPReader + Send + Sync>,
    ) -> Arc<dyn RTPReader + Send + Sync> {
        if !supports_nack(info) {
            return reader;
        }
        let stream = Arc::new(RecvStream {
            gaps: Mutex::new(Gaps::new(self.shared.policy)),
            last_pli: Mutex::new(None),
        });
        lock(&self.shared.streams).insert(info.ssrc, stream.clone());
        Arc::new(GapReader {
            parent: reader,
            stream,
            shared: self.shared.clone(),
        })
    }

    async fn unbind_remote_stream(&self, info: &StreamInfo) {
        lock(&self.shared.streams).remove(&info.ssrc);
    }

    async fn close(&self) -> IResult<()> {
        self.shared
            .closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        lock(&self.shared.streams).clear();
        // notify_one stores a permit, so a task about to wait wakes too.
        self.shared.wake.notify_one();
        Ok(())
    }
}
