//! Minimal MPEG-TS muxer for one H.264 video stream (what the synthetic source needs).
//!
//! Every segment starts with PAT + PMT so it decodes on its own; continuity counters and
//! timestamps carry on across segments, so the concatenation of consecutive segments is one
//! valid transport stream (players and `ffprobe` see continuous timestamps). Each access unit
//! is one PES packet with PTS (no B-frames, so DTS = PTS is implied) and a PCR in the first
//! TS packet; keyframes set `random_access_indicator`.

pub const TS_PACKET_LEN: usize = 188;
pub const PID_PAT: u16 = 0x0000;
pub const PID_PMT: u16 = 0x1000;
pub const PID_VIDEO: u16 = 0x0100;
/// `stream_type` of H.264 in a PMT.
pub const STREAM_TYPE_H264: u8 = 0x1B;
/// 90 kHz timestamps are 33 bits wide.
pub const PTS_MASK: u64 = (1 << 33) - 1;
/// PCR runs this far ahead of the frame it is sent with (lets decoders buffer a frame).
const PCR_LEAD_90K: u64 = 9_000;

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, no reflection, no final xor).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

#[derive(Default)]
pub struct TsMuxer {
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
}

fn next_cc(cc: &mut u8) -> u8 {
    let c = *cc;
    *cc = (*cc + 1) & 0x0F;
    c
}

/// Adaptation field options for the first packet of a PES.
struct Adaptation {
    random_access: bool,
    pcr: Option<u64>,
}

/// Write one 188-byte packet carrying as much of `payload` as fits; returns bytes consumed.
fn write_packet(
    out: &mut Vec<u8>,
    pid: u16,
    pusi: bool,
    cc: u8,
    af: Option<Adaptation>,
    payload: &[u8],
) -> usize {
    let af_min = match &af {
        Some(a) => 2 + if a.pcr.is_some() { 6 } else { 0 },
        None => 0,
    };
    let room = 184 - af_min;
    let n = payload.len().min(room);
    // Adaptation field total length (including its length byte) once stuffing is added.
    let af_total = if n < room || af.is_some() { 184 - n } else { 0 };
    let afc: u8 = if af_total > 0 { 0b11 } else { 0b01 };
    let start = out.len();
    out.push(0x47);
    out.push((u8::from(pusi) << 6) | ((pid >> 8) as u8 & 0x1F));
    out.push(pid as u8);
    out.push((afc << 4) | (cc & 0x0F));
    if af_total > 0 {
        out.push((af_total - 1) as u8);
        if af_total > 1 {
            let (ra, pcr) = match &af {
                Some(a) => (a.random_access, a.pcr),
                None => (false, None),
            };
            out.push((u8::from(ra) << 6) | (u8::from(pcr.is_some()) << 4));
            if let Some(base) = pcr {
                let base = base & PTS_MASK;
                out.push((base >> 25) as u8);
                out.push((base >> 17) as u8);
                out.push((base >> 9) as u8);
                out.push((base >> 1) as u8);
                out.push((((base & 1) as u8) << 7) | 0x7E);
                out.push(0);
            }
            out.resize(start + 4 + af_total, 0xFF);
        }
    }
    out.extend_from_slice(&payload[..n]);
    debug_assert_eq!(out.len() - start, TS_PACKET_LEN);
    n
}

fn write_psi(out: &mut Vec<u8>, pid: u16, cc: u8, section: &[u8]) {
    let mut payload = Vec::with_capacity(184);
    payload.push(0); // pointer_field
    payload.extend_from_slice(section);
    payload.extend_from_slice(&crc32_mpeg2(section).to_be_bytes());
    payload.resize(184, 0xFF);
    write_packet(out, pid, true, cc, None, &payload);
}

fn put_pts(out: &mut Vec<u8>, prefix: u8, pts: u64) {
    let p = pts & PTS_MASK;
    out.push((prefix << 4) | (((p >> 30) as u8 & 0x07) << 1) | 1);
    out.push((p >> 22) as u8);
    out.push((((p >> 15) as u8) << 1) | 1);
    out.push((p >> 7) as u8);
    out.push(((p as u8) << 1) | 1);
}

impl TsMuxer {
    pub fn new() -> Self {
        Self::default()
    }

    /// PAT and PMT; call at the start of every segment.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let pat = [
            0x00, // table_id
            0xB0,
            13, // section_syntax_indicator, section_length
            0x00,
            0x01, // transport_stream_id
            0xC1, // version 0, current_next
            0x00,
            0x00, // section_number, last_section_number
            0x00,
            0x01, // program_number 1
            0xE0 | (PID_PMT >> 8) as u8,
            PID_PMT as u8,
        ];
        let cc = next_cc(&mut self.cc_pat);
        write_psi(out, PID_PAT, cc, &pat);
        let pmt = [
            0x02,
            0xB0,
            18,
            0x00,
            0x01, // program_number
            0xC1,
            0x00,
            0x00,
            0xE0 | (PID_VIDEO >> 8) as u8,
            PID_VIDEO as u8, // PCR_PID
            0xF0,
            0x00, // program_info_length
            STREAM_TYPE_H264,
            0xE0 | (PID_VIDEO >> 8) as u8,
            PID_VIDEO as u8,
            0xF0,
            0x00, // ES_info_length
        ];
        let cc = next_cc(&mut self.cc_pmt);
        write_psi(out, PID_PMT, cc, &pmt);
    }

    /// One access unit (Annex-B NAL units from the encoder) as one PES packet.
    pub fn write_video(&mut self, out: &mut Vec<u8>, pts: u64, keyframe: bool, annexb: &[u8]) {
        let mut pes = Vec::with_capacity(annexb.len() + 20);
        pes.extend_from_slice(&[0x00, 0x00, 0x01, 0xE0, 0x00, 0x00]); // unbounded length (video)
        pes.push(0x80); // '10' marker, no scrambling, not aligned
        pes.push(0x80); // PTS only
        pes.push(5);
        put_pts(&mut pes, 0b0010, pts);
        // Access unit delimiter (primary_pic_type 7: any slice type), then the frame.
        pes.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x09, 0xF0]);
        pes.extend_from_slice(annexb);

        let mut pos = 0;
        let mut first = true;
        while pos < pes.len() {
            let af = first.then(|| Adaptation {
                random_access: keyframe,
                pcr: Some(pts.wrapping_sub(PCR_LEAD_90K) & PTS_MASK),
            });
            let cc = next_cc(&mut self.cc_video);
            pos += write_packet(out, PID_VIDEO, first, cc, af, &pes[pos..]);
            first = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_value() {
        // CRC-32/MPEG-2 check value for "123456789".
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
    }

    #[test]
    fn packets_are_aligned_and_sized() {
        let mut m = TsMuxer::new();
        let mut out = Vec::new();
        m.write_tables(&mut out);
        for len in [0usize, 1, 150, 170, 171, 172, 183, 184, 185, 1000, 5000] {
            let frame = vec![0xAB; len];
            m.write_video(&mut out, 900_000 + len as u64, len == 0, &frame);
        }
        assert_eq!(out.len() % TS_PACKET_LEN, 0);
        assert!(out.chunks(TS_PACKET_LEN).all(|p| p[0] == 0x47));
        let info = crate::media::tsinfo::inspect(&out).expect("own output parses");
        assert_eq!(info.video_pid, Some(PID_VIDEO));
    }
}
