//! The synthetic test picture, written straight into I420 planes (no RGB conversion).
//!
//! What it contains and why:
//! - a scrolling textured background (sums of periodic tables): detail the encoder must code,
//!   but predictable by motion compensation, so it is cheap to encode;
//! - bouncing coloured boxes and a sweeping bar: visible motion, so a frozen player is obvious;
//! - a panel of fresh noise every frame: it cannot be predicted, so the rate controller always
//!   has somewhere to spend its budget and segments carry their real bitrate (P2P offload is
//!   measured in bytes; a flat picture would compress to almost nothing);
//! - burned-in text: rendition, UTC wall clock (`HH:MM:SS.mmm`), frame counter and segment
//!   number, so a viewer can see liveness and latency.

use super::font::{draw_text, text_size};
use crate::clock::hms_ms;

/// One I420 picture. Width and height are even.
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl Frame {
    pub fn new(width: usize, height: usize) -> Self {
        let (cw, ch) = (width / 2, height / 2);
        Frame { width, height, y: vec![16; width * height], u: vec![128; cw * ch], v: vec![128; cw * ch] }
    }
}

impl openh264::formats::YUVSource for Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }
    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }
    fn y(&self) -> &[u8] {
        &self.y
    }
    fn u(&self) -> &[u8] {
        &self.u
    }
    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// What to write on a frame besides the picture.
pub struct Overlay<'a> {
    pub label: &'a str,
    pub frame_index: u64,
    pub wall_ms: u64,
    pub seq: u64,
}

pub struct Pattern {
    width: usize,
    height: usize,
    /// Periodic luma texture along x and y (256 entries each, period 256 px).
    tex_x: [u8; 256],
    tex_y: [u8; 256],
    chroma: [u8; 256],
    noise_amp: u8,
    rng: u64,
}

/// Boxes: (size as a fraction of the height ×100, speed x, speed y, Y, U, V).
const BOXES: [(usize, i64, i64, u8, u8, u8); 4] = [
    (18, 7, 5, 82, 90, 240),    // red
    (14, -5, 6, 145, 54, 34),   // green
    (22, 4, -3, 41, 240, 110),  // blue
    (10, -9, -7, 210, 16, 146), // yellow
];

