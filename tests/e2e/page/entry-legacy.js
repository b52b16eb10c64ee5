// Bundle entry for the LEGACY client generation: @mattermost/calls-common@0.27.2 from npm
// (string ping/pong on calls-dc, no data-channel signaling, no lock).
export {RTCPeer} from 'calls-common-legacy/lib/rtc_peer.js';
export const generation = 'legacy';
