// The exports of webrtc-polyfill that @thaunknown/simple-peer (bittorrent-tracker's peer)
// imports, from @roamhq/wrtc.
import wrtc from '@roamhq/wrtc'

export const {
  RTCPeerConnection,
  RTCSessionDescription,
  RTCIceCandidate,
  RTCDataChannel,
  MediaStream,
  MediaStreamTrack
} = wrtc
export default wrtc
