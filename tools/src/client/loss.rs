//! Test-only inbound loss: an interceptor placed before the NACK generator that drops chosen
//! RTP packets the first time they arrive, so the generator sees a gap and asks for them, and
//! the retransmission (same sequence number) gets through.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::sync::lock;
use async_trait::async_trait;
use webrtc::interceptor::stream_info::StreamInfo;
use webrtc::interceptor::Error as IError;
use webrtc::interceptor::{
    Attributes, Interceptor, InterceptorBuilder, RTCPReader, RTCPWriter, RTPReader, RTPWriter,
};

/// Which inbound packets to drop: sequence numbers `seq % every == 0`, on streams that
/// negotiated NACK (video), each only once. Dropped packets are counted in [`LossSpec::dropped`].
#[derive(Debug, Clone)]
pub struct LossSpec {
    pub every: u16,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl LossSpec {
    pub fn every(every: u16) -> Self {
        Self {
            every: every.max(2),
            dropped: Arc::default(),
        }
    }
}

pub(crate) struct LossBuilder(pub LossSpec);

impl InterceptorBuilder for LossBuilder {
    fn build(&self, _id: &str) -> Result<Arc<dyn Interceptor + Send + Sync>, IError> {
        Ok(Arc::new(LossInterceptor {
            spec: self.0.clone(),
        }))
    }
}

struct LossInterceptor {
    spec: LossSpec,
}

struct DropReader {
    inner: Arc<dyn RTPReader + Send + Sync>,
    spec: LossSpec,
    /// Sequence numbers already dropped once (bounded).
    seen: Mutex<(HashSet<u16>, VecDeque<u16>)>,
}

#[async_trait]
impl RTPReader for DropReader {
    async fn read(
        &self,
        buf: &mut [u8],
        attributes: &Attributes,
    ) -> Result<(webrtc::rtp::packet::Packet, Attributes), IError> {
        loop {
            let (pkt, attrs) = self.inner.read(buf, attributes).await?;
            let seq = pkt.header.sequence_number;
            if seq % self.spec.every == 0 {
                let mut seen = lock(&self.seen);
                if seen.0.insert(seq) {
                    seen.1.push_back(seq);
                    if seen.1.len() > 4096 {
                        if let Some(old) = seen.1.pop_front() {
                            seen.0.remove(&old);
                        }
                    }
                    self.spec
                        .dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    continue;
                }
            }
            return Ok((pkt, attrs));
        }
    }
}

#[async_trait]
impl Interceptor for LossInterceptor {
    async fn bind_rtcp_reader(
        &self,
        reader: Arc<dyn RTCPReader + Send + Sync>,
    ) -> Arc<dyn RTCPReader + Send + Sync> {
        reader
    }
    async fn bind_rtcp_writer(
        &self,
        writer: Arc<dyn RTCPWriter + Send + Sync>,
    ) -> Arc<dyn RTCPWriter + Send + Sync> {
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
        if !info
            .rtcp_feedback
            .iter()
            .any(|f| f.typ == "nack" && f.parameter.is_empty())
        {
            return reader;
        }
        Arc::new(DropReader {
            inner: reader,
            spec: self.spec.clone(),
            seen: Mutex::default(),
        })
    }
    async fn unbind_remote_stream(&self, _info: &StreamInfo) {}
    async fn close(&self) -> Result<(), IError> {
        Ok(())
    }
}
