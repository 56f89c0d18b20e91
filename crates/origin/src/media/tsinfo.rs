//! Checks a transport stream someone else produced (ffmpeg ingest, an upstream in relay mode)
//! before it is published, and reads what the master playlist needs from it.
//!
//! This is a syntax check, not a decoder: 188-byte packets with sync bytes, a PAT, a PMT, and
//! for H.264 the first SPS (codec string and picture size).

use super::h264::{find_sps, SpsInfo};
use super::ts::{STREAM_TYPE_H264, TS_PACKET_LEN};

/// `stream_type` of ADTS AAC.
const STREAM_TYPE_AAC: u8 = 0x0F;
/// Most bytes of the first video PES gathered to find the SPS.
const MAX_PES_SCAN: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TsError {
    #[error("empty segment")]
    Empty,
    #[error("length {0} is not a multiple of 188 bytes")]
    Length(usize),
    #[error("missing sync byte in packet {0}")]
    Sync(usize),
    #[error("no PAT/PMT in segment")]
    NoTables,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TsInfo {
    pub packets: usize,
    pub video_pid: Option<u16>,
    /// Stream types listed in the PMT, in order.
    pub stream_types: Vec<u8>,
    pub sps: Option<SpsInfo>,
}

impl TsInfo {
    /// `CODECS` attribute for the master playlist, when every stream is one we can name.
    pub fn codecs(&self) -> Option<String> {
        let mut out = Vec::new();
        for &t in &self.stream_types {
            match t {
                STREAM_TYPE_H264 => out.push(self.sps.as_ref()?.codec_string()),
                STREAM_TYPE_AAC => out.push("mp4a.40.2".to_owned()),
                _ => return None,
            }
        }
        (!out.is_empty()).then(|| out.join(","))
    }

    pub fn resolution(&self) -> Option<(u32, u32)> {
        self.sps.as_ref().map(|s| (s.width, s.height))
    }
}

fn payload(pkt: &[u8]) -> Option<&[u8]> {
    let afc = (pkt[3] >> 4) & 0b11;
    match afc {
        0b01 => Some(&pkt[4..]),
        0b11 => {
            let af_len = pkt[4] as usize;
            pkt.get(5 + af_len..)
        }
        _ => None,
    }
}

fn pid_of(pkt: &[u8]) -> u16 {
    (u16::from(pkt[1] & 0x1F) << 8) | u16::from(pkt[2])
}

fn pusi(pkt: &[u8]) -> bool {
    pkt[1] & 0x40 != 0
}

/// The section that starts in this payload (after `pointer_field`), if any.
fn section(pl: &[u8]) -> Option<&[u8]> {
    let ptr = *pl.first()? as usize;
    let s = pl.get(1 + ptr..)?;
    let len = ((usize::from(*s.get(1)?) & 0x0F) << 8) | usize::from(*s.get(2)?);
    s.get(..3 + len)
}

/// Validate the packet structure and read stream information.
pub fn inspect(data: &[u8]) -> Result<TsInfo, TsError> {
    if data.is_empty() {
        return Err(TsError::Empty);
    }
    if !data.len().is_multiple_of(TS_PACKET_LEN) {
        return Err(TsError::Length(data.len()));
    }
    let mut info = TsInfo { packets: data.len() / TS_PACKET_LEN, ..Default::default() };
    let mut pmt_pid = None;
    let mut pes = Vec::new();
    let mut pes_done = false;
    for (i, pkt) in data.chunks_exact(TS_PACKET_LEN).enumerate() {
        if pkt[0] != 0x47 {
            return Err(TsError::Sync(i));
        }
        let pid = pid_of(pkt);
        let Some(pl) = payload(pkt) else { continue };
        if pid == 0 && pusi(pkt) && pmt_pid.is_none() {
            // PAT: first program with a non-zero number.
            if let Some(s) = section(pl) {
                let body = s.get(8..s.len().saturating_sub(4)).unwrap_or(&[]);
                pmt_pid = body
                    .chunks_exact(4)
                    .find(|p| u16::from_be_bytes([p[0], p[1]]) != 0)
                    .map(|p| (u16::from(p[2] & 0x1F) << 8) | u16::from(p[3]));
            }
        } else if Some(pid) == pmt_pid && pusi(pkt) && info.stream_types.is_empty() {
            if let Some(s) = section(pl) {
                let end = s.len().saturating_sub(4);
                let pi_len =
                    s.get(10..12).map(|b| (usize::from(b[0] & 0x0F) << 8) | usize::from(b[1])).unwrap_or(0);
                let mut p = 12 + pi_len;
                while p + 5 <= end {
                    let st = s[p];
                    let es_pid = (u16::from(s[p + 1] & 0x1F) << 8) | u16::from(s[p + 2]);
                    let es_len = (usize::from(s[p + 3] & 0x0F) << 8) | usize::from(s[p + 4]);
                    info.stream_types.push(st);
                    if st == STREAM_TYPE_H264 && info.video_pid.is_none() {
                        info.video_pid = Some(es_pid);
                    }
                    p += 5 + es_len;
                }
            }
        } else if Some(pid) == info.video_pid && !pes_done {
            if pusi(pkt) {
                if !pes.is_empty() {
                    pes_done = true;
                    continue;
                }
                pes.extend_from_slice(pl);
            } else if !pes.is_empty() {
                pes.extend_from_slice(pl);
            }
            if pes.len() > MAX_PES_SCAN {
                pes_done = true;
            }
        }
    }
    if pmt_pid.is_none() || info.stream_types.is_empty() {
        return Err(TsError::NoTables);
    }
    if pes.len() > 9 {
        let hdr_len = 9 + pes[8] as usize;
        if let Some(es) = pes.get(hdr_len..) {
            info.sps = find_sps(es);
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage() {
        assert_eq!(inspect(&[]), Err(TsError::Empty));
        assert_eq!(inspect(&[0x47; 100]), Err(TsError::Length(100)));
        let mut d = vec![0x47u8; 188 * 3];
        d[188] = 0x46;
        assert_eq!(inspect(&d), Err(TsError::Sync(1)));
        // Well-formed packets of a PID nobody announced: no tables.
        let mut d = vec![0xFFu8; 188 * 2];
        d[0] = 0x47;
        d[1] = 0x01;
        d[3] = 0x10;
        d[188] = 0x47;
        d[189] = 0x01;
        d[191] = 0x11;
        assert_eq!(inspect(&d), Err(TsError::NoTables));
    }
}
