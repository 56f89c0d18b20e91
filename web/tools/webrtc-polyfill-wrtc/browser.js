// In a browser the real thing is already there.
const scope = typeof window !== 'undefined' ? window : self

export const RTCPeerConnection = scope.RTCPeerConnection
export const RTCSessionDescription = scope.RTCSessionDescription
export const RTCIceCandidate = scope.RTCIceCandidate
export const RTCDataChannel = scope.RTCDataChannel
export const MediaStream = scope.MediaStream
export const MediaStreamTrack = scope.MediaStreamTrack
export default { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate, RTCDataChannel, MediaStream, MediaStreamTrack }
