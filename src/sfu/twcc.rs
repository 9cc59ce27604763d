//! The transport-wide congestion control receiver of every PeerConnection (server and headless
//! client): it notes the arrival of each packet that carries a transport-cc sequence number and
//! sends the sender (a browser's send-side estimator) feedback every `interval` while packets
//! come. It replaces webrtc-rs's receiver, which costs what most connections cannot use: a
//! 100 ms ticker per PeerConnection for its whole life, also on subscriber connections where the
//! server receives no media (the largest single task in a profile of 31 idle participants,
//! `docs/benchmarks.md`), and a channel send with a wakeup of its task per received packet.
//! Here a packet is recorded under a plain lock in the reader that got it, and the feedback task
//! sleeps while nothing arrives. The feedback itself is webrtc-rs's `Recorder`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::twcc::Recorder;
use webrtc::interceptor::{
    Attributes, Error, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader,
    RTPWriter,
};
use webrtc::rtp::extension::transport_cc_extension::TransportCcExtension;
use webrtc::rtp::packet::Packet;
use webrtc::sdp::extmap::TRANSPORT_CC_URI;
use webrtc::util::Unmarshal;

use super::activity::Activity;
use crate::sync::lock;

type IResult<T> = Result<T, Error>;

/// Builds a [`Receiver`] per PeerConnection.
pub struct ReceiverBuilder {
    /// How often feedback goes out while packets arrive (webrtc-rs and Chromium: 100 ms).
    pub interval: Duration,
}

impl InterceptorBuilder for ReceiverBuilder {
    fn build(&self, _id: &str) -> IResult<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Receiver {
            shared: Arc::new(Shared {
                interval: self.interval,
                start: Instant::now(),
                recorder: Mutex::new(Recorder::new(rand::random::<u32>())),
                activity: Activity::new(),
            }),
        }))
    }
}

struct Shared {
    interval: Duration,
    /// Arrival times are microseconds since this instant (what `Recorder` expects).
    start: Instant,
    recorder: Mutex<Recorder>,
    activity: Activity,
}

impl Shared {
    fn record(&self, ssrc: u32, transport_seq: u16) {
        let arrival = self.start.elapsed().as_micros() as i64;
        lock(&self.recorder).record(ssrc, transport_seq, arrival);
        self.activity.touch();
    }

    /// Feedback every `interval` while packets arrive; asleep otherwise.
    async fn run(self: Arc<Self>, writer: Arc<dyn RTCPWriter + Send + Sync>) {
        self.activity
            .run(self.interval, || async {
                let packets = lock(&self.recorder).build_feedback_packet();
                // Fewer than two packets since the last feedback: the flow has stopped (a
                // lone packet is reported with the next ones).
                if packets.is_empty() {
                    return false;
                }
                let _ = writer.write(&packets, &Attributes::new()).await;
                true
            })
            .await;
    }
}

pub struct Receiver {
    shared: Arc<Shared>,
}

struct Stream {
    parent: Arc<dyn RTPReader + Send + Sync>,
    ext_id: u8,
    ssrc: u32,
    shared: Arc<Shared>,
}

#[async_trait]
impl RTPReader for Stream {
    async fn read(&self, buf: &mut [u8], a: &Attributes) -> IResult<(Packet, Attributes)> {
        let (pkt, attr) = self.parent.read(buf, a).await?;
        if let Some(mut ext) = pkt.header.get_extension(self.ext_id) {
            if let Ok(tcc) = TransportCcExtension::unmarshal(&mut ext) {
                self.shared.record(self.ssrc, tcc.transport_sequence);
            }
        }
        Ok((pkt, attr))
    }
}

#[async_trait]
impl Interceptor for Receiver {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    /// Called once per PeerConnection: starts its feedback task, which ends on
    /// [`Receiver::close`].
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
        // Extension id 0 is invalid: the stream did not negotiate transport-cc.
        let Some(ext_id) = info
            .rtp_header_extensions
            .iter()
            .find(|e| e.uri == TRANSPORT_CC_URI)
            .map(|e| e.id as u8)
            .filter(|&id| id != 0)
        else {
            return reader;
        };
        Arc::new(Stream {
            parent: reader,
            ext_id,
            ssrc: info.ssrc,
            shared: self.shared.clone(),
        })
    }

    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}

    async fn close(&self) -> IResult<()> {
        self.shared.activity.close();
        Ok(())
    }
}
