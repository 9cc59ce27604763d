//! RTCP sender reports for every PeerConnection (server and headless client): each outgoing
//! stream that sent media in the current or the previous interval gets an SR every `interval`
//! (RFC 3550 §6.4: only active senders report), and the task sleeps while no stream sends.
//! Receivers need them for lip sync (NTP ↔ RTP time) and round-trip times. The report is what
//! webrtc-rs's sender-report interceptor computes; that one reported every stream every second
//! for the connection's whole life, sending or not, which made it the largest task in a profile
//! of near-idle participants (`docs/benchmarks.md`, "The fixed cost per connection"), and it
//! took an async lock per packet on every subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::{
    Attributes, Error, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader,
    RTPWriter,
};
use webrtc::rtcp::packet::Packet as RtcpPacket;
use webrtc::rtcp::sender_report::SenderReport;
use webrtc::rtp::extension::abs_send_time_extension::unix2ntp;
use webrtc::rtp::packet::Packet;

use super::activity::Activity;
use crate::sync::lock;

type IResult<T> = Result<T, Error>;

/// A stream that sent nothing for this many intervals stops reporting (RFC 3550 §6.4: a
/// participant that sent in neither of the last two intervals is not a sender).
const QUIET_INTERVALS: u8 = 2;

/// Builds a [`Reporter`] per PeerConnection.
pub struct ReporterBuilder {
    pub interval: Duration,
}

impl InterceptorBuilder for ReporterBuilder {
    fn build(&self, _id: &str) -> IResult<Arc<dyn Interceptor + Send + Sync>> {
        Ok(Arc::new(Reporter {
            shared: Arc::new(Shared {
                interval: self.interval,
                streams: Mutex::default(),
                activity: Activity::new(),
            }),
        }))
    }
}

/// One outgoing stream's counters, as an SR carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counters {
    ssrc: u32,
    clock_rate: u32,
    /// RTP timestamp of the last packet and when it was sent; `None` before the first one.
    last: Option<(u32, SystemTime)>,
    packets: u32,
    octets: u32,
    /// Intervals ended since the last packet.
    quiet: u8,
}

impl Counters {
    fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            clock_rate,
            last: None,
            packets: 0,
            octets: 0,
            quiet: 0,
        }
    }

    fn on_packet(&mut self, pkt: &Packet, now: SystemTime) {
        self.last = Some((pkt.header.timestamp, now));
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(pkt.payload.len() as u32);
        self.quiet = 0;
    }

    /// The report due at the end of an interval, if this stream is an active sender; counts
    /// the interval as quiet until the next packet.
    fn report(&mut self, now: SystemTime) -> Option<SenderReport> {
        let (rtp, at) = self.last?;
        if self.quiet >= QUIET_INTERVALS {
            return None;
        }
        self.quiet += 1;
        let elapsed = now.duration_since(at).unwrap_or_default().as_secs_f64();
        Some(SenderReport {
            ssrc: self.ssrc,
            ntp_time: unix2ntp(now),
            // The RTP time that corresponds to `now`, extrapolated from the last packet.
            rtp_time: rtp.wrapping_add((elapsed * f64::from(self.clock_rate)) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

struct Shared {
    interval: Duration,
    streams: Mutex<HashMap<u32, Arc<Mutex<Counters>>>>,
    activity: Activity,
}

impl Shared {
    /// The reports due now; `None` when no stream is an active sender any more.
    fn due(&self, now: SystemTime) -> Option<Vec<SenderReport>> {
        let streams: Vec<_> = lock(&self.streams).values().cloned().collect();
        let mut active = false;
        let mut out = Vec::new();
        for s in streams {
            let mut c = lock(&s);
            if let Some(sr) = c.report(now) {
                out.push(sr);
            }
            active |= c.last.is_some() && c.quiet < QUIET_INTERVALS;
        }
        (active || !out.is_empty()).then_some(out)
    }

    async fn run(self: Arc<Self>, writer: Arc<dyn RTCPWriter + Send + Sync>) {
        self.activity
            .run(self.interval, || async {
                let Some(reports) = self.due(SystemTime::now()) else {
                    return false;
                };
                for sr in reports {
                    let packet: Box<dyn RtcpPacket + Send + Sync> = Box::new(sr);
                    let _ = writer.write(&[packet], &Attributes::new()).await;
                }
                true
            })
            .await;
    }
}

pub struct Reporter {
    shared: Arc<Shared>,
}

struct Stream {
    counters: Arc<Mutex<Counters>>,
    shared: Arc<Shared>,
    next: Arc<dyn RTPWriter + Send + Sync>,
}

#[async_trait]
impl RTPWriter for Stream {
    async fn write(&self, pkt: &Packet, a: &Attributes) -> IResult<usize> {
        lock(&self.counters).on_packet(pkt, SystemTime::now());
        self.shared.activity.touch();
        self.next.write(pkt, a).await
    }
}

#[async_trait]
impl Interceptor for Reporter {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }

    /// Called once per PeerConnection: starts its report task, which ends on
    /// [`Reporter::close`].
    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
        tokio::spawn(self.shared.clone().run(writer.clone()));
        writer
    }

    async fn bind_local_stream(
        &self,
        info: &StreamInfo,
        writer: Arc<dyn RTPWriter + Send + Sync>,
    ) -> Arc<dyn RTPWriter + Send + Sync> {
        let counters = Arc::new(Mutex::new(Counters::new(info.ssrc, info.clock_rate)));
        lock(&self.shared.streams).insert(info.ssrc, counters.clone());
        Arc::new(Stream {
            counters,
            shared: self.shared.clone(),
            next: writer,
        })
    }

    async fn unbind_local_stream(&self, info: &StreamInfo) {
        lock(&self.shared.streams).remove(&info.ssrc);
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
        lock(&self.shared.streams).clear();
        self.shared.activity.close();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ts: u32, len: usize) -> Packet {
        let mut p = Packet::default();
        p.header.timestamp = ts;
        p.payload = vec![0u8; len].into();
        p
    }

    #[test]
    fn no_report_before_the_first_packet() {
        let mut c = Counters::new(7, 90_000);
        assert_eq!(c.report(SystemTime::now()), None);
    }

    #[test]
    fn a_report_counts_and_extrapolates_rtp_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut c = Counters::new(7, 90_000);
        c.on_packet(&packet(1000, 100), t0);
        c.on_packet(&packet(4000, 200), t0);
        let sr = c
            .report(t0 + Duration::from_millis(500))
            .expect("active sender");
        assert_eq!((sr.ssrc, sr.packet_count, sr.octet_count), (7, 2, 300));
        assert_eq!(sr.rtp_time, 4000 + 45_000);
        assert_eq!(sr.ntp_time, unix2ntp(t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_stream_quiet_for_two_intervals_stops_reporting_until_it_sends_again() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = Duration::from_secs(1);
        let mut c = Counters::new(7, 48_000);
        c.on_packet(&packet(0, 10), t0);
        assert!(c.report(t0 + s).is_some());
        assert!(c.report(t0 + 2 * s).is_some());
        assert!(c.report(t0 + 3 * s).is_none());
        c.on_packet(&packet(960, 10), t0 + 3 * s);
        let sr = c.report(t0 + 4 * s).expect("sending again");
        assert_eq!(sr.packet_count, 2);
    }
}
