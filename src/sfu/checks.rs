//! The checks every client-supplied SDP and ICE candidate passes before it reaches a
//! PeerConnection: size limits, parse, track counts. Pure (no connection, no lock, no await) so
//! they can be property-tested on arbitrary input: each returns a typed [`SfuError`], never
//! panics.

use webrtc::ice::candidate::candidate_base::unmarshal_candidate;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;

use super::{IceCandidateInit, SfuError};

/// Largest SDP accepted from a client; signaling has its own, usually smaller, message limit.
pub const MAX_SDP_BYTES: usize = 256 * 1024;
/// Largest candidate line accepted.
pub const MAX_CANDIDATE_BYTES: usize = 1024;

/// A publisher offer that passed [`check_offer`].
#[derive(Debug)]
pub struct CheckedOffer {
    pub description: RTCSessionDescription,
    /// Audio and video m-sections in it (data channels and others are not tracks).
    pub media_sections: usize,
}

/// A publisher offer: at most [`MAX_SDP_BYTES`], parseable, with at most `max_tracks` declared
/// tracks and at most `max_tracks` audio/video m-sections.
pub fn check_offer(
    sdp: String,
    declared_tracks: usize,
    max_tracks: usize,
) -> Result<CheckedOffer, SfuError> {
    check_sdp_len(&sdp)?;
    if declared_tracks > max_tracks {
        return Err(SfuError::TooManyTracks(max_tracks));
    }
    let description = RTCSessionDescription::offer(sdp).map_err(bad_sdp)?;
    let parsed = description.unmarshal().map_err(bad_sdp)?;
    let media_sections = parsed
        .media_descriptions
        .iter()
        .filter(|m| matches!(m.media_name.media.as_str(), "audio" | "video"))
        .count();
    if media_sections > max_tracks {
        return Err(SfuError::TooManyTracks(max_tracks));
    }
    Ok(CheckedOffer {
        description,
        media_sections,
    })
}

/// A subscriber answer: at most [`MAX_SDP_BYTES`] and parseable.
pub fn check_answer(sdp: String) -> Result<RTCSessionDescription, SfuError> {
    check_sdp_len(&sdp)?;
    RTCSessionDescription::answer(sdp).map_err(bad_sdp)
}

/// A trickled client candidate: at most [`MAX_CANDIDATE_BYTES`] and a parseable candidate
/// line. `Ok(None)` for the browser's end-of-candidates marker (an empty line).
pub fn check_candidate(c: IceCandidateInit) -> Result<Option<RTCIceCandidateInit>, SfuError> {
    if c.candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(SfuError::BadCandidate(format!(
            "longer than {MAX_CANDIDATE_BYTES} bytes"
        )));
    }
    let value = c
        .candidate
        .strip_prefix("candidate:")
        .unwrap_or(&c.candidate);
    if value.is_empty() {
        return Ok(None);
    }
    unmarshal_candidate(value).map_err(|e| SfuError::BadCandidate(e.to_string()))?;
    Ok(Some(c.into()))
}

fn check_sdp_len(sdp: &str) -> Result<(), SfuError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SfuError::BadSdp(format!(
            "longer than {MAX_SDP_BYTES} bytes"
        )));
    }
    Ok(())
}

fn bad_sdp(e: webrtc::Error) -> SfuError {
    SfuError::BadSdp(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(line: &str) -> IceCandidateInit {
        IceCandidateInit {
            candidate: line.into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        }
    }

    #[test]
    fn host_candidate_passes_and_keeps_its_fields() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";
        let init = check_candidate(candidate(line)).unwrap().unwrap();
        assert_eq!(init.candidate, line);
        assert_eq!(init.sdp_mid.as_deref(), Some("0"));
        assert_eq!(init.sdp_mline_index, Some(0));
    }

    #[test]
    fn end_of_candidates_is_not_an_error() {
        assert!(check_candidate(candidate("")).unwrap().is_none());
        assert!(check_candidate(candidate("candidate:")).unwrap().is_none());
    }

    #[test]
    fn garbage_and_oversized_candidates_are_bad_candidates() {
        for line in ["nonsense", "candidate:1 1 udp", &"x".repeat(2000)] {
            assert!(
                matches!(
                    check_candidate(candidate(line)),
                    Err(SfuError::BadCandidate(_))
                ),
                "{line:.40}"
            );
        }
    }

    #[test]
    fn oversized_or_unparseable_sdp_is_bad_sdp() {
        let long = "v=0\r\n".repeat(MAX_SDP_BYTES);
        assert!(matches!(check_offer(long, 0, 4), Err(SfuError::BadSdp(_))));
        assert!(matches!(
            check_offer("hello".into(), 0, 4),
            Err(SfuError::BadSdp(_))
        ));
        assert!(matches!(
            check_answer("hello".into()),
            Err(SfuError::BadSdp(_))
        ));
    }

    #[test]
    fn too_many_declared_tracks_are_refused_before_parsing() {
        assert_eq!(
            check_offer("hello".into(), 5, 4).unwrap_err(),
            SfuError::TooManyTracks(4)
        );
    }
}
