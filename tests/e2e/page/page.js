// One call participant, as the Calls webapp would run it, driven by harness.mjs.
//
// The bundle loaded before this file sets window.CallsClient = {RTCPeer, generation}.
// Outbound (page -> harness): window.e2eEmit({kind, ...}) (a Playwright exposed function):
//   offer/answer {data: JSON string of the RTCSessionDescription}, candidate {data: JSON of the
//   RTCIceCandidate}, connect, close {error}, error {error}, stream {...}, dc {state},
//   signal-error {error}, log {level, text}.
// Inbound (harness -> page): window.e2e.* called through page.evaluate.
'use strict';
(function () {
    const t0 = performance.now();
    const now = () => Math.round(performance.now() - t0);

    function emit(evt) {
        try {
            window.e2eEmit(evt).catch(() => {});
        } catch (e) {
            console.error('e2eEmit failed', e);
        }
    }
    function text(v) {
        if (typeof v === 'string') return v;
        if (v instanceof Error) return `${v.name}: ${v.message}`;
        try {
            return JSON.stringify(v);
        } catch (e) {
            return String(v);
        }
    }
    function errText(err) {
        return err && err.message ? `${err.name || 'Error'}: ${err.message}` : String(err);
    }
    const logger = {
        logDebug: (...a) => emit({kind: 'log', level: 'debug', text: a.map(text).join(' ')}),
        logInfo: (...a) => emit({kind: 'log', level: 'info', text: a.map(text).join(' ')}),
        logWarn: (...a) => emit({kind: 'log', level: 'warn', text: a.map(text).join(' ')}),
        logErr: (...a) => emit({kind: 'log', level: 'error', text: a.map(text).join(' ')}),
    };
    window.addEventListener('error', (ev) => emit({kind: 'log', level: 'error', text: `page error: ${ev.message}`}));
    window.addEventListener('unhandledrejection', (ev) => emit({kind: 'log', level: 'error', text: `unhandled rejection: ${errText(ev.reason)}`}));

    const state = {
        peer: null,
        generation: null,
        mic: null,
        micStream: null,
        screen: null,
        remote: [],
        dcIn: {},
        dcOpenAt: null,
        connectAt: null,
    };

    // Counts data-channel messages received, by type (current: msgpack type code; legacy: text).
    function dcTypeOf(data) {
        if (typeof data === 'string') return `text:${data}`;
        const b = new Uint8Array(data);
        if (b.length === 0) return 'empty';
        if (b[0] <= 0x7f) return String(b[0]);
        if (b[0] === 0xcc && b.length > 1) return String(b[1]);
        return `0x${b[0].toString(16)}`;
    }
    const dcNames = {1: 'ping', 2: 'pong', 3: 'sdp', 4: 'lossRate', 5: 'rtt', 6: 'jitter', 7: 'lock', 8: 'unlock', 9: 'mediaMap', 10: 'codecSupportMap'};

    function onStream(stream, info) {
        const track = stream.getTracks()[0];
        const el = document.createElement(track.kind === 'video' ? 'video' : 'audio');
        el.autoplay = true;
        el.playsInline = true;
        if (track.kind === 'video') el.muted = true;
        el.srcObject = stream;
        document.getElementById('media').appendChild(el);
        // Chrome decodes (and reports audioLevel for) received audio only when it is played out.
        el.play().catch((e) => logger.logWarn(`play() of remote ${track.kind} failed: ${errText(e)}`));
        const rec = {kind: track.kind, trackID: track.id, streamID: stream.id, info: info || null, at: now(), ended: false};
        track.addEventListener('ended', () => {
            rec.ended = true;
        });
        state.remote.push(rec);
        emit({kind: 'stream', trackKind: track.kind, trackID: track.id, info: info || null});
    }

    // A "voice" made with WebAudio: a 220 Hz tone switched on/off ~3 times a second, so the
    // RFC 6464 level varies like speech (alternative to Chrome's fake microphone beep).
    function synthVoice() {
        const ctx = new AudioContext();
        const osc = ctx.createOscillator();
        osc.frequency.value = 220;
        const gain = ctx.createGain();
        gain.gain.value = 0.5;
        const lfo = ctx.createOscillator();
        lfo.type = 'square';
        lfo.frequency.value = 3;
        const lfoGain = ctx.createGain();
        lfoGain.gain.value = 0.5;
        lfo.connect(lfoGain).connect(gain.gain);
        const dst = ctx.createMediaStreamDestination();
        osc.connect(gain).connect(dst);
        osc.start();
        lfo.start();
        ctx.resume();
        return dst.stream;
    }

    // Fallback "screen": a canvas animated with a timer (headless rAF can be throttled).
    function pageCanvas(width, height) {
        const c = document.createElement('canvas');
        c.width = width;
        c.height = height;
        document.body.appendChild(c);
        return [c, c.getContext('2d')];
    }

    function canvasScreen() {
        const [c, g] = pageCanvas(1280, 720);
        let n = 0;
        setInterval(() => {
            n++;
            g.fillStyle = `hsl(${(n * 7) % 360}, 60%, 40%)`;
            g.fillRect(0, 0, c.width, c.height);
            g.fillStyle = '#fff';
            g.font = '64px sans-serif';
            g.fillText(`frame ${n}`, 40 + (n % 200), 360);
        }, 50);
        return c.captureStream(15);
    }

    // A "screen" that costs bits: a 640x360 canvas whose centre is noise that changes every
    // frame (pre-rendered frames, cycled), so the encoder uses its whole budget per layer and
    // the simulcast layers differ clearly in bitrate (l ~0.5 Mbit/s, h ~2.5 Mbit/s) and frame
    // rate (5 vs 15 fps).
    function noiseScreen() {
        const [c, g] = pageCanvas(640, 360);
        const frames = [];
        for (let k = 0; k < 8; k++) {
            const img = g.createImageData(320, 180);
            const px = new Uint32Array(img.data.buffer);
            for (let i = 0; i < px.length; i++) px[i] = ((Math.random() * 0x1000000) | 0) | 0xff000000;
            frames.push(img);
        }
        let n = 0;
        setInterval(() => {
            n++;
            g.fillStyle = `hsl(${(n * 7) % 360}, 60%, 40%)`;
            g.fillRect(0, 0, c.width, c.height);
            g.putImageData(frames[n % frames.length], 160, 90);
            g.fillStyle = '#fff';
            g.font = '32px sans-serif';
            g.fillText(`frame ${n}`, 20 + (n % 100), 40);
        }, 1000 / 15);
        return c.captureStream(15);
    }

    function candInfo(c) {
        if (!c) return null;
        return {
            candidateType: c.candidateType,
            protocol: c.protocol,
            address: c.address || c.ip,
            port: c.port,
            tcpType: c.tcpType,
            relayProtocol: c.relayProtocol,
        };
    }

    window.e2e = {
        generation: () => (window.CallsClient ? window.CallsClient.generation : null),

        init(opts) {
            if (!window.CallsClient) throw new Error('client bundle not loaded (window.CallsClient missing)');
            const {RTCPeer, generation} = window.CallsClient;
            state.generation = generation;
            const cfg = {
                iceServers: [],
                logger,
                simulcast: Boolean(opts.simulcast),
                connTimeoutMs: opts.connTimeoutMs || 15000,
            };
            if (generation === 'current') {
                cfg.dcSignaling = Boolean(opts.dcSignaling);
                cfg.dcLocking = opts.dcLocking !== false;
            }
            const peer = new RTCPeer(cfg);
            state.peer = peer;
            peer.on('offer', (d) => emit({kind: 'offer', data: JSON.stringify(d)}));
            peer.on('answer', (d) => emit({kind: 'answer', data: JSON.stringify(d)}));
            peer.on('candidate', (c) => emit({kind: 'candidate', data: JSON.stringify(c)}));
            peer.on('connect', () => {
                state.connectAt = now();
                emit({kind: 'connect'});
            });
            peer.on('close', (err) => emit({kind: 'close', error: err ? errText(err) : null}));
            peer.on('error', (err) => emit({kind: 'error', error: errText(err)}));
            peer.on('stream', (stream, info) => onStream(stream, info));
            const dc = peer.dc;
            dc.addEventListener('open', () => {
                state.dcOpenAt = now();
                emit({kind: 'dc', state: 'open'});
            });
            dc.addEventListener('close', () => emit({kind: 'dc', state: 'close'}));
            const orig = dc.onmessage;
            dc.onmessage = (ev) => {
                const t = dcTypeOf(ev.data);
                const name = dcNames[t] || t;
                state.dcIn[name] = (state.dcIn[name] || 0) + 1;
                if (orig) orig.call(dc, ev);
            };
            return {generation, config: {...cfg, logger: undefined}};
        },

        // A signaling message from rtcd (JSON string), as the webapp hands it to RTCPeer.
        signal(data) {
            if (!state.peer) return false;
            Promise.resolve(state.peer.signal(data)).catch((err) => emit({kind: 'signal-error', error: errText(err)}));
            return true;
        },

        // First unmute adds the microphone track (lock + renegotiation); later ones replaceTrack.
        async unmute(opts) {
            if (!state.mic) {
                const stream = opts && opts.synth ?
                    synthVoice() :
                    await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}, video: false});
                state.micStream = stream;
                state.mic = stream.getAudioTracks()[0];
                await state.peer.addTrack(state.mic, stream);
                return {first: true, trackID: state.mic.id, streamID: stream.id, label: state.mic.label};
            }
            state.mic.enabled = true;
            state.peer.replaceTrack(state.mic.id, state.mic);
            return {first: false, trackID: state.mic.id};
        },

        mute() {
            if (!state.mic) return false;
            state.mic.enabled = false;
            state.peer.replaceTrack(state.mic.id, null);
            return true;
        },

        // Step 1 of a screen share: capture. The harness then sends ScreenOn with streamID,
        // and only then calls startScreen() (rtcd classifies the track by that stream ID).
        async prepareScreen(opts) {
            let stream;
            let source = 'getDisplayMedia';
            try {
                if (opts && opts.noise) {
                    source = 'noise canvas';
                    stream = noiseScreen();
                    state.screen = stream;
                    const vt = stream.getVideoTracks()[0];
                    return {streamID: stream.id, trackID: vt.id, source, label: vt.label, settings: vt.getSettings()};
                }
                if (opts && opts.forceCanvas) throw new Error('canvas requested');
                stream = await navigator.mediaDevices.getDisplayMedia({video: true, audio: false});
            } catch (err) {
                if (!(opts && opts.allowCanvas)) throw err;
                source = `canvas (getDisplayMedia failed: ${errText(err)})`;
                stream = canvasScreen();
            }
            state.screen = stream;
            const vt = stream.getVideoTracks()[0];
            return {streamID: stream.id, trackID: vt.id, source, label: vt.label, settings: vt.getSettings()};
        },

        async startScreen() {
            await state.peer.addStream(state.screen);
            return true;
        },

        // Stop: remove the screen tracks (each with lock + renegotiation); then the harness sends ScreenOff.
        async stopScreen() {
            if (!state.screen) return false;
            for (const t of state.screen.getTracks()) {
                // eslint-disable-next-line no-await-in-loop
                await state.peer.removeTrack(t.id);
                t.stop();
            }
            state.screen = null;
            return true;
        },

        leave() {
            if (state.peer) {
                state.peer.destroy();
                state.peer = null;
            }
            for (const s of [state.micStream, state.screen]) {
                if (s) s.getTracks().forEach((t) => t.stop());
            }
            return true;
        },

        // Received video only, summed over inbound streams (cheap enough to poll every 100 ms).
        async videoIn() {
            const pc = state.peer && state.peer.pc;
            if (!pc) return null;
            const o = {framesDecoded: 0, bytesReceived: 0, packetsReceived: 0, packetsLost: 0, nackCount: 0, retransmittedPacketsReceived: 0, frameWidth: 0};
            const report = await pc.getStats();
            report.forEach((s) => {
                if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
                for (const k of Object.keys(o)) {
                    if (k === 'frameWidth') o.frameWidth = Math.max(o.frameWidth, s.frameWidth || 0);
                    else o[k] += s[k] || 0;
                }
            });
            return o;
        },

        async stats() {
            const peer = state.peer;
            const out = {
                t: now(),
                generation: state.generation,
                closed: !peer,
                remote: state.remote,
                dcIn: state.dcIn,
                dcOpenAt: state.dcOpenAt,
                connectAt: state.connectAt,
            };
            if (!peer || !peer.pc) return out;
            const pc = peer.pc;
            out.connectionState = pc.connectionState;
            out.iceConnectionState = pc.iceConnectionState;
            out.signalingState = pc.signalingState;
            out.dcState = peer.dc ? peer.dc.readyState : null;
            out.transceivers = pc.getTransceivers().map((t) => ({
                mid: t.mid,
                direction: t.direction,
                currentDirection: t.currentDirection,
                kind: t.receiver && t.receiver.track ? t.receiver.track.kind : null,
            }));
            const report = await pc.getStats();
            const byId = {};
            report.forEach((s) => {
                byId[s.id] = s;
            });
            out.inbound = [];
            out.outbound = [];
            let pair = null;
            report.forEach((s) => {
                if (s.type === 'inbound-rtp') {
                    out.inbound.push({
                        kind: s.kind,
                        ssrc: s.ssrc,
                        mid: s.mid,
                        trackIdentifier: s.trackIdentifier,
                        codec: s.codecId && byId[s.codecId] ? byId[s.codecId].mimeType : undefined,
                        packetsReceived: s.packetsReceived || 0,
                        packetsLost: s.packetsLost || 0,
                        bytesReceived: s.bytesReceived || 0,
                        jitter: s.jitter,
                        audioLevel: s.audioLevel,
                        totalAudioEnergy: s.totalAudioEnergy,
                        totalSamplesReceived: s.totalSamplesReceived,
                        framesReceived: s.framesReceived,
                        framesDecoded: s.framesDecoded,
                        keyFramesDecoded: s.keyFramesDecoded,
                        frameWidth: s.frameWidth,
                        frameHeight: s.frameHeight,
                        pliCount: s.pliCount,
                        nackCount: s.nackCount,
                        framesPerSecond: s.framesPerSecond,
                        retransmittedPacketsReceived: s.retransmittedPacketsReceived,
                        freezeCount: s.freezeCount,
                        totalFreezesDuration: s.totalFreezesDuration,
                        // RTCP sender reports received for this stream (remote-outbound-rtp).
                        senderReports: s.remoteId && byId[s.remoteId] ? byId[s.remoteId].reportsSent || 0 : 0,
                    });
                } else if (s.type === 'outbound-rtp') {
                    out.outbound.push({
                        kind: s.kind,
                        ssrc: s.ssrc,
                        mid: s.mid,
                        rid: s.rid,
                        packetsSent: s.packetsSent || 0,
                        bytesSent: s.bytesSent || 0,
                        framesEncoded: s.framesEncoded,
                        frameWidth: s.frameWidth,
                        active: s.active,
                        nackCount: s.nackCount,
                        retransmittedPacketsSent: s.retransmittedPacketsSent,
                        targetBitrate: s.targetBitrate,
                        framesPerSecond: s.framesPerSecond,
                    });
                } else if (s.type === 'transport' && s.selectedCandidatePairId && byId[s.selectedCandidatePairId]) {
                    pair = byId[s.selectedCandidatePairId];
                }
            });
            // Every candidate pair, compactly (for ICE failure diagnostics).
            out.pairs = [];
            report.forEach((s) => {
                if (s.type !== 'candidate-pair') return;
                const l = byId[s.localCandidateId];
                const r = byId[s.remoteCandidateId];
                const c = (x) => (x ? `${x.protocol}${x.tcpType ? `/${x.tcpType}` : ''} ${x.address || x.ip || ''}:${x.port}` : '?');
                out.pairs.push(`${c(l)} -> ${c(r)} ${s.state} req ${s.requestsSent || 0} resp ${s.responsesReceived || 0}`);
            });
            if (!pair) {
                report.forEach((s) => {
                    if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
                });
            }
            if (pair) {
                out.selectedPair = {
                    state: pair.state,
                    local: candInfo(byId[pair.localCandidateId]),
                    remote: candInfo(byId[pair.remoteCandidateId]),
                    currentRoundTripTime: pair.currentRoundTripTime,
                    bytesSent: pair.bytesSent,
                    bytesReceived: pair.bytesReceived,
                };
            }
            return out;
        },
    };

    document.getElementById('status').textContent = `ready (${window.CallsClient ? window.CallsClient.generation : 'no bundle'})`;
})();
