//! Measurements behind `shoal bench peer`: DataChannel throughput between two native peers
//! over loopback and the CPU it costs, and the memory of a connected peer. Each side is driven
//! the way the SDK's core drives its peers: one tokio task owning one UDP socket and its `Rtc`,
//! 16 KiB wire messages (`Message::Data`, what segments travel as), writes paced by str0m's
//! send buffer and `ChannelBufferedAmountLow`, a drain after every mutation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shoal_proto::wire::{Message, MAX_CHUNK_PAYLOAD};
use str0m::change::SdpOffer;
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    }
}

/// Resident set size of this process, bytes (Linux).
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else { return 0 };
    let pages: u64 = s.split_whitespace().nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page
}

fn rtc_config(buffer: usize) -> RtcConfig {
    RtcConfig::new().set_sctp_max_buffered_amount(buffer).set_sctp_max_message_size(64 * 1024)
}

/// Two `Rtc`s on two loopback sockets, offer/answer exchanged in memory.
async fn pair(buffer: usize) -> anyhow::Result<((Rtc, UdpSocket), (Rtc, UdpSocket))> {
    let sa = UdpSocket::bind("127.0.0.1:0").await?;
    let sb = UdpSocket::bind("127.0.0.1:0").await?;
    let now = Instant::now();
    let mut a = rtc_config(buffer).build(now);
    let mut b = rtc_config(buffer).build(now);
    a.add_local_candidate(Candidate::host(sa.local_addr()?, "udp")?);
    b.add_local_candidate(Candidate::host(sb.local_addr()?, "udp")?);
    let mut api = a.sdp_api();
    api.add_channel("bench".into());
    let (offer, pending) = api.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string())?;
    let answer = b.sdp_api().accept_offer(offer)?;
    a.sdp_api().accept_answer(pending, answer)?;
    Ok(((a, sa), (b, sb)))
}

enum Role {
    /// Send `total` bytes of payload as `Message::Data`.
    Send { total: u64 },
    /// Count payload bytes until `total`.
    Recv { total: u64 },
    /// Stay connected until told to stop.
    Idle,
}

struct Side {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
}

/// Drive one side until its role is done (or `stop` fires). Returns payload bytes moved and
/// the instant the channel opened.
async fn drive(
    mut s: Side,
    role: Role,
    mut stop: mpsc::Receiver<()>,
    opened: Option<mpsc::Sender<()>>,
) -> (u64, Option<Instant>) {
    let mut buf = vec![0u8; 2048];
    let mut chan = None;
    let mut moved = 0u64;
    let mut open_at = None;
    let payload = Bytes::from(vec![0xA5u8; MAX_CHUNK_PAYLOAD]);
    let frame = Message::Data { req_id: 1, chunk: 0, payload }.encode().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(120);
    // The send buffer had room at the last try (false after a refused write, until
    // `ChannelBufferedAmountLow`).
    let mut writable = false;
    loop {
        // Drain to a timeout, sending what str0m produced.
        let timeout;
        let mut events = Vec::new();
        loop {
            match s.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = s.sock.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => events.push(e),
                Err(_) => return (moved, open_at),
            }
        }
        for e in events {
            match e {
                Event::ChannelOpen(id, _) => {
                    chan = Some(id);
                    open_at = Some(Instant::now());
                    if let Some(o) = &opened {
                        let _ = o.try_send(());
                    }
                    if let Some(mut ch) = s.rtc.channel(id) {
                        ch.set_buffered_amount_low_threshold(64 * 1024);
                    }
                    writable = true;
                }
                Event::ChannelBufferedAmountLow(_) => writable = true,
                Event::ChannelData(d) => {
                    if let Ok(Message::Data { payload, .. }) = Message::decode(&Bytes::from(d.data)) {
                        moved += payload.len() as u64;
                    }
                }
                _ => {}
            }
        }
        match role {
            Role::Recv { total } if moved >= total => return (moved, open_at),
            Role::Send { total } if moved >= total => {
                // Let the last bytes leave before returning.
                if let Some(id) = chan {
                    let left = s.rtc.channel(id).map_or(0, |mut c| c.buffered_amount());
                    if left == 0 {
                        return (moved, open_at);
                    }
                }
            }
            Role::Send { .. } if writable => {
                if let Some(id) = chan {
                    // One write per drain (str0m's single-mutation invariant): the outer loop
                    // drains and comes back here while the buffer accepts.
                    let ok = s
                        .rtc
                        .channel(id)
                        .map(|mut c| c.write(true, &frame))
                        .unwrap_or(Ok(false))
                        .unwrap_or(false);
                    if ok {
                        moved += MAX_CHUNK_PAYLOAD as u64;
                        continue;
                    }
                    writable = false;
                }
            }
            _ => {}
        }
        if Instant::now() > deadline {
            return (moved, open_at);
        }
        let wait = tokio::time::Instant::from_std(timeout.max(Instant::now()));
        tokio::select! {
            r = s.sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Ok(contents) = DatagramRecv::try_from(&buf[..n]) {
                        let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source: from, destination: s.local, contents });
                        if s.rtc.handle_input(input).is_err() {
                            return (moved, open_at);
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(wait) => {
                if s.rtc.handle_input(Input::Timeout(Instant::now())).is_err() {
                    return (moved, open_at);
                }
            }
            _ = stop.recv() => return (moved, open_at),
        }
    }
}

