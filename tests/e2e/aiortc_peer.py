#!/usr/bin/env python3
"""One Calls participant implemented with aiortc (PyPI aiortc==1.16.0), driven by harness.mjs.

It behaves like a Calls client whose join had dcSignaling=false: it opens a data channel
labelled `calls-dc`, sends Ping (0x01) on it every second, offers (aiortc does not trickle: its
candidates are in the SDP), applies the SFU's answer and trickled candidates, and answers the
SFU's offers (server renegotiation over the WebSocket). It sends a 440 Hz tone (switched on and
off about 3 times a second by default, so the RFC 6464 audio level varies like speech) and
decodes every remote audio track, measuring its peak amplitude.

Protocol with the harness: JSON lines. stdin (harness -> peer):
  {"op":"offer"}                          create the peer connection and emit its offer
  {"op":"signal","data":"<rtcd JSON>"}    rtcd's rtc type 1/2 data as relayed by the plugin:
                                          {"type":"answer"|"offer","sdp":…} or
                                          {"type":"candidate","candidate":{"candidate":…,"sdpMid":…}}
  {"op":"stats","id":N}                   -> {"event":"stats","id":N,…}
  {"op":"mute"} / {"op":"unmute"}         stop / resume sending RTP (like replaceTrack(null/track))
  {"op":"close"}                          close the peer connection and exit
stdout (peer -> harness), one JSON object a line:
  ready {versions}, offer {sdp}, answer {sdp}, connection {state}, ice {state}, dc {state},
  track {kind, trackID, mid}, signal-error {error}, error {error}, log {level, text},
  stats {…}, muted/unmuted {ok}, closed
Logs go to stderr. Run it inside a loopback-only network namespace (host candidates are forced
to 127.0.0.1; no STUN server is configured, so nothing leaves the machine).
"""
import argparse
import array
import asyncio
import fractions
import json
import logging
import math
import os
import sys
import time

import aioice
import aioice.ice
import aiortc
import av
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

SAMPLE_RATE = 48000
SAMPLES = 960  # 20 ms, what Opus wants

DC_NAMES = {1: "ping", 2: "pong", 3: "sdp", 4: "lossRate", 5: "rtt", 6: "jitter", 7: "lock",
            8: "unlock", 9: "mediaMap", 10: "codecSupportMap"}

log = logging.getLogger("aiortc_peer")


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def force_loopback_candidates(addresses):
    """aioice never gathers 127.0.0.1 (get_host_addresses skips loopback): pin the addresses."""
    addrs = list(addresses)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addrs)


