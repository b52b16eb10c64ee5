// A toy SFU inside Chromium, used only by mock-rtcd.mjs to self-test the harness (it is NOT a
// model of rtcd): one RTCPeerConnection per session; every received track is re-sent (Chrome
// decodes and re-encodes it) to every other session. It speaks the data-channel protocol of
// spec control-plane §11 far enough for both client generations: ping/pong (binary and legacy
// text), Lock/Unlock, SDP over the DC (zlib) when dcSignaling, server offers under the lock.
'use strict';
(function () {
    const emit = (evt) => window.sfuEmit(evt).catch(() => {});
    const log = (text) => emit({kind: 'log', text});
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const sessions = new Map(); // sid -> session
    const sources = []; // {sid, track}

    async function zlib(str) {
        const s = new Blob([str]).stream().pipeThrough(new CompressionStream('deflate'));
        return new Uint8Array(await new Response(s).arrayBuffer());
    }
    async function unzlib(bytes) {
        const s = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'));
        return new Response(s).text();
    }
    function binHeader(n) {
        if (n < 256) return [0xc4, n];
        if (n < 65536) return [0xc5, n >> 8, n & 255];
        return [0xc6, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255];
    }
    async function dcSDP(desc) { // cc 03 <bin zlib(JSON)>
        const z = await zlib(JSON.stringify(desc));
        const h = binHeader(z.length);
        const out = new Uint8Array(2 + h.length + z.length);
        out.set([0xcc, 0x03]);
        out.set(h, 2);
        out.set(z, 2 + h.length);
        return out;
    }
    function readBin(b, off) {
        const t = b[off];
        if (t === 0xc4) return b.subarray(off + 2, off + 2 + b[off + 1]);
        if (t === 0xc5) return b.subarray(off + 3, off + 3 + ((b[off + 1] << 8) | b[off + 2]));
        if (t === 0xc6) {
            const n = ((b[off + 1] << 24) | (b[off + 2] << 16) | (b[off + 3] << 8) | b[off + 4]) >>> 0;
            return b.subarray(off + 5, off + 5 + n);
        }
        throw new Error(`not a bin: 0x${t.toString(16)}`);
    }

    function newSession(sid, dcSignaling) {
        const s = {sid, dcSignaling, pc: new RTCPeerConnection({iceServers: []}), dc: null, lock: false,
            queue: Promise.resolve(), answerWaiter: null, pendingCandidates: [], sent: new Map(), closed: false};
        s.pc.onicecandidate = (ev) => {
            if (ev.candidate && ev.candidate.candidate) emit({kind: 'candidate', sid, data: JSON.stringify({type: 'candidate', candidate: ev.candidate.toJSON()})});
        };
        s.pc.ondatachannel = (ev) => {
            s.dc = ev.channel;
            s.dc.binaryType = 'arraybuffer';
            s.dc.onmessage = (m) => onDC(s, m.data).catch((err) => log(`dc ${sid}: ${err.message}`));
            s.dc.onopen = () => {
                log(`dc open ${sid}`);
                for (const src of sources) if (src.sid !== sid) forward(s, src);
            };
        };
        s.pc.ontrack = (ev) => {
            // The client answers our video offers with sendrecv (its Firefox workaround), which
            // fires ontrack on the transceivers we send on: not a published track (no stream).
            // A client's addTrack may also reuse a transceiver we send on (Chrome reuses one that
            // never sent): that track comes with its stream and is published.
            if ([...s.sent.values()].includes(ev.transceiver.sender) && !ev.streams.length) return;
            const src = {sid, track: ev.track};
            sources.push(src);
            log(`track ${ev.track.kind} from ${sid}`);
            // Keep received audio flowing through Chrome's audio pipeline.
            if (ev.track.kind === 'audio') {
                const a = new Audio();
                a.srcObject = new MediaStream([ev.track]);
                a.muted = true;
                a.play().catch(() => {});
            }
            for (const other of sessions.values()) if (other.sid !== sid && other.dc && other.dc.readyState === 'open') forward(other, src);
        };
        sessions.set(sid, s);
        return s;
    }

    async function onDC(s, data) {
        if (typeof data === 'string') {
            if (data === 'ping') s.dc.send('pong');
            return;
        }
        const b = new Uint8Array(data);
        let off = 0;
        let type = b[0];
        if (type === 0xcc) {
            type = b[1];
            off = 2;
        } else {
            off = 1;
        }
        switch (type) {
        case 1: s.dc.send(new Uint8Array([0xcc, 0x02])); break;
        case 7:
            if (!s.lock) {
                s.lock = true;
                s.dc.send(new Uint8Array([0xcc, 0x07, 0xc3]));
            } else {
                s.dc.send(new Uint8Array([0xcc, 0x07, 0xc2]));
            }
            break;
        case 8: s.lock = false; break;
        case 3: {
            const desc = JSON.parse(await unzlib(readBin(b, off)));
            if (desc.type === 'offer') {
                const ans = await answerOffer(s, desc);
                if (ans) s.dc.send(await dcSDP(ans));
            } else if (desc.type === 'answer') {
                await s.pc.setRemoteDescription(desc);
                if (s.answerWaiter) s.answerWaiter();
            }
            break;
        }
        default: break; // 4-6 stats
        }
    }

    async function answerOffer(s, desc) {
        if (s.pc.signalingState !== 'stable') {
            log(`offer from ${s.sid} ignored: signaling state ${s.pc.signalingState}`);
            return null;
        }
        await s.pc.setRemoteDescription(desc);
        for (const c of s.pendingCandidates.splice(0)) s.pc.addIceCandidate(c).catch(() => {});
        await s.pc.setLocalDescription();
        return s.pc.localDescription.toJSON();
    }

    // Server-initiated renegotiation adding `src` to session `s`, under the lock.
    function forward(s, src) {
        s.queue = s.queue.then(async () => {
            if (s.closed || s.sent.has(src.track.id)) return;
            const deadline = Date.now() + 5000;
            while (s.lock && Date.now() < deadline) await sleep(20);
            if (s.lock) {
                log(`lock timeout adding ${src.track.kind} of ${src.sid} to ${s.sid}`);
                return;
            }
            s.lock = true;
            try {
                s.sent.set(src.track.id, s.pc.addTrack(src.track, new MediaStream([src.track])));
                await s.pc.setLocalDescription();
                const offer = s.pc.localDescription.toJSON();
                const answered = new Promise((resolve) => {
                    s.answerWaiter = resolve;
                });
                if (s.dcSignaling) s.dc.send(await dcSDP(offer));
                else emit({kind: 'offer', sid: s.sid, data: JSON.stringify(offer)});
                await Promise.race([answered, sleep(10000)]);
                s.answerWaiter = null;
                log(`forwarded ${src.track.kind} of ${src.sid} to ${s.sid}`);
            } finally {
                s.lock = false;
            }
        }).catch((err) => log(`forward to ${s.sid}: ${err.message}`));
    }

    window.sfu = {
        join(sid, dcSignaling) {
            newSession(sid, dcSignaling);
        },
        async offer(sid, json) {
            const s = sessions.get(sid);
            if (!s) return null;
            const ans = await answerOffer(s, JSON.parse(json));
            return ans ? JSON.stringify(ans) : null;
        },
        async answer(sid, json) {
            const s = sessions.get(sid);
            if (!s) return;
            await s.pc.setRemoteDescription(JSON.parse(json));
            if (s.answerWaiter) s.answerWaiter();
        },
        candidate(sid, json) {
            const s = sessions.get(sid);
            if (!s) return;
            const c = JSON.parse(json);
            if (!c.candidate) return;
            if (s.pc.remoteDescription) s.pc.addIceCandidate(c).catch(() => {});
            else s.pendingCandidates.push(c);
        },
        // Mute/Unmute from the plugin: stop/resume forwarding the session's audio (as rtcd does).
        mute(sid, muted) {
            for (const src of sources) {
                if (src.sid !== sid || src.track.kind !== 'audio') continue;
                for (const other of sessions.values()) {
                    const sender = other.sent.get(src.track.id);
                    if (sender) sender.replaceTrack(muted ? null : src.track).catch(() => {});
                }
            }
        },
        leave(sid) {
            const s = sessions.get(sid);
            if (!s) return false;
            s.closed = true;
            s.pc.close();
            sessions.delete(sid);
            for (let i = sources.length - 1; i >= 0; i--) if (sources[i].sid === sid) sources.splice(i, 1);
            return true;
        },
    };
})();
