//! JSON types of the pingback role: the report every client POSTs to `/v1/pingback` (every
//! `pingback.interval_ms` of the join response, 10 s by default) and the figures the query
//! endpoints and the dashboard read. The contract is documented in `docs/pingback.md`.
//!
//! A report carries **counters since the previous report of the same session** (differences,
//! never totals), so a lost report loses only its own interval and a report counted twice would
//! double it: every report has a per-session sequence number and the server counts each
//! `(session_id, seq)` once. Every field is bounded ([`Report::validate`]); the server refuses a
//! batch with any invalid report as a whole, so a bad report never reaches the aggregates.
//!
//! Compatibility: within version 1 fields are only added. Clients omit fields they cannot
//! observe (defaults below); the server ignores fields it does not know.

use serde::{Deserialize, Serialize};

use crate::ids::valid_name;
use crate::ticket::MAX_TICKET_LEN;

/// Version of the report body (`v`).
pub const PINGBACK_VERSION: u32 = 1;
/// Path clients POST reports to.
pub const PINGBACK_PATH: &str = "/v1/pingback";
/// Largest request body the server reads (a batch of [`MAX_BATCH`] reports fits easily; one
/// report is about 600 bytes).
pub const MAX_PINGBACK_BODY: usize = 16 * 1024;
/// Most reports in one POST (a client that could not reach the server sends what it kept).
pub const MAX_BATCH: usize = 8;
/// Longest interval one report may cover.
pub const MAX_PERIOD_MS: u64 = 10 * 60 * 1000;
/// Oldest report accepted (how long a client may have kept it before it could send it).
pub const MAX_AGE_MS: u64 = 10 * 60 * 1000;
/// Largest sequence number.
pub const MAX_SEQ: u64 = 1_000_000_000;
/// Fastest transfer a report may claim, bytes per millisecond of its period (1 Gbit/s), plus one
/// second of slack.
pub const MAX_BYTES_PER_MS: u64 = 125_000;
/// Longest free-text label (platform, SDK name and version, reason).
pub const MAX_LABEL_LEN: usize = 32;
/// Longest locality label.
pub const MAX_LOCALITY_LEN: usize = 64;
/// Timer slack allowed when play and stall time are compared with the period.
pub const TIME_SLACK_MS: u64 = 2_000;
/// Longest startup time accepted.
pub const MAX_STARTUP_MS: u64 = 10 * 60 * 1000;
/// Largest distance behind the live edge accepted.
pub const MAX_LATENCY_MS: u64 = 60 * 60 * 1000;
/// Bounds of the count fields.
pub const MAX_STALLS: u64 = 10_000;
pub const MAX_SEGMENTS: u64 = 100_000;
pub const MAX_VERIFY_FAILURES: u64 = 1_000_000;
pub const MAX_CONNECT_ATTEMPTS: u64 = 100_000;
pub const MAX_PEERS: u32 = 1_000;

fn one() -> u32 {
    PINGBACK_VERSION
}

/// One client report: `POST /v1/pingback` with this object, or an array of up to
/// [`MAX_BATCH`] of them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`PINGBACK_VERSION`].
    #[serde(default = "one")]
    pub v: u32,
    /// `session_id` of the join response.
    pub session_id: String,
    /// `ticket` of the join response: proves the session came from a join (the server checks
    /// its signature with the tracker-ticket keys, not its expiry beyond a grace period).
    #[serde(default)]
    pub ticket: String,
    /// 1 for the session's first report, +1 for each next one. A report sent again (retry)
    /// keeps its number and is counted once.
    pub seq: u64,
    pub stream: String,
    /// Rendition played at the end of the period ("" = unknown).
    #[serde(default)]
    pub rendition: String,
    /// The join's P2P decision (`p2p` of the join response) — the session's experiment group,
    /// whatever happened afterwards.
    pub p2p: bool,
    /// The join's `p2p_reason` when `p2p` is false (`holdback` = control group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2p_reason: Option<String>,
    /// `web`, `linux`, `android`, ... (as in the join request).
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub sdk: String,
    #[serde(default)]
    pub sdk_version: String,
    /// Locality label the tracker gave the client ("" = none).
    #[serde(default)]
    pub locality: String,
    /// Wall time the counters cover, ms (time since the previous report, or since the session
    /// started for the first one).
    pub period_ms: u64,
    /// How long ago the report was made, ms (0 when sent at once; a client that kept it while
    /// the server was unreachable says how long). Measured on the client's monotonic clock.
    #[serde(default)]
    pub age_ms: u64,
    /// Segment bytes from the CDN (HTTP), all of them, including any later wasted.
    #[serde(default)]
    pub http_bytes: u64,
    /// Verification overhead fetched from the CDN (signed manifests).
    #[serde(default)]
    pub manifest_bytes: u64,
    /// Segment bytes received from peers and accepted.
    #[serde(default)]
    pub p2p_down_bytes: u64,
    /// Segment bytes sent to peers.
    #[serde(default)]
    pub p2p_up_bytes: u64,
    /// Bytes received and thrown away (duplicates, after a cancel, failed verification).
    #[serde(default)]
    pub wasted_bytes: u64,
    #[serde(default)]
    pub segments_verified: u64,
    /// Chunks or segments that failed verification.
    #[serde(default)]
    pub verify_failures: u64,
    /// Times playback stopped for lack of data after it had started.
    #[serde(default)]
    pub stalls: u64,
    /// Time spent stalled, ms.
    #[serde(default)]
    pub stall_ms: u64,
    /// Time spent playing, ms. Stall ratio = stall / (stall + play). A client that cannot see
    /// its player sends 0 for the three player fields and is left out of the stall ratio.
    #[serde(default)]
    pub play_ms: u64,
    /// Time from the start of the session to the first frame, ms: in the first report that
    /// knows it, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_ms: Option<u64>,
    /// Distance behind the live edge at the end of the period, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Peers with an open DataChannel at the end of the period.
    #[serde(default)]
    pub peers_connected: u32,
    /// Peer connections tried and opened during the period.
    #[serde(default)]
    pub connect_attempts: u64,
    #[serde(default)]
    pub connects_opened: u64,
}

