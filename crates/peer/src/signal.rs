//! Signaling payloads carried opaquely by the tracker's `signal` messages
//! (`docs/tracker-protocol.md`): an SDP offer or answer, one trickled ICE candidate, or bye.
//! The same JSON shapes a browser peer sends, so native and browser peers meet in one swarm.

use serde::{Deserialize, Serialize};

/// Largest SDP this client reads (the tracker bounds signal payloads too).
pub const MAX_SDP_LEN: usize = 16 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    /// One trickled candidate, `candidate:...` as in `RTCIceCandidate.candidate` (an empty
    /// string means end of candidates).
    Candidate {
        candidate: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
    },
    /// The sender closed (or refuses) the connection.
    Bye,
}

impl Signal {
    pub fn parse(raw: &str) -> Result<Signal, String> {
        let s: Signal = serde_json::from_str(raw).map_err(|e| format!("bad signal payload: {e}"))?;
        match &s {
            Signal::Offer { sdp } | Signal::Answer { sdp } if sdp.len() > MAX_SDP_LEN => {
                Err("SDP too long".into())
            }
            Signal::Candidate { candidate, .. } if candidate.len() > 512 => Err("candidate too long".into()),
            _ => Ok(s),
        }
    }

    pub fn to_raw(&self) -> Box<serde_json::value::RawValue> {
        let text = serde_json::to_string(self).expect("signals are plain data and always serialize");
        serde_json::value::RawValue::from_string(text).expect("serde_json output is valid JSON")
    }
}

/// The `a=mid:` of the first media section of an SDP (the DataChannel's), for trickled
/// candidates.
pub fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=mid:")).map(|m| m.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let o = Signal::Offer { sdp: "v=0\r\n".into() };
        assert_eq!(o.to_raw().get(), r#"{"kind":"offer","sdp":"v=0\r\n"}"#);
        assert_eq!(Signal::parse(r#"{"kind":"bye"}"#), Ok(Signal::Bye));
        let c = Signal::parse(
            r#"{"kind":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","mid":"0","x":1}"#,
        )
        .expect("parses with unknown fields");
        assert!(matches!(c, Signal::Candidate { mid: Some(ref m), .. } if m == "0"));
        assert!(Signal::parse(r#"{"kind":"nope"}"#).is_err());
        assert!(Signal::parse("[]").is_err());
        let long = format!(r#"{{"kind":"offer","sdp":"{}"}}"#, "a".repeat(MAX_SDP_LEN + 1));
        assert!(Signal::parse(&long).is_err());
        assert_eq!(first_mid("v=0\r\nm=application 9\r\na=mid:abc\r\n").as_deref(), Some("abc"));
    }
}
