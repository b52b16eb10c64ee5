// Bundle entry for the CURRENT client generation: the local compiled calls-common
// (data-channel signaling + signaling lock). Exposed to the page as window.CallsClient.
export {RTCPeer} from '@mattermost/calls-common/lib/rtc_peer.js';
export const generation = 'current';
