//! OpenH264 (built from its bundled source) set up for a live test source: constrained
//! baseline, bitrate rate control without frame skipping, single-threaded, lowest complexity,
//! an IDR at every segment start.

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Level, Profile,
    QpRange, RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::OpenH264API;

use super::pattern::Frame;

pub struct H264Encoder {
    inner: Encoder,
    buf: Vec<u8>,
    /// OpenH264 initialises itself on the first frame (which is an IDR anyway); forcing an
    /// IDR before that would talk to an uninitialised encoder.
    started: bool,
}

pub struct EncodedFrame<'a> {
    /// Annex-B NAL units (SPS and PPS precede every IDR).
    pub data: &'a [u8],
    pub keyframe: bool,
}

fn level_for(width: usize, height: usize, fps: u32) -> Level {
    let mbs = width.div_ceil(16) * height.div_ceil(16);
    let mbps = mbs * fps as usize;
    match (mbs, mbps) {
        (..=1_620, ..=40_500) => Level::Level_3_0,
        (..=3_600, ..=108_000) => Level::Level_3_1,
        (..=5_120, ..=216_000) => Level::Level_3_2,
        (..=8_192, ..=245_760) => Level::Level_4_0,
        (..=8_704, ..=522_240) => Level::Level_4_2,
        _ => Level::Level_5_1,
    }
}

impl H264Encoder {
    pub fn new(
        width: usize,
        height: usize,
        fps: u32,
        bitrate_bps: u32,
        gop_frames: u32,
    ) -> anyhow::Result<Self> {
        let config = EncoderConfig::new()
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .rate_control_mode(RateControlMode::Bitrate)
            .skip_frames(false)
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .level(level_for(width, height, fps))
            .complexity(Complexity::Low)
            .num_threads(1)
            .qp(QpRange::new(12, 48))
            .scene_change_detect(false)
            .adaptive_quantization(false)
            .background_detection(false)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .intra_frame_period(IntraFramePeriod::from_num_frames(gop_frames));
        let inner = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| anyhow::anyhow!("openh264 init: {e}"))?;
        Ok(H264Encoder { inner, buf: Vec::with_capacity(256 * 1024), started: false })
    }

    /// Encode one frame; `force_idr` makes it an IDR (segment start).
    pub fn encode(
        &mut self,
        frame: &Frame,
        force_idr: bool,
        pts_ms: u64,
    ) -> anyhow::Result<EncodedFrame<'_>> {
        if force_idr && self.started {
            self.inner.force_intra_frame();
        }
        self.started = true;
        let bs = self
            .inner
            .encode_at(frame, openh264::Timestamp::from_millis(pts_ms))
            .map_err(|e| anyhow::anyhow!("openh264 encode: {e}"))?;
        let keyframe = matches!(bs.frame_type(), FrameType::IDR | FrameType::I);
        self.buf.clear();
        bs.write_vec(&mut self.buf);
        Ok(EncodedFrame { data: &self.buf, keyframe })
    }
}