/// Which experiment group a session belongs to, from its join decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// The API allowed P2P.
    P2p,
    /// The holdback (control) group: told to play CDN-only by hash.
    Control,
    /// CDN-only for another reason (switched off, protection, no origin key, ...).
    Cdn,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::P2p, Group::Control, Group::Cdn];

    pub fn name(self) -> &'static str {
        match self {
            Group::P2p => "p2p",
            Group::Control => "control",
            Group::Cdn => "cdn",
        }
    }

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.name() == s)
    }
}

/// Why a report was refused (the `message` of the 400 answer).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct ReportError {
    pub field: &'static str,
    pub why: String,
}

fn err(field: &'static str, why: impl Into<String>) -> ReportError {
    ReportError { field, why: why.into() }
}

/// `[A-Za-z0-9_.+-]`, at most `max` bytes (may be empty).
pub fn valid_label(s: &str, max: usize) -> bool {
    s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b))
}

/// Locality labels as the tracker writes them (`isp-a:eu-west`).
pub fn valid_locality(s: &str) -> bool {
    s.len() <= MAX_LOCALITY_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

impl Report {
    /// The session's experiment group.
    pub fn group(&self) -> Group {
        if self.p2p {
            Group::P2p
        } else if self.p2p_reason.as_deref() == Some("holdback") {
            Group::Control
        } else {
            Group::Cdn
        }
    }

    /// Every bound of `docs/pingback.md`; the first violated one is the error.
    pub fn validate(&self) -> Result<(), ReportError> {
        if self.v != PINGBACK_VERSION {
            return Err(err(
                "v",
                format!("version {} is not supported (expected {PINGBACK_VERSION})", self.v),
            ));
        }
        if !valid_name(&self.session_id) {
            return Err(err("session_id", "1-64 characters of [A-Za-z0-9_.-]"));
        }
        if self.ticket.len() > MAX_TICKET_LEN {
            return Err(err("ticket", format!("longer than {MAX_TICKET_LEN} bytes")));
        }
        if !(1..=MAX_SEQ).contains(&self.seq) {
            return Err(err("seq", format!("must be 1..={MAX_SEQ}")));
        }
        if !valid_name(&self.stream) {
            return Err(err("stream", "1-64 characters of [A-Za-z0-9_.-]"));
        }
        if !self.rendition.is_empty() && !valid_name(&self.rendition) {
            return Err(err("rendition", "empty or 1-64 characters of [A-Za-z0-9_.-]"));
        }
        if let Some(r) = &self.p2p_reason {
            if r.is_empty() || !valid_label(r, MAX_LABEL_LEN) {
                return Err(err("p2p_reason", format!("1-{MAX_LABEL_LEN} characters of [A-Za-z0-9_.+-]")));
            }
        }
        for (field, v) in
            [("platform", &self.platform), ("sdk", &self.sdk), ("sdk_version", &self.sdk_version)]
        {
            if !valid_label(v, MAX_LABEL_LEN) {
                return Err(err(field, format!("at most {MAX_LABEL_LEN} characters of [A-Za-z0-9_.+-]")));
            }
        }
        if !valid_locality(&self.locality) {
            return Err(err("locality", format!("at most {MAX_LOCALITY_LEN} characters of [A-Za-z0-9_.:-]")));
        }
        if self.period_ms > MAX_PERIOD_MS {
            return Err(err("period_ms", format!("at most {MAX_PERIOD_MS}")));
        }
        if self.age_ms > MAX_AGE_MS {
            return Err(err(
                "age_ms",
                format!("at most {MAX_AGE_MS} (older reports are dropped by the client)"),
            ));
        }
        let max_bytes = (self.period_ms + 1_000) * MAX_BYTES_PER_MS;
        for (field, v) in [
            ("http_bytes", self.http_bytes),
            ("manifest_bytes", self.manifest_bytes),
            ("p2p_down_bytes", self.p2p_down_bytes),
            ("p2p_up_bytes", self.p2p_up_bytes),
            ("wasted_bytes", self.wasted_bytes),
        ] {
            if v > max_bytes {
                return Err(err(field, format!("{v} bytes in {} ms is more than 1 Gbit/s", self.period_ms)));
            }
        }
        let max_time = self.period_ms + TIME_SLACK_MS;
        if self.stall_ms > max_time || self.play_ms > max_time || self.stall_ms + self.play_ms > max_time {
            return Err(err("stall_ms", "play_ms + stall_ms exceeds period_ms"));
        }
        for (field, v, max) in [
            ("stalls", self.stalls, MAX_STALLS),
            ("segments_verified", self.segments_verified, MAX_SEGMENTS),
            ("verify_failures", self.verify_failures, MAX_VERIFY_FAILURES),
            ("connect_attempts", self.connect_attempts, MAX_CONNECT_ATTEMPTS),
            ("connects_opened", self.connects_opened, MAX_CONNECT_ATTEMPTS),
        ] {
            if v > max {
                return Err(err(field, format!("at most {max}")));
            }
        }
        if self.stalls > 0 && self.stall_ms == 0 && self.play_ms == 0 {
            return Err(err("stalls", "stalls without play or stall time"));
        }
        if self.peers_connected > MAX_PEERS {
            return Err(err("peers_connected", format!("at most {MAX_PEERS}")));
        }
        if self.startup_ms.is_some_and(|s| s > MAX_STARTUP_MS) {
            return Err(err("startup_ms", format!("at most {MAX_STARTUP_MS}")));
        }
        if self.latency_ms.is_some_and(|s| s > MAX_LATENCY_MS) {
            return Err(err("latency_ms", format!("at most {MAX_LATENCY_MS}")));
        }
        Ok(())
    }
}

/// Parse a request body: one report object or an array of 1..=[`MAX_BATCH`] reports, every one
/// valid. The error names the report (`reports[2].stall_ms: ...`).
pub fn parse_batch(body: &[u8]) -> Result<Vec<Report>, BatchError> {
    if body.len() > MAX_PINGBACK_BODY {
        return Err(BatchError::TooLarge);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(format!("not JSON: {e}")))?;
    let items = match value {
        serde_json::Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(BatchError::Malformed(format!("a batch holds 1 to {MAX_BATCH} reports")));
            }
            items
        }
        obj @ serde_json::Value::Object(_) => vec![obj],
        _ => return Err(BatchError::Malformed("expected a report object or an array of reports".into())),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let r: Report =
            serde_json::from_value(item).map_err(|e| BatchError::Malformed(format!("reports[{i}]: {e}")))?;
        r.validate().map_err(|e| BatchError::Invalid(format!("reports[{i}].{e}")))?;
        out.push(r);
    }
    Ok(out)
}