class ToneTrack(MediaStreamTrack):
    """Real-time paced 48 kHz mono s16 tone in 20 ms frames. One second of tone is precomputed
    (integer Hz: whole periods). With `gate_frames` > 0 the tone is on for that many frames,
    then silent (digital zero, audio level 127) for as many, like speech bursts."""

    kind = "audio"

    def __init__(self, freq=440, amplitude=0.5, gate_frames=8):
        super().__init__()
        amp = int(32767 * amplitude)
        self._tone = array.array(
            "h", (int(amp * math.sin(2 * math.pi * freq * i / SAMPLE_RATE)) for i in range(SAMPLE_RATE))
        ).tobytes()
        self._silence = bytes(SAMPLES * 2)
        self._gate = gate_frames
        self._pts = 0
        self._start = None
        self.frames = 0

    async def recv(self):
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + (self._pts / SAMPLE_RATE) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        n = self._pts // SAMPLES
        on = self._gate <= 0 or (n // self._gate) % 2 == 0
        off = (self._pts % SAMPLE_RATE) * 2
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(self._tone[off:off + SAMPLES * 2] if on else self._silence)
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._pts += SAMPLES
        self.frames += 1
        return frame


def dc_type_of(msg):
    if isinstance(msg, str):
        return f"text:{msg}"
    if not msg:
        return "empty"
    b0 = msg[0]
    if b0 <= 0x7F:
        t = b0
    elif b0 == 0xCC and len(msg) > 1:
        t = msg[1]
    else:
        return f"0x{b0:02x}"
    return DC_NAMES.get(t, str(t))


def candidate_info(c):
    if c is None:
        return None
    return {"candidateType": c.type, "protocol": c.transport.lower(), "address": c.host, "port": c.port,
            "tcpType": c.tcptype}


class Peer:
    def __init__(self, args):
        self.args = args
        self.pc = None
        self.dc = None
        self.tone = None
        self.sender = None
        self.pending_candidates = []
        self.dc_in = {}
        self.dc_open_at = None
        self.remote = []  # {kind, trackID, mid, frames, peak, recentPeak, ...}
        self.tasks = []
        self.signals = asyncio.Queue()
        self.t0 = time.monotonic()
        self.offers_answered = 0
        self.candidates_added = 0
        self.candidates_skipped = 0

    def now(self):
        return round((time.monotonic() - self.t0) * 1000)

    # -- setup and first offer ---------------------------------------------------------------

    async def offer(self):
        config = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        pc = RTCPeerConnection(config)
        self.pc = pc

        @pc.on("connectionstatechange")
        async def on_conn():
            emit("connection", state=pc.connectionState)

        @pc.on("iceconnectionstatechange")
        async def on_ice():
            emit("ice", state=pc.iceConnectionState)

        @pc.on("track")
        def on_track(track):
            t = next((x for x in pc.getTransceivers() if x.receiver.track is track), None)
            mid = t.mid if t else None
            rec = {"kind": track.kind, "trackID": track.id, "mid": mid, "at": self.now(), "frames": 0,
                   "peak": 0, "recentPeak": 0, "ended": False, "receiver": t.receiver if t else None}
            self.remote.append(rec)
            emit("track", kind=track.kind, trackID=track.id, mid=mid)
            self.tasks.append(asyncio.ensure_future(self.consume(track, rec)))

        # The audio track goes in before the data channel: with MAX_BUNDLE, aiortc 1.16.0 puts a
        # transceiver added after createDataChannel on the SCTP transport, and then, applying an
        # answer whose BUNDLE group starts with the audio mid, stops that transport as a
        # "bundled slave" of itself (ICE closes at once: connectionState stays "new").
        if not self.args.no_audio:
            self.tone = ToneTrack(freq=self.args.tone_hz, gate_frames=0 if self.args.tone == "steady" else 8)
            self.sender = pc.addTrack(self.tone)

        # As the Calls client: the data channel exists before the first offer.
        dc = pc.createDataChannel("calls-dc")
        self.dc = dc

        @dc.on("open")
        def on_open():
            self.dc_open_at = self.now()
            emit("dc", state="open")
            self.tasks.append(asyncio.ensure_future(self.pinger()))

        @dc.on("close")
        def on_close():
            emit("dc", state="close")

        @dc.on("message")
        def on_message(msg):
            t = dc_type_of(msg)
            self.dc_in[t] = self.dc_in.get(t, 0) + 1
            if t == "sdp":  # only for dcSignaling sessions; this peer joins without it
                emit("log", level="warn", text=f"unexpected SDP on the data channel ({len(msg)} bytes)")

        await pc.setLocalDescription(await pc.createOffer())
        emit("offer", type=pc.localDescription.type, sdp=pc.localDescription.sdp)

    async def pinger(self):
        while self.dc is not None and self.dc.readyState == "open":
            try:
                self.dc.send(b"\x01")
            except Exception:  # noqa: BLE001
                return
            await asyncio.sleep(1)

    async def consume(self, track, rec):
        """Pulls decoded frames (aiortc decodes only what is pulled), tracking the peak."""
        window_start = time.monotonic()
        window_peak = 0
        while True:
            try:
                frame = await track.recv()
            except Exception:  # MediaStreamError when the track ends
                rec["ended"] = True
                return
            rec["frames"] += 1
            if track.kind != "audio":
                continue
            if frame.format.name == "s16":
                pcm = array.array("h", bytes(frame.planes[0]))
                peak = max(max(pcm), -min(pcm)) if pcm else 0
            else:
                peak = 0
                rec["format"] = frame.format.name
            rec["peak"] = max(rec["peak"], peak)
            window_peak = max(window_peak, peak)
            if time.monotonic() - window_start >= 1.0:
                rec["recentPeak"] = window_peak
                window_peak = 0
                window_start = time.monotonic()

    # -- signaling from rtcd -----------------------------------------------------------------

    async def signal_loop(self):
        while True:
            data = await self.signals.get()
            try:
                await self.signal(data)
            except Exception as err:  # noqa: BLE001
                log.exception("signal failed")
                emit("signal-error", error=f"{type(err).__name__}: {err}")

    async def signal(self, data):
        msg = json.loads(data)
        kind = msg.get("type")
        pc = self.pc
        if kind in ("offer", "answer"):
            log.debug("remote %s:\n%s", kind, msg.get("sdp", "").replace("\r\n", "\n"))
        if pc is None:
            raise RuntimeError(f"{kind} before the peer connection exists")
        if kind == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
            await self.flush_candidates()
        elif kind == "offer":
            if pc.signalingState != "stable":
                raise RuntimeError(f"server offer in signaling state {pc.signalingState}")
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            await self.flush_candidates()
            await pc.setLocalDescription(await pc.createAnswer())
            self.offers_answered += 1
            emit("answer", type=pc.localDescription.type, sdp=pc.localDescription.sdp)
        elif kind == "candidate":
            c = msg.get("candidate") or {}
            if pc.remoteDescription is None:
                self.pending_candidates.append(c)
            else:
                await self.add_candidate(c)
        else:
            raise RuntimeError(f"unexpected signal type {kind!r}")

    async def flush_candidates(self):
        pending, self.pending_candidates = self.pending_candidates, []
        for c in pending:
            await self.add_candidate(c)

    async def add_candidate(self, c):
        line = c.get("candidate") or ""
        if not line:
            return  # end-of-candidates marker: aiortc would stop accepting candidates
        if line.startswith("candidate:"):
            line = line[len("candidate:"):]
        cand = candidate_from_sdp(line)
        cand.sdpMid = c.get("sdpMid")
        cand.sdpMLineIndex = c.get("sdpMLineIndex")
        if cand.sdpMid is None and cand.sdpMLineIndex is None:
            cand.sdpMLineIndex = 0
        if cand.protocol.lower() != "udp":
            # aioice only speaks ICE over UDP; the SFU's passive ICE-TCP candidate is useless here.
            self.candidates_skipped += 1
            return
        await self.pc.addIceCandidate(cand)
        self.candidates_added += 1

    # -- mute, stats, close ------------------------------------------------------------------

    def mute(self, muted):
        """Stops/resumes sending RTP, as a browser's replaceTrack(null)/replaceTrack(track) does.
        (aiortc 1.16.0's replaceTrack(None) would end its send loop: it calls recv() on None.)"""
        if self.sender is None:
            return False
        self.sender._enabled = not muted
        return True

    async def stats(self):
        out = {"t": self.now(), "closed": self.pc is None, "dcIn": self.dc_in, "dcOpenAt": self.dc_open_at,
               "offersAnswered": self.offers_answered, "candidatesAdded": self.candidates_added,
               "candidatesSkipped": self.candidates_skipped}
        pc = self.pc
        if pc is None:
            return out
        out.update(connectionState=pc.connectionState, iceConnectionState=pc.iceConnectionState,
                   signalingState=pc.signalingState, dcState=self.dc.readyState if self.dc else None)
        out["transceivers"] = [{"mid": t.mid, "kind": t.kind, "direction": t.direction,
                                "currentDirection": t.currentDirection} for t in pc.getTransceivers()]
        out["inbound"] = []
        for rec in self.remote:
            ent = {k: v for k, v in rec.items() if k != "receiver"}
            ent["trackIdentifier"] = rec["trackID"]
            ent["packetsReceived"] = 0
            ent["packetsLost"] = 0
            if rec["receiver"] is not None:
                report = await rec["receiver"].getStats()
                for s in report.values():
                    if s.type == "inbound-rtp":
                        ent["ssrc"] = s.ssrc
                        ent["packetsReceived"] += s.packetsReceived
                        ent["packetsLost"] += s.packetsLost
                        ent["jitter"] = s.jitter
            out["inbound"].append(ent)
        out["outbound"] = []
        if self.sender is not None:
            report = await self.sender.getStats()
            for s in report.values():
                if s.type == "outbound-rtp":
                    out["outbound"].append({"kind": s.kind, "ssrc": s.ssrc, "packetsSent": s.packetsSent,
                                            "bytesSent": s.bytesSent, "framesGenerated": self.tone.frames})
        conn = self.ice_connection()
        if conn is not None:
            out["localCandidates"] = [c.to_sdp() for c in conn.local_candidates]
            out["remoteCandidates"] = [c.to_sdp() for c in conn.remote_candidates]
            out["pairs"] = [f"udp {p.local_addr[0]}:{p.local_addr[1]} -> {p.remote_addr[0]}:{p.remote_addr[1]} "
                            f"{p.state.name.lower()}{' nominated' if p.nominated else ''}"
                            for p in getattr(conn, "_check_list", [])]
            nominated = getattr(conn, "_nominated", {}).get(1)
            if nominated is not None:
                out["selectedPair"] = {"state": nominated.state.name.lower(),
                                       "local": candidate_info(nominated.local_candidate),
                                       "remote": candidate_info(nominated.remote_candidate)}
        return out

    def ice_connection(self):
        """The (bundled) aioice Connection, for candidate-pair diagnostics."""
        try:
            if self.pc.sctp is not None:
                return self.pc.sctp.transport.transport._connection
            for t in self.pc.getTransceivers():
                return t.receiver.transport.transport._connection
        except AttributeError:
            return None
        return None

    async def close(self):
        for t in self.tasks:
            t.cancel()
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default="aiortc")
    ap.add_argument("--tone-hz", type=int, default=440)
    ap.add_argument("--tone", choices=["gated", "steady"], default="gated")
    ap.add_argument("--no-audio", action="store_true", help="send no audio (receive only)")
    ap.add_argument("--host-addr", action="append", default=None,
                    help="local address(es) for host candidates (default 127.0.0.1)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.WARNING,
                        format=f"[{args.name} %(asctime)s] %(levelname)s %(name)s: %(message)s")
    force_loopback_candidates(args.host_addr or ["127.0.0.1"])

    peer = Peer(args)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    signal_task = asyncio.ensure_future(peer.signal_loop())
    emit("ready", pid=os.getpid(), python=sys.version.split()[0], aiortc=aiortc.__version__,
         aioice=aioice.__version__, av=av.__version__)

    while True:
        line = await reader.readline()
        if not line:
            break  # the harness went away
        try:
            req = json.loads(line)
        except ValueError:
            emit("error", error=f"bad input line {line[:80]!r}")
            continue
        op = req.get("op")
        try:
            if op == "offer":
                await peer.offer()
            elif op == "signal":
                peer.signals.put_nowait(req["data"])
            elif op == "stats":
                emit("stats", id=req.get("id"), **(await peer.stats()))
            elif op in ("mute", "unmute"):
                emit("muted" if op == "mute" else "unmuted", ok=peer.mute(op == "mute"))
            elif op == "close":
                break
            else:
                emit("error", error=f"unknown op {op!r}")
        except Exception as err:  # noqa: BLE001
            log.exception("op %s failed", op)
            emit("error", op=op, error=f"{type(err).__name__}: {err}")
    signal_task.cancel()
    await peer.close()
    emit("closed")


if __name__ == "__main__":
    asyncio.run(main())
