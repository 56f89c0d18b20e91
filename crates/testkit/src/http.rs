//! A minimal blocking HTTP/1.1 GET for tests (plain `http://` only), optionally from inside a
//! namespace. Enough to poll a server's playlist or health endpoint without a client stack.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::netns::Netns;

/// Bodies larger than this are refused (tests fetch playlists and small JSON, not video).
const MAX_BODY: usize = 16 << 20;
const MAX_HEADER_LINES: usize = 100;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `url`; from inside `ns` when given (a thread that enters it).
pub fn get(ns: Option<&Netns>, url: &str, timeout: Duration) -> Result<Response> {
    match ns {
        None => get_here(url, timeout),
        Some(ns) => {
            let url = url.to_string();
            ns.spawn_thread(move || get_here(&url, timeout))?
                .join()
                .map_err(|_| anyhow!("HTTP thread panicked"))?
        }
    }
}

fn get_here(url: &str, timeout: Duration) -> Result<Response> {
    let rest = url.strip_prefix("http://").ok_or_else(|| anyhow!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr_str = if authority.contains(':') { authority.to_string() } else { format!("{authority}:80") };
    let addr = addr_str
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: shoal-testkit\r\n\r\n"
    )?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).context("reading status line")?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {line:?} from {url}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).context("reading headers")?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        anyhow::ensure!(headers.len() < MAX_HEADER_LINES, "{url}: too many headers");
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut r)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().with_context(|| format!("bad content-length {len:?}"))?;
        anyhow::ensure!(len <= MAX_BODY, "{url}: body of {len} bytes is over the limit");
        let mut body = vec![0; len];
        r.read_exact(&mut body).context("reading body")?;
        body
    } else {
        let mut body = Vec::new();
        r.take(MAX_BODY as u64 + 1).read_to_end(&mut body).context("reading body")?;
        anyhow::ensure!(body.len() <= MAX_BODY, "{url}: body over the limit");
        body
    };
    Ok(Response { status, headers, body })
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size_str = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_str, 16).with_context(|| format!("bad chunk size {line:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            bail!("chunked body over the limit");
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        line.clear();
        r.read_line(&mut line)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined_and_bounded() {
        let mut input: &[u8] = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(read_chunked(&mut input).expect("valid"), b"hello world");
        let mut bad: &[u8] = b"zz\r\n";
        assert!(read_chunked(&mut bad).is_err());
        let mut huge: &[u8] = b"7fffffff\r\n";
        assert!(read_chunked(&mut huge).is_err());
    }

    #[test]
    fn serves_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).expect("read");
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /x.m3u8 HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Type: text/plain\r\n\r\n#EXTM3U")
                .expect("write");
        });
        let r = get(None, &format!("http://{addr}/x.m3u8"), Duration::from_secs(5)).expect("get");
        server.join().expect("server");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("text/plain"));
        assert_eq!(r.text(), "#EXTM3U");
    }
}