/// Why a request body was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("body over {MAX_PINGBACK_BODY} bytes")]
    TooLarge,
    /// Not JSON, or not shaped like reports.
    #[error("{0}")]
    Malformed(String),
    /// Shaped like reports, but a value is out of bounds.
    #[error("{0}")]
    Invalid(String),
}

/// Answer to an accepted POST.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Reports counted now.
    pub accepted: u32,
    /// Reports already counted before (a retry): not counted again. The client forgets both.
    pub duplicates: u32,
}

/// Error codes of pingback answers (same `{error, message}` body as the API).
pub mod error_code {
    /// 400: not JSON, or not shaped like a report.
    pub const MALFORMED: &str = "malformed";
    /// 400: a field out of bounds.
    pub const INVALID_REPORT: &str = "invalid_report";
    /// 401: the ticket does not verify, or is for another session or stream.
    pub const BAD_TICKET: &str = "bad_ticket";
    /// 413.
    pub const TOO_LARGE: &str = "too_large";
    /// 422: the session claims more playing time than has passed since it first reported.
    pub const IMPLAUSIBLE: &str = "implausible";
    /// 503: the server tracks as many sessions as it may; retry later.
    pub const OVERLOADED: &str = "overloaded";
}

/// Figures of one aggregate (a window, or windows merged): what the query endpoints return.
/// Ratios are `None` when their denominator is zero (nothing to say), never 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Average concurrent sessions (session time reported / span).
    pub viewers: f64,
    /// Reports counted.
    pub reports: u64,
    pub http_bytes: f64,
    pub manifest_bytes: f64,
    pub p2p_bytes: f64,
    pub upload_bytes: f64,
    pub wasted_bytes: f64,
    /// Average rates over the span, Mbit/s.
    pub http_mbps: f64,
    pub p2p_mbps: f64,
    pub upload_mbps: f64,
    /// p2p / (p2p + http).
    pub offload: Option<f64>,
    /// 1 − (http + manifest) / (http + p2p − wasted): CDN bytes saved against a CDN-only
    /// player fetching exactly what was played; wasted bytes and verification overhead count
    /// against it (it may be negative).
    pub net_offload: Option<f64>,
    pub stalls: f64,
    pub stall_ms: f64,
    pub play_ms: f64,
    /// stall / (stall + play).
    pub stall_ratio: Option<f64>,
    /// Stalls per hour of watching.
    pub stalls_per_hour: Option<f64>,
    pub startup_samples: u64,
    pub startup_p50_ms: Option<f64>,
    pub startup_p95_ms: Option<f64>,
    pub latency_samples: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    /// Time-weighted average of open peer connections per session.
    pub peers_per_viewer: Option<f64>,
    pub connect_attempts: f64,
    pub connects_opened: f64,
    /// opened / attempts.
    pub connect_success: Option<f64>,
    pub segments_verified: f64,
    /// Verification failures (chunks or segments).
    pub integrity_failures: f64,
}

