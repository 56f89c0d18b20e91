//! Just enough H.264 bitstream parsing to describe a stream in a master playlist: the
//! `avc1.PPCCLL` codec string and the coded picture size from the first SPS.

/// What the SPS tells us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub width: u32,
    pub height: u32,
}

impl SpsInfo {
    /// RFC 6381 codec string, e.g. `avc1.42c01f`.
    pub fn codec_string(&self) -> String {
        format!("avc1.{:02x}{:02x}{:02x}", self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// Iterate the NAL units of an Annex-B byte stream (without start codes).
pub fn annexb_nals(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&s| {
            // The next start code begins 3 bytes before its payload; a 4-byte code has one
            // more zero in front that belongs to it, not to this NAL.
            let mut e = s - 3;
            while e > 0 && data[e - 1] == 0 {
                e -= 1;
            }
            e
        })
        .chain(std::iter::once(data.len()))
        .collect();
    starts.into_iter().zip(ends).filter(|(s, e)| s < e).map(move |(s, e)| &data[s..e])
}

/// Find the first SPS in an Annex-B stream and parse it.
pub fn find_sps(annexb: &[u8]) -> Option<SpsInfo> {
    annexb_nals(annexb).find(|n| n.first().map(|h| h & 0x1F) == Some(7)).and_then(parse_sps)
}

struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)).min(u64::from(u32::MAX)) as u32)
    }
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Parse an SPS NAL unit (header byte included). `None` if it is malformed or truncated.
pub fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal.len() < 4 || nal[0] & 0x1F != 7 {
        return None;
    }
    // Remove emulation-prevention bytes (00 00 03 → 00 00).
    let mut rbsp = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in &nal[1..] {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: rbsp, pos: 0 };
    let profile_idc = r.bits(8)? as u8;
    let constraint_flags = r.bits(8)? as u8;
    let level_idc = r.bits(8)? as u8;
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = 0;
    if matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()?.checked_add(1)?;
    let h_map = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        cl = r.ue()?;
        cr = r.ue()?;
        ct = r.ue()?;
        cb = r.ue()?;
    }
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, 0) => (2, 2),
        (2, 0) => (2, 1),
        _ => (1, 1),
    };
    let crop_x = if chroma_format_idc == 0 || separate_colour_plane == 1 { 1 } else { sub_w };
    let crop_y =
        (2 - frame_mbs_only) * if chroma_format_idc == 0 || separate_colour_plane == 1 { 1 } else { sub_h };
    let width = (w_mbs.checked_mul(16)?).checked_sub(crop_x * (cl.checked_add(cr)?))?;
    let height =
        ((2 - frame_mbs_only) * h_map.checked_mul(16)?).checked_sub(crop_y * (ct.checked_add(cb)?))?;
    if width == 0 || height == 0 || width > 16_384 || height > 16_384 {
        return None;
    }
    Some(SpsInfo { profile_idc, constraint_flags, level_idc, width, height })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_baseline_sps() {
        // SPS of a 1280x720 constrained-baseline stream (level 3.1), written by x264.
        let sps = [
            0x67, 0x42, 0xC0, 0x1F, 0xD9, 0x00, 0x50, 0x05, 0xBB, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
            0x00, 0x00, 0x03, 0x03, 0x20, 0xF1, 0x83, 0x24, 0x80,
        ];
        let info = parse_sps(&sps).expect("parses");
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!(info.codec_string(), "avc1.42c01f");
        // High profile 640x360 (x264 defaults): exercises the high-profile fields and cropping.
        let sps = [
            0x67, 0x64, 0x00, 0x1E, 0xAC, 0xD9, 0x40, 0xA0, 0x2F, 0xF9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
            0x01, 0x00, 0x00, 0x03, 0x00, 0x32, 0x0F, 0x16, 0x2D, 0x96,
        ];
        let info = parse_sps(&sps).expect("parses");
        assert_eq!((info.width, info.height), (640, 360));
        assert_eq!(info.codec_string(), "avc1.64001e");
    }

    #[test]
    fn nal_iteration_and_garbage() {
        let stream = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x65, 0x88];
        let nals: Vec<&[u8]> = annexb_nals(&stream).collect();
        assert_eq!(nals, vec![&[0x09, 0xF0][..], &[0x67, 0x42][..], &[0x65, 0x88][..]]);
        assert!(parse_sps(&[0x67, 0x42]).is_none());
        assert!(parse_sps(&[0x67, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00]).is_none());
    }
}
