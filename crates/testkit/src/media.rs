//! Known-good live HLS made by ffmpeg, to test the harness (and later players) apart from
//! Shoal's own origin: `testsrc2` colour bars with the wall clock burned in, H.264, 2 s
//! segments with PROGRAM-DATE-TIME, served by `web/test/static-server.mjs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::browser::{web_dir, BrowserEnv};
use crate::netns::Netns;
use crate::process::Proc;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

/// ffmpeg writing a live HLS stream (`master.m3u8` -> `stream.m3u8`) into a directory.
#[derive(Debug)]
pub struct FfmpegLiveHls {
    pub proc: Proc,
    pub dir: PathBuf,
}

impl FfmpegLiveHls {
    /// Starts ffmpeg writing into `dir` (created) and waits until the media playlist lists
    /// `min_segments` segments. Logs go to `log_dir`.
    pub fn start(dir: &Path, log_dir: &Path, min_segments: usize) -> Result<FfmpegLiveHls> {
        anyhow::ensure!(
            Path::new(FONT).is_file(),
            "{FONT} missing (Debian fonts-dejavu-core): run scripts/install-deps.sh"
        );
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let clock = format!(
            "drawtext=fontfile={FONT}:text='%{{localtime\\:%H\\\\\\:%M\\\\\\:%S}}':fontsize=36:\
             fontcolor=white:box=1:boxcolor=black@0.6:x=20:y=h-th-20"
        );
        let mut proc = Proc::builder("ffmpeg", "ffmpeg")
            .args(["-hide_banner", "-loglevel", "warning", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-vf", &clock])
            .args(["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
            .args(["-b:v", "800k", "-maxrate", "800k", "-bufsize", "1600k"])
            .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args(["-f", "hls", "-hls_time", "2", "-hls_list_size", "6"])
            .args(["-hls_flags", "delete_segments+program_date_time+independent_segments"])
            .args(["-master_pl_name", "master.m3u8", "stream.m3u8"])
            .current_dir(dir)
            .log_dir(log_dir)
            .spawn()
            .context("starting ffmpeg (Debian package ffmpeg: scripts/install-deps.sh)")?;
        let playlist = dir.join("stream.m3u8");
        let deadline =
            Instant::now() + Duration::from_secs(30) + Duration::from_secs(2 * min_segments as u64);
        loop {
            let segments = std::fs::read_to_string(&playlist)
                .map(|p| p.lines().filter(|l| l.ends_with(".ts")).count())
                .unwrap_or(0);
            if segments >= min_segments && dir.join("master.m3u8").is_file() {
                return Ok(FfmpegLiveHls { proc, dir: dir.to_path_buf() });
            }
            if let Some(status) = proc.try_exit()? {
                bail!(
                    "ffmpeg exited ({status}) before writing {min_segments} segments\n{}",
                    proc.log_tails()
                );
            }
            if Instant::now() > deadline {
                bail!("ffmpeg wrote fewer than {min_segments} segments in time\n{}", proc.log_tails());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `web/test/static-server.mjs` serving `root` on 127.0.0.1 inside `ns`; returns the process
/// and its base URL (`http://127.0.0.1:PORT`).
pub fn static_server(ns: &Netns, root: &Path, log_dir: &Path) -> Result<(Proc, String)> {
    let env = BrowserEnv::check()?;
    let mut proc = Proc::builder("static", &env.node)
        .arg(web_dir().join("test/static-server.mjs"))
        .arg("--root")
        .arg(root)
        .netns(ns)
        .log_dir(log_dir)
        .spawn()?;
    let ready = proc.wait_ready("STATIC", Duration::from_secs(15))?;
    Ok((proc, ready.url))
}
