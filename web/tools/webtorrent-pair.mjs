// Two stock `bittorrent-tracker` clients (the WebTorrent tracker client p2p-media-loader uses)
// meet through a tracker's WebTorrent path, exchange offer and answer through it, and open a
// real WebRTC DataChannel (@roamhq/wrtc) that carries "ping" one way and "pong" back.
//
//   node tools/webtorrent-pair.mjs ws://127.0.0.1:PORT/announce [timeout_ms]
//
// Prints one JSON line with what happened; exit 0 only when both messages crossed.
// Run it inside a network namespace with a non-loopback interface (libwebrtc gathers no
// loopback candidates); crates/tracker/tests/webtorrent_npm.rs does.
import Client from 'bittorrent-tracker/client'
import wrtc from '@roamhq/wrtc'
import { randomBytes } from 'node:crypto'

const [url, timeoutArg] = process.argv.slice(2)
if (!url) {
  console.error('usage: webtorrent-pair.mjs <ws://host:port/announce> [timeout_ms]')
  process.exit(2)
}
const timeoutMs = Number(timeoutArg ?? 30000)

// As p2p-media-loader: info hash = 20 ASCII chars of base64, peer id = "-PM0203-" + 12 alnum.
const alnum = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const peerId = () => Buffer.from('-PM0203-' + Array.from(randomBytes(12), b => alnum[b % alnum.length]).join(''))
const infoHash = Buffer.from(randomBytes(15).toString('base64'))

const result = { info_hash: infoHash.toString(), warnings: [] }
const clients = []
let finished = false

function finish (ok, why) {
  if (finished) return
  finished = true
  result.ok = ok
  if (why) result.error = String(why)
  console.log(JSON.stringify(result))
  for (const c of clients) c.destroy()
  // wrtc keeps native threads alive; leave once the line is out.
  setTimeout(() => process.exit(ok ? 0 : 1), 200)
}
setTimeout(() => finish(false, `timed out after ${timeoutMs} ms`), timeoutMs)

function client (tag) {
  // Distinct URLs: the client shares one socket per URL, and each peer is its own "browser".
  const c = new Client({
    infoHash,
    peerId: peerId(),
    announce: [`${url}?as=${tag}`],
    port: 6881,
    wrtc,
    rtcConfig: { iceServers: [] }
  })
  c.on('error', err => finish(false, `${tag}: ${err.message ?? err}`))
  c.on('warning', err => result.warnings.push(`${tag}: ${err.message ?? err}`))
  clients.push(c)
  return c
}

const b = client('b')
b.on('peer', peer => {
  result.b_peer = true
  peer.on('error', err => result.warnings.push(`b peer: ${err.message}`))
  peer.on('data', data => {
    result.b_got = new TextDecoder().decode(data)
    peer.send('pong')
  })
})
b.once('update', data => {
  result.b_update = { complete: data.complete, incomplete: data.incomplete }
  const a = client('a')
  a.on('peer', peer => {
    result.a_peer = true
    peer.on('error', err => result.warnings.push(`a peer: ${err.message}`))
    peer.once('connect', () => peer.send('ping'))
    peer.on('data', data => {
      result.a_got = new TextDecoder().decode(data)
      finish(result.a_got === 'pong' && result.b_got === 'ping')
    })
  })
  a.once('update', data => {
    result.a_update = { complete: data.complete, incomplete: data.incomplete }
  })
  a.start()
})
b.start()
