#!/usr/bin/env node
// Harness self-test only: a fake rtcd that speaks the plugin protocol (POST /register, /ws with
// hello/join/rtc/leave/close/vad, msgpack envelopes) and answers offers with a toy SFU running
// in its own headless Chromium (page/mock-sfu.js). It lets the harness's later checks (audio,
// VAD, screen share, mute, leave) be exercised before rtcd's media plane exists:
//
//   ./run-in-netns.sh -- node harness.mjs --rtcd-bin ./mock-rtcd.mjs --scenario three-party
//
// It accepts and ignores rtcd's command line (-config FILE), prints
// "HTTP API listening on http://127.0.0.1:PORT" like rtcd, and emits VoiceOn 1.5 s after an
// Unmute and VoiceOff on Mute (no real voice detection). Not a model of rtcd.
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

import {Encoder, decodeMulti} from '@msgpack/msgpack';
import {chromium} from 'playwright-core';
import {WebSocketServer} from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const enc = new Encoder();
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();
const log = (m) => process.stdout.write(`${new Date().toISOString()} DEBUG mock-rtcd: ${m}\n`);

const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
        '--disable-features=WebRtcHideLocalIpsWithMdns', '--disable-background-networking', '--disable-component-update'],
});
const page = await browser.newPage();
const sessions = new Map(); // sid -> {ws, groupID, userID, callID}

function envelope(type, data) {
    const a = enc.encode(type);
    const b = enc.encode(data);
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
}
function sendRtc(sid, envType, type, data) {
    const s = sessions.get(sid);
    if (!s || s.ws.readyState !== 1) return;
    const msg = {group_id: s.groupID, user_id: s.userID, session_id: sid, call_id: s.callID, type};
    if (data !== undefined) msg.data = utf8.encode(data);
    s.ws.send(envelope(envType, msg));
}
function closeSession(sid) {
    const s = sessions.get(sid);
    if (!s) return;
    sessions.delete(sid);
    page.evaluate((x) => window.sfu.leave(x), sid).catch(() => {});
    if (s.ws.readyState === 1) s.ws.send(envelope('close', {sessionID: sid}));
    log(`session closed session_id=${sid}`);
}

await page.exposeFunction('sfuEmit', (evt) => {
    if (evt.kind === 'candidate') sendRtc(evt.sid, 'rtc', 1, evt.data);
    else if (evt.kind === 'offer') sendRtc(evt.sid, 'rtc', 2, evt.data);
    else if (evt.kind === 'log') log(evt.text);
});
await page.goto('about:blank');
await page.addScriptTag({path: path.join(HERE, 'page', 'mock-sfu.js')});

const wss = new WebSocketServer({noServer: true});
const server = http.createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/register') {
        let body = '';
        req.on('data', (c) => { body += c; });
        req.on('end', () => {
            const {clientID} = JSON.parse(body || '{}');
            res.writeHead(201, {'Content-Type': 'application/json'}).end(JSON.stringify({clientID, code: '201'}));
        });
        return;
    }
    res.writeHead(404).end('404 page not found');
});
server.on('upgrade', (req, socket, head) => {
    const auth = Buffer.from((req.headers.authorization || '').replace(/^Basic /, ''), 'base64').toString();
    const clientID = auth.split(':')[0];
    wss.handleUpgrade(req, socket, head, (ws) => {
        ws.send(envelope('hello', {clientID, connID: `conn${Date.now()}`}));
        ws.on('message', (data) => {
            const it = decodeMulti(data);
            const type = it.next().value;
            const d = it.next().value;
            onMessage(ws, clientID, type, d).catch((err) => log(`message ${type} failed: ${err.stack}`));
        });
    });
});

async function onMessage(ws, clientID, type, d) {
    if (type === 'join') {
        sessions.set(d.sessionID, {ws, groupID: clientID, userID: d.userID, callID: d.callID});
        await page.evaluate(([sid, dcs]) => window.sfu.join(sid, dcs), [d.sessionID, d.dcSignaling === true]);
        log(`session joined session_id=${d.sessionID}`);
    } else if (type === 'leave') {
        closeSession(d.sessionID);
    } else if (type === 'rtc') {
        const sid = d.session_id;
        if (!sessions.has(sid)) return;
        const data = d.data === undefined ? undefined : utf8d.decode(d.data);
        if (d.type === 1) {
            await page.evaluate(([s, j]) => window.sfu.candidate(s, j), [sid, data]);
        } else if (d.type === 2) {
            const desc = JSON.parse(data);
            if (desc.type === 'offer') {
                const ans = await page.evaluate(([s, j]) => window.sfu.offer(s, j), [sid, data]);
                if (ans) sendRtc(sid, 'rtc', 2, ans);
                log(`offer ${ans ? 'answered' : 'ignored'} session_id=${sid}`);
            } else {
                await page.evaluate(([s, j]) => window.sfu.answer(s, j), [sid, data]);
            }
        } else if (d.type === 3 || d.type === 4) {
            const muted = d.type === 3;
            await page.evaluate(([s, m]) => window.sfu.mute(s, m), [sid, muted]);
            if (muted) sendRtc(sid, 'vad', 8);
            else setTimeout(() => sendRtc(sid, 'vad', 7), 1500);
        }
    }
}

server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`HTTP API listening on http://127.0.0.1:${server.address().port}\n`);
});
const stop = async () => {
    for (const sid of [...sessions.keys()]) closeSession(sid);
    await browser.close().catch(() => {});
    process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