/// Result of [`throughput`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Throughput {
    pub payload_bytes: u64,
    pub seconds: f64,
    pub mbit_s: f64,
    /// CPU seconds (both peers, the whole process) per second of transfer.
    pub cpu_cores: f64,
    /// CPU milliseconds per Mbit moved (both ends together).
    pub cpu_ms_per_mbit: f64,
    pub sctp_buffer: usize,
}

/// Move `total` payload bytes from one peer to the other over loopback.
pub async fn throughput(total: u64, sctp_buffer: usize) -> anyhow::Result<Throughput> {
    let ((a, sa), (b, sb)) = pair(sctp_buffer).await?;
    let (la, lb) = (sa.local_addr()?, sb.local_addr()?);
    let (_stop_a, rx_a) = mpsc::channel(1);
    let (_stop_b, rx_b) = mpsc::channel(1);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let sender = tokio::spawn(drive(Side { rtc: a, sock: sa, local: la }, Role::Send { total }, rx_a, None));
    let receiver =
        tokio::spawn(drive(Side { rtc: b, sock: sb, local: lb }, Role::Recv { total }, rx_b, None));
    let (got, opened) = receiver.await?;
    let secs_total = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    sender.abort();
    anyhow::ensure!(got >= total, "only {got} of {total} bytes arrived");
    // Time from channel open (the connection setup is not throughput).
    let secs = opened.map_or(secs_total, |o| o.elapsed().as_secs_f64().min(secs_total)).max(1e-6);
    let mbit = got as f64 * 8.0 / 1e6;
    Ok(Throughput {
        payload_bytes: got,
        seconds: secs,
        mbit_s: mbit / secs,
        cpu_cores: cpu / secs_total.max(1e-6),
        cpu_ms_per_mbit: cpu * 1000.0 / mbit,
        sctp_buffer,
    })
}

/// Result of [`memory_per_peer`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Memory {
    pub pairs: usize,
    pub rss_before: u64,
    pub rss_after: u64,
    /// (after − before) / connected endpoints.
    pub bytes_per_peer: u64,
}

/// Connect `pairs` peer pairs (2 × `pairs` connected endpoints, each with its socket, `Rtc`
/// and open DataChannel, as the SDK holds them) and measure the resident memory they add.
pub async fn memory_per_peer(pairs: usize, sctp_buffer: usize) -> anyhow::Result<Memory> {
    let rss_before = rss_bytes();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    let (open_tx, mut open_rx) = mpsc::channel(pairs * 2);
    for _ in 0..pairs {
        let ((a, sa), (b, sb)) = pair(sctp_buffer).await?;
        for (rtc, sock) in [(a, sa), (b, sb)] {
            let local = sock.local_addr()?;
            let (stop, rx) = mpsc::channel(1);
            stops.push(stop);
            tasks.push(tokio::spawn(drive(Side { rtc, sock, local }, Role::Idle, rx, Some(open_tx.clone()))));
        }
    }
    let mut open = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while open < pairs * 2 {
        match tokio::time::timeout_at(deadline, open_rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => anyhow::bail!("only {open} of {} channels opened", pairs * 2),
        }
    }
    // Let retransmit queues and handshake buffers settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_bytes();
    for s in &stops {
        let _ = s.try_send(());
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(Memory {
        pairs,
        rss_before,
        rss_after,
        bytes_per_peer: rss_after.saturating_sub(rss_before) / (pairs as u64 * 2).max(1),
    })
}
