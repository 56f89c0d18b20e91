//! The synthetic live source: test pattern → OpenH264 → MPEG-TS segments → the store.
//!
//! All renditions share one schedule: frame `i` is due at `start + i / fps`, shows the wall
//! clock `start_wall + i / fps`, and has PTS `PTS_BASE + i · 90000 / fps`. Segment `k` holds
//! frames `k·n .. (k+1)·n` and starts with an IDR in every rendition, so all renditions have
//! the same boundaries and sequence numbers (ABR switching works) and timestamps run on
//! across segments. Sequence numbers start at `now / segment duration`, so a restarted origin
//! never reuses a number a CDN may have cached as immutable.

pub mod encoder;
pub mod font;
pub mod pattern;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{RenditionConfig, SyntheticConfig};
use crate::media::h264::find_sps;
use crate::media::ts::{TsMuxer, PTS_MASK};
use crate::store::{NewSegment, RenditionInfo, Store, Stream};
use encoder::H264Encoder;
use pattern::{Frame, Overlay, Pattern};

/// First PTS (1.4 s, as ffmpeg's TS muxer does): leaves room for the PCR lead.
pub const PTS_BASE: u64 = 126_000;

/// One rendition's encoder pipeline, independent of pacing (shared by the live source and the
/// benchmark).
pub struct RenditionEncoder {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    fps: u32,
    frames_per_segment: u32,
    pattern: Pattern,
    frame: Frame,
    encoder: H264Encoder,
    mux: TsMuxer,
    /// `CODECS` value, known after the first frame.
    pub codecs: Option<String>,
}

pub struct EncodedSegment {
    pub data: Vec<u8>,
    /// Time spent rendering, encoding and muxing (not waiting).
    pub busy: Duration,
}

impl RenditionEncoder {
    pub fn new(r: &RenditionConfig, s: &SyntheticConfig) -> anyhow::Result<Self> {
        let (w, h) = (r.width as usize, r.height as usize);
        Ok(RenditionEncoder {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            bitrate_kbps: r.bitrate_kbps,
            fps: s.fps,
            frames_per_segment: s.frames_per_segment(),
            pattern: Pattern::new(w, h, s.noise),
            frame: Frame::new(w, h),
            encoder: H264Encoder::new(w, h, s.fps, r.bitrate_kbps * 1000, s.frames_per_segment())
                .with_context(|| format!("encoder for {}", r.name))?,
            mux: TsMuxer::new(),
            codecs: None,
        })
    }

    /// Encode segment `index` (sequence number `seq`). `wall_ms(i)` is the clock shown on
    /// frame `i`; `before_frame(i)` runs before each frame (pacing) and aborts with `false`.
    pub fn encode_segment(
        &mut self,
        index: u64,
        seq: u64,
        wall_ms: impl Fn(u64) -> u64,
        mut before_frame: impl FnMut(u64) -> bool,
    ) -> anyhow::Result<Option<EncodedSegment>> {
        let n = u64::from(self.frames_per_segment);
        let fps = u64::from(self.fps);
        let expected = u64::from(self.bitrate_kbps) * 125 * n / fps;
        let mut data = Vec::with_capacity((expected + expected / 2) as usize);
        let mut busy = Duration::ZERO;
        for f in 0..n {
            let i = index * n + f;
            if !before_frame(i) {
                return Ok(None);
            }
            let t0 = Instant::now();
            if f == 0 {
                self.mux.write_tables(&mut data);
            }
            let overlay = Overlay { label: &self.name, frame_index: i, wall_ms: wall_ms(i), seq };
            self.pattern.render(i, &overlay, &mut self.frame);
            let enc = self.encoder.encode(&self.frame, f == 0, i * 1000 / fps)?;
            if f == 0 && !enc.keyframe {
                anyhow::bail!("encoder did not start segment {seq} of {} with a keyframe", self.name);
            }
            if self.codecs.is_none() {
                self.codecs = find_sps(enc.data).map(|s| s.codec_string());
            }
            let pts = (PTS_BASE + i * 90_000 / fps) & PTS_MASK;
            self.mux.write_video(&mut data, pts, enc.keyframe, enc.data);
            busy += t0.elapsed();
        }
        Ok(Some(EncodedSegment { data, busy }))
    }
}

/// The shared timeline of all renditions.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub start: Instant,
    pub start_wall_ms: u64,
    pub first_seq: u64,
    pub fps: u32,
    pub frames_per_segment: u32,
}

impl Schedule {
    pub fn new(s: &SyntheticConfig) -> Self {
        let wall = now_ms();
        Schedule {
            start: Instant::now(),
            start_wall_ms: wall,
            first_seq: wall / s.segment_duration_ms().max(1),
            fps: s.fps,
            frames_per_segment: s.frames_per_segment(),
        }
    }

    pub fn frame_wall_ms(&self, i: u64) -> u64 {
        self.start_wall_ms + i * 1000 / u64::from(self.fps)
    }