/// The dimensions of an aggregate. Empty strings mean "unknown"; `*` in a query answer means
/// "all values merged".
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKey {
    pub stream: String,
    pub rendition: String,
    pub locality: String,
    pub platform: String,
    pub group: String,
}

/// One point of a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Start of the span (Unix ms).
    pub start_ms: u64,
    /// Every report that can fall in the span has arrived (the span ended more than one
    /// report interval ago).
    pub complete: bool,
    #[serde(flatten)]
    pub figures: Figures,
}

/// `GET /v1/pingback/windows` answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowsAnswer {
    pub window_ms: u64,
    pub step_ms: u64,
    pub from_ms: u64,
    pub to_ms: u64,
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub key: GroupKey,
    pub points: Vec<Point>,
}

/// A protection decision (switch P2P off or on for a stream or a locality bucket).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at_ms: u64,
    pub stream: String,
    /// "" = the whole stream.
    pub locality: String,
    /// `off` (P2P switched off for new sessions) or `on`.
    pub action: String,
    /// Why, in words, with the figures the rule saw.
    pub reason: String,
    pub evidence: Evidence,
}

/// What the protection rule compared.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Watch time (play + stall), seconds, of P2P and control sessions in the evaluation span.
    pub p2p_watch_s: f64,
    pub control_watch_s: f64,
    pub p2p_stalls: f64,
    pub control_stalls: f64,
    pub p2p_stall_ratio: Option<f64>,
    pub control_stall_ratio: Option<f64>,
    /// One-sided p-value that P2P sessions stall no more often than control sessions.
    pub p_value: Option<f64>,
    /// Enough data in both groups for the rule to say anything.
    pub sufficient: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            v: 1,
            session_id: "5b0e4f3c9a7d41e0b2c6f1a8d3e97c10".into(),
            seq: 1,
            stream: "demo".into(),
            rendition: "720p".into(),
            p2p: true,
            platform: "linux".into(),
            sdk: "shoal-native".into(),
            sdk_version: "0.1.0".into(),
            period_ms: 10_000,
            http_bytes: 1_000_000,
            p2p_down_bytes: 3_000_000,
            play_ms: 9_500,
            stall_ms: 500,
            stalls: 1,
            startup_ms: Some(800),
            latency_ms: Some(6_000),
            ..Default::default()
        }
    }

    #[test]
    fn minimal_report_parses_with_defaults() {
        let body = br#"{"session_id":"s1","seq":1,"stream":"demo","p2p":false,"p2p_reason":"holdback","period_ms":0,"new_field":3}"#;
        let rs = parse_batch(body).expect("valid");
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].v, 1);
        assert_eq!(rs[0].group(), Group::Control);
        assert_eq!(rs[0].http_bytes, 0);
        let text = serde_json::to_string(&report()).expect("serialize");
        let back: Report = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, report());
    }

    #[test]
    fn batches_are_bounded_and_all_or_nothing() {
        let one = serde_json::to_string(&report()).expect("serialize");
        let batch = format!("[{one},{one}]");
        assert_eq!(parse_batch(batch.as_bytes()).expect("valid").len(), 2);
        let nine = format!("[{}]", [one.as_str(); 9].join(","));
        assert!(matches!(parse_batch(nine.as_bytes()), Err(BatchError::Malformed(_))));
        assert!(matches!(parse_batch(b"[]"), Err(BatchError::Malformed(_))));
        assert!(matches!(parse_batch(b"42"), Err(BatchError::Malformed(_))));
        assert!(matches!(parse_batch(b"{not json"), Err(BatchError::Malformed(_))));
        let big = vec![b' '; MAX_PINGBACK_BODY + 1];
        assert_eq!(parse_batch(&big), Err(BatchError::TooLarge));
        let mut bad = report();
        bad.stall_ms = 20_000;
        let mixed = format!("[{one},{}]", serde_json::to_string(&bad).expect("serialize"));
        match parse_batch(mixed.as_bytes()) {
            Err(BatchError::Invalid(m)) => assert!(m.starts_with("reports[1].stall_ms"), "{m}"),
            other => panic!("expected invalid: {other:?}"),
        }
        let wrong_type = br#"{"session_id":"s","seq":"one","stream":"demo","p2p":true,"period_ms":1}"#;
        assert!(matches!(parse_batch(wrong_type), Err(BatchError::Malformed(_))));
    }

    #[test]
    fn every_bound_is_checked() {
        assert_eq!(report().validate(), Ok(()));
        type Mutation = Box<dyn Fn(&mut Report)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("v", Box::new(|r| r.v = 2)),
            ("session_id", Box::new(|r| r.session_id = "a/b".into())),
            ("session_id", Box::new(|r| r.session_id = String::new())),
            ("ticket", Box::new(|r| r.ticket = "t".repeat(MAX_TICKET_LEN + 1))),
            ("seq", Box::new(|r| r.seq = 0)),
            ("seq", Box::new(|r| r.seq = MAX_SEQ + 1)),
            ("stream", Box::new(|r| r.stream = "x".repeat(65))),
            ("rendition", Box::new(|r| r.rendition = "../x".into())),
            ("p2p_reason", Box::new(|r| r.p2p_reason = Some("has space".into()))),
            ("platform", Box::new(|r| r.platform = "p".repeat(33))),
            ("sdk_version", Box::new(|r| r.sdk_version = "1.0\n".into())),
            ("locality", Box::new(|r| r.locality = "isp a".into())),
            ("period_ms", Box::new(|r| r.period_ms = MAX_PERIOD_MS + 1)),
            ("age_ms", Box::new(|r| r.age_ms = MAX_AGE_MS + 1)),
            ("http_bytes", Box::new(|r| r.http_bytes = 11_000 * MAX_BYTES_PER_MS + 1)),
            ("wasted_bytes", Box::new(|r| r.wasted_bytes = u64::MAX / 2)),
            ("stall_ms", Box::new(|r| r.play_ms = 12_000)),
            ("stalls", Box::new(|r| r.stalls = MAX_STALLS + 1)),
            ("stalls", Box::new(|r| (r.play_ms, r.stall_ms) = (0, 0))),
            ("verify_failures", Box::new(|r| r.verify_failures = MAX_VERIFY_FAILURES + 1)),
            ("peers_connected", Box::new(|r| r.peers_connected = MAX_PEERS + 1)),
            ("startup_ms", Box::new(|r| r.startup_ms = Some(MAX_STARTUP_MS + 1))),
            ("latency_ms", Box::new(|r| r.latency_ms = Some(MAX_LATENCY_MS + 1))),
        ];
        for (field, mutate) in cases {
            let mut r = report();
            mutate(&mut r);
            let e = r.validate().expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn groups_follow_the_join_decision() {
        let mut r = report();
        assert_eq!(r.group(), Group::P2p);
        r.p2p = false;
        r.p2p_reason = Some("holdback".into());
        assert_eq!(r.group(), Group::Control);
        r.p2p_reason = Some("protection".into());
        assert_eq!(r.group(), Group::Cdn);
        assert_eq!(Group::parse("control"), Some(Group::Control));
        assert_eq!(Group::parse("x"), None);
    }
}
