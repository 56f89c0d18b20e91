//! Media plumbing: the MPEG-TS muxer of the synthetic source, the checks applied to segments
//! from elsewhere, and the bits of H.264 the master playlist needs.

pub mod h264;
pub mod ts;
pub mod tsinfo;