    pub fn frame_due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos(i * 1_000_000_000 / u64::from(self.fps))
    }

    pub fn segment_duration_ms(&self) -> u32 {
        (u64::from(self.frames_per_segment) * 1000 / u64::from(self.fps)) as u32
    }
}

/// Handle of a running synthetic source.
pub struct SyntheticHandle {
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Start the synthetic source of `stream_name` as tokio tasks (one blocking task per
/// rendition). It runs until `cancel` fires; an encoder error ends the task with that error.
pub fn spawn(
    store: Arc<Store>,
    stream: Arc<Stream>,
    cfg: &SyntheticConfig,
    cancel: CancellationToken,
) -> anyhow::Result<SyntheticHandle> {
    let sched = Schedule::new(cfg);
    let mut encoders = Vec::new();
    for r in &cfg.renditions {
        let enc = RenditionEncoder::new(r, cfg)?;
        store.set_info(
            &stream,
            &r.name,
            RenditionInfo {
                // TS overhead and rate-control overshoot: declare a little above the target.
                bandwidth: Some(u64::from(r.bitrate_kbps) * 1100),
                resolution: Some((r.width, r.height)),
                codecs: None,
                frame_rate: Some(f64::from(cfg.fps)),
                independent: true,
            },
        )?;
        encoders.push(enc);
    }
    let mut tasks = Vec::new();
    for enc in encoders {
        let (store, stream, cancel) = (store.clone(), stream.clone(), cancel.clone());
        tasks.push(tokio::task::spawn_blocking(move || run_rendition(store, stream, enc, sched, cancel)));
    }
    let supervisor_cancel = cancel.clone();
    let task = tokio::spawn(async move {
        let mut result = Ok(());
        for t in tasks {
            let r = t.await.map_err(|e| anyhow::anyhow!("synthetic task panicked: {e}")).and_then(|r| r);
            if let Err(e) = r {
                tracing::error!(error = %e, "synthetic source stopped");
                supervisor_cancel.cancel();
                result = Err(e);
            }
        }
        result
    });
    Ok(SyntheticHandle { cancel, task })
}

fn run_rendition(
    store: Arc<Store>,
    stream: Arc<Stream>,
    mut enc: RenditionEncoder,
    sched: Schedule,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let seg_ms = sched.segment_duration_ms();
    let mut busy_total = Duration::ZERO;
    let mut media_total = Duration::ZERO;
    let mut late_warned = false;
    tracing::info!(stream = %stream.name, rendition = %enc.name, width = enc.width, height = enc.height, kbps = enc.bitrate_kbps, fps = sched.fps, first_seq = sched.first_seq, "synthetic rendition started");
    for index in 0u64.. {
        let seq = sched.first_seq + index;
        let encoded = enc.encode_segment(
            index,
            seq,
            |i| sched.frame_wall_ms(i),
            |i| wait_until(sched.frame_due(i), &cancel),
        )?;
        let Some(seg) = encoded else { return Ok(()) };
        let pdt_ms = sched.start_wall_ms + index * u64::from(seg_ms);
        if index == 0 {
            if let Some(c) = enc.codecs.clone() {
                if let Some(mut info) = store.info(&stream, &enc.name) {
                    info.codecs = Some(c);
                    store.set_info(&stream, &enc.name, info)?;
                }
            }
        }
        let size = seg.data.len();
        store.publish(
            &stream,
            &enc.name,
            NewSegment {
                seq,
                duration_ms: seg_ms,
                pdt_ms,
                discontinuity: false,
                data: Bytes::from(seg.data),
            },
        )?;
        busy_total += seg.busy;
        media_total += Duration::from_millis(u64::from(seg_ms));
        let lag = Instant::now()
            .saturating_duration_since(sched.frame_due((index + 1) * u64::from(sched.frames_per_segment)));
        tracing::debug!(rendition = %enc.name, seq, bytes = size, busy_ms = seg.busy.as_millis() as u64, lag_ms = lag.as_millis() as u64, "segment published");
        if lag > Duration::from_millis(u64::from(seg_ms)) && !late_warned {
            tracing::warn!(rendition = %enc.name, lag_ms = lag.as_millis() as u64, "synthetic encoder is falling behind real time");
            late_warned = true;
        }
        if (index + 1) % 30 == 0 {
            let rtf = media_total.as_secs_f64() / busy_total.as_secs_f64().max(1e-9);
            tracing::info!(rendition = %enc.name, rtf = format!("{rtf:.2}"), "synthetic encoder real-time factor (media time / wall time spent encoding)");
        }
    }
    Ok(())
}

/// Sleep until `due`, waking regularly to notice cancellation. `false` when cancelled.
fn wait_until(due: Instant, cancel: &CancellationToken) -> bool {
    loop {
        if cancel.is_cancelled() {
            return false;
        }
        let now = Instant::now();
        if now >= due {
            return true;
        }
        std::thread::sleep((due - now).min(Duration::from_millis(50)));
    }
}