impl Pattern {
    /// `noise_amp` (0..=127) sets how much of the bit budget the noise panel can absorb.
    pub fn new(width: usize, height: usize, noise_amp: u8) -> Self {
        let mut tex_x = [0u8; 256];
        let mut tex_y = [0u8; 256];
        let mut chroma = [0u8; 256];
        for i in 0..256 {
            let a = i as f64 / 256.0 * std::f64::consts::TAU;
            // Several harmonics: edges and fine detail, all periodic in 256 px.
            let tx = 0.5 * (a).sin() + 0.3 * (5.0 * a).sin() + 0.2 * (23.0 * a).sin();
            let ty = 0.5 * (2.0 * a).cos() + 0.3 * (7.0 * a).sin() + 0.2 * (31.0 * a).cos();
            tex_x[i] = (60.0 + 50.0 * tx) as u8;
            tex_y[i] = (60.0 + 50.0 * ty) as u8;
            chroma[i] = (128.0 + 60.0 * (a).sin()) as u8;
        }
        Pattern {
            width,
            height,
            tex_x,
            tex_y,
            chroma,
            noise_amp: noise_amp.min(127),
            rng: 0x9E37_79B9_7F4A_7C15 ^ ((width as u64) << 32 | height as u64),
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Render frame `t` into `f` (which must have this pattern's size).
    pub fn render(&mut self, t: u64, overlay: &Overlay<'_>, f: &mut Frame) {
        let (w, h) = (self.width, self.height);
        debug_assert!(f.width == w && f.height == h);
        let scale_px = (h / 360).max(1); // motion scales with resolution so renditions match
        let dx = (t as usize * 3 * scale_px) & 255;
        let dy = (t as usize * scale_px) & 255;
        // Background luma: texture scrolling diagonally.
        for yy in 0..h {
            let ty = self.tex_y[(yy / scale_px + dy) & 255];
            let row = &mut f.y[yy * w..(yy + 1) * w];
            for (xx, px) in row.iter_mut().enumerate() {
                *px = self.tex_x[(xx / scale_px + dx) & 255] + ty;
            }
        }
        // Chroma: slow colour waves.
        let (cw, ch) = (w / 2, h / 2);
        let ct = t as usize;
        for yy in 0..ch {
            let v = self.chroma[(yy / scale_px + 2 * ct) & 255];
            let urow = &mut f.u[yy * cw..(yy + 1) * cw];
            for (xx, px) in urow.iter_mut().enumerate() {
                *px = self.chroma[(xx / scale_px + ct) & 255];
            }
            f.v[yy * cw..(yy + 1) * cw].fill(v);
        }
        // Sweeping vertical bar (one pass every 4 s at 30 fps).
        let bar_w = (w / 64).max(2) & !1;
        let bar_x = ((t as usize * w) / 120) % (w - bar_w);
        for yy in 0..h {
            f.y[yy * w + bar_x..yy * w + bar_x + bar_w].fill(235);
        }
        // Bouncing boxes.
        for &(size, sx, sy, by, bu, bv) in &BOXES {
            let s = ((h * size / 100) & !1).max(2);
            let bx = bounce(t as i64 * sx * scale_px as i64, w - s) & !1;
            let byy = bounce(t as i64 * sy * scale_px as i64, h - s) & !1;
            fill_rect(f, bx, byy, s, s, by, bu, bv);
        }
        // Noise panel: fresh every frame, unpredictable.
        if self.noise_amp > 0 {
            let (nx, ny) = ((w * 55 / 100) & !1, (h * 45 / 100) & !1);
            let (nw, nh) = ((w * 40 / 100) & !1, (h * 40 / 100) & !1);
            let amp = u64::from(self.noise_amp);
            let span = 2 * amp + 1;
            for yy in ny..ny + nh {
                let row = &mut f.y[yy * w + nx..yy * w + nx + nw];
                for chunk in row.chunks_mut(8) {
                    let r = self.next_rand();
                    for (k, px) in chunk.iter_mut().enumerate() {
                        let n = ((r >> (k * 8)) & 0xFF) * span / 256;
                        *px = (128 + n - amp) as u8;
                    }
                }
            }
        }
        // Text.
        let scale = (h / 180).max(1);
        let lines = [
            format!("SHOAL {} {}X{}", overlay.label, w, h),
            format!("UTC {}", hms_ms(overlay.wall_ms)),
            format!("FRAME {:07} SEQ {}", overlay.frame_index, overlay.seq),
        ];
        let margin = 4 * scale;
        for (i, line) in lines.iter().enumerate() {
            let (_, lh) = text_size(line, scale);
            draw_text(&mut f.y, w, h, margin, margin + i * lh, line, scale, 235, 16);
            // Neutral chroma under the text box keeps it readable on any background.
            let (tw, _) = text_size(line, scale);
            let (x0, y0) = (margin / 2, (margin + i * lh) / 2);
            for yy in y0..((margin + (i + 1) * lh) / 2).min(ch) {
                let end = ((margin + tw) / 2).min(cw);
                f.u[yy * cw + x0..yy * cw + end].fill(128);
                f.v[yy * cw + x0..yy * cw + end].fill(128);
            }
        }
    }
}

/// Position bouncing between 0 and `max` for a travelled distance `d`.
fn bounce(d: i64, max: usize) -> usize {
    if max == 0 {
        return 0;
    }
    let period = 2 * max as i64;
    let p = d.rem_euclid(period);
    (if p > max as i64 { period - p } else { p }) as usize
}

#[allow(clippy::too_many_arguments)]
fn fill_rect(f: &mut Frame, x: usize, y: usize, rw: usize, rh: usize, yv: u8, uv: u8, vv: u8) {
    let (w, h) = (f.width, f.height);
    let (x1, y1) = ((x + rw).min(w), (y + rh).min(h));
    for yy in y..y1 {
        f.y[yy * w + x..yy * w + x1].fill(yv);
    }
    let cw = w / 2;
    for yy in y / 2..y1 / 2 {
        f.u[yy * cw + x / 2..yy * cw + x1 / 2].fill(uv);
        f.v[yy * cw + x / 2..yy * cw + x1 / 2].fill(vv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_and_stay_in_range() {
        let (w, h) = (320, 180);
        let mut p = Pattern::new(w, h, 40);
        let mut a = Frame::new(w, h);
        let mut b = Frame::new(w, h);
        let ov = |i| Overlay { label: "T", frame_index: i, wall_ms: 1_000 * i, seq: 0 };
        p.render(0, &ov(0), &mut a);
        p.render(1, &ov(1), &mut b);
        let changed = a.y.iter().zip(&b.y).filter(|(x, y)| x != y).count();
        assert!(changed > w * h / 10, "consecutive frames must differ visibly ({changed} px)");
        // Luma stays within video range so nothing clips.
        assert!(a.y.iter().all(|&v| (10..=240).contains(&v)));
        assert_eq!(bounce(0, 10), 0);
        assert_eq!(bounce(15, 10), 5);
        assert_eq!(bounce(-3, 10), 3);
    }
}
