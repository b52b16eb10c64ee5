#!/usr/bin/env node
// Browser end-to-end harness for rtcd: a Mattermost Calls plugin emulator (register, /ws,
// msgpack envelopes, join/rtc/leave) plus real Chromium participants running the Calls client
// library (RTCPeer), one browser context per participant.
//
//   node harness.mjs --rtcd http://127.0.0.1:PORT --scenario three-party --client current
//   node harness.mjs --rtcd-bin ../../target/debug/rtcd --scenario three-party --client legacy
//   node harness.mjs --rtcd-bin ../../target/debug/rtcd --scenario aiortc-chromium
//
// Run it inside a loopback-only network namespace (run-in-netns.sh): Chromium must see only
// 127.0.0.1. Progress goes to stderr, a JSON summary to stdout; exit 0 only if every check
// passed (1: a check failed, 2: usage/setup error). See README.md.
//
// The aiortc-chromium scenario adds a second WebRTC implementation: aiortc_peer.py (PyPI aiortc,
// run with the venv that setup.sh makes) joins the same call next to one Chromium participant.
import {execFileSync, spawn} from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import {fileURLToPath} from 'node:url';
import {parseArgs} from 'node:util';

import {Encoder, decodeMulti} from '@msgpack/msgpack';
import {chromium} from 'playwright-core';
import WebSocket from 'ws';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// Command line

const USAGE = `usage: node harness.mjs (--rtcd URL | --rtcd-bin PATH) [options]
  --rtcd URL               an rtcd that is already running (http://127.0.0.1:PORT), self-registration on
  --rtcd-bin PATH          start this rtcd binary (temp config: 127.0.0.1:0, self-registration, DEBUG log)
  --ice-port-udp N         with --rtcd-bin: [rtc] ice_port_udp (default: a free port)
  --ice-port-tcp N         with --rtcd-bin: [rtc] ice_port_tcp (default: a free port)
  --rtc-config 'K = V'     with --rtcd-bin: an extra line in the [rtc] table (repeatable)
  --rtcd-env K=V           with --rtcd-bin: an environment variable for rtcd (repeatable; the
                           caller's RTCD_*/RTC_*/API_*/LOGGER_*/STORE_* are not passed on)
  --rtcd-log FILE          with --rtcd: rtcd's log file, scanned for diagnostics
  --scenario NAME          three-party (default) | connect | aiortc-chromium (participant A: Chromium
                           with --client, B: aiortc_peer.py; --participants does not apply)
                           | simulcast (A shares with simulcast; B's downlink is limited with tc,
                           then lifted; C is not limited) | loss (A speaks and shares; packets to B
                           and from A are dropped at random with nft, then not)
  --limit-kbit N           simulcast: B's downlink rate while limited (default 1200)
  --loss-percent N         loss: share of packets dropped (default 10)
  --client GEN             current (default; DC signaling + DC locking) | legacy (npm 0.27.2)
  --dc-signaling 0|1       current client only: dcSignaling in RTCPeer config and join (default 1)
  --participants N         number of participants (default 3, minimum 3 for three-party)
  --seconds N              steady-state hold at the end (default 3)
  --expect-transport P     udp | tcp: assert every selected candidate pair uses P
  --audio SRC              fake (Chrome's fake microphone, default) | synth (WebAudio on/off tone)
  --screen SRC             display (getDisplayMedia, default; canvas if it fails) | canvas
  --answer-timeout S       wait for rtcd's first SDP answer (default 10)
  --timeout S              whole scenario (default 90)
  --chromium PATH          browser binary (default $CHROMIUM or /usr/bin/chromium)
  --soft CHECK[,CHECK]     report these checks' failures as warnings and go on (e.g. while a
                           feature is being written: --soft vad-voice-on-A)
  --python PATH            aiortc-chromium: the interpreter with aiortc (default $E2E_PYTHON or
                           .venv/bin/python beside this file, made by setup.sh)
  --aiortc-tone T          aiortc-chromium: gated (default; 440 Hz on/off ~3 Hz, so VAD sees speech)
                           | steady (a constant tone: no VoiceOn expected)
  --verbose                print client-library debug logs and every signaling message
`;

function usage(msg) {
    if (msg) process.stderr.write(`harness: ${msg}\n`);
    process.stderr.write(USAGE);
    process.exit(2);
}

let opts;
try {
    ({values: opts} = parseArgs({
        options: {
            rtcd: {type: 'string'},
            'rtcd-bin': {type: 'string'},
            'rtcd-log': {type: 'string'},
            'ice-port-udp': {type: 'string'},
            'ice-port-tcp': {type: 'string'},
            'rtc-config': {type: 'string', multiple: true, default: []},
            'rtcd-env': {type: 'string', multiple: true, default: []},
            scenario: {type: 'string', default: 'three-party'},
            client: {type: 'string', default: 'current'},
            'dc-signaling': {type: 'string', default: '1'},
            participants: {type: 'string', default: '3'},
            seconds: {type: 'string', default: '3'},
            'expect-transport': {type: 'string'},
            audio: {type: 'string', default: 'fake'},
            screen: {type: 'string', default: 'display'},
            'answer-timeout': {type: 'string', default: '10'},
            timeout: {type: 'string', default: '90'},
            chromium: {type: 'string', default: process.env.CHROMIUM || '/usr/bin/chromium'},
            soft: {type: 'string', multiple: true, default: []},
            python: {type: 'string', default: process.env.E2E_PYTHON || path.join(HERE, '.venv', 'bin', 'python')},
            'aiortc-tone': {type: 'string', default: 'gated'},
            'limit-kbit': {type: 'string', default: '1200'},
            'loss-percent': {type: 'string', default: '10'},
            verbose: {type: 'boolean', default: false},
            help: {type: 'boolean', default: false},
        },
        strict: true,
    }));
} catch (err) {
    usage(err.message);
}
if (opts.help) usage();
if (!opts.rtcd === !opts['rtcd-bin']) usage('exactly one of --rtcd and --rtcd-bin is required');
if (!['three-party', 'connect', 'aiortc-chromium', 'simulcast', 'loss'].includes(opts.scenario)) usage(`unknown scenario ${opts.scenario}`);
const SIMULCAST = opts.scenario === 'simulcast';
const LIMIT_KBIT = Number(opts['limit-kbit']);
const LOSS_PERCENT = Number(opts['loss-percent']);
if (!(LIMIT_KBIT >= 100 && LIMIT_KBIT <= 100000)) usage('--limit-kbit must be 100..100000');
if (!(LOSS_PERCENT >= 1 && LOSS_PERCENT <= 50)) usage('--loss-percent must be 1..50');
if (!['gated', 'steady'].includes(opts['aiortc-tone'])) usage('--aiortc-tone must be gated or steady');
if (!['current', 'legacy'].includes(opts.client)) usage(`unknown client ${opts.client}`);
if (opts['expect-transport'] && !['udp', 'tcp'].includes(opts['expect-transport'])) usage('--expect-transport must be udp or tcp');
if (!['fake', 'synth'].includes(opts.audio)) usage('--audio must be fake or synth');
if (!['display', 'canvas'].includes(opts.screen)) usage('--screen must be display or canvas');
const AIORTC = opts.scenario === 'aiortc-chromium';
const N = AIORTC ? 2 : Number(opts.participants);
const SECONDS = Number(opts.seconds);
const ANSWER_TIMEOUT_MS = Number(opts['answer-timeout']) * 1000;
const SCENARIO_TIMEOUT_MS = Number(opts.timeout) * 1000;
if (!(N >= 1 && N <= 26) || (['three-party', 'simulcast', 'loss'].includes(opts.scenario) && N < 3)) usage('--participants must be 3..26 for three-party, 1..26 otherwise');
if (!(SECONDS >= 0) || !(ANSWER_TIMEOUT_MS > 0) || !(SCENARIO_TIMEOUT_MS > 0)) usage('bad --seconds/--answer-timeout/--timeout');
const DC_SIGNALING = opts.client === 'current' && opts['dc-signaling'] !== '0';
const DC_LOCKING = opts.client === 'current';
const VERBOSE = opts.verbose;
const SOFT = new Set(opts.soft.flatMap((x) => x.split(',')).map((x) => x.trim()).filter(Boolean));

// ---------------------------------------------------------------------------------------------
// Progress, checks, summary

const T0 = Date.now();
const since = () => ((Date.now() - T0) / 1000).toFixed(3);
function progress(msg) {
    process.stderr.write(`[e2e +${since()}s] ${msg}\n`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class CheckFailed extends Error {}

const summary = {
    scenario: opts.scenario,
    client: opts.client,
    dcSignaling: DC_SIGNALING,
    dcLocking: DC_LOCKING,
    participants: N,
    expectTransport: opts['expect-transport'] || null,
    soft: [...SOFT],
    ok: false,
    failed: null,
    stoppedAt: null,
    checks: [],
    warnings: [],
    timings: {},
    rtcd: {},
    browser: {},
    vad: [],
    closes: [],
    sessions: {},
};

// Runs one check; a failure stops the scenario (later checks would be meaningless).
async function check(name, fn) {
    const start = Date.now();
    progress(`check ${name} ...`);
    try {
        const detail = await fn();
        summary.checks.push({name, ok: true, ms: Date.now() - start, detail: detail ?? null});
        progress(`check ${name}: ok${detail ? ` (${typeof detail === 'string' ? detail : JSON.stringify(detail)})` : ''}`);
        return detail;
    } catch (err) {
        const detail = err instanceof CheckFailed ? err.message : `${err.name}: ${err.message}`;
        if (SOFT.has(name) && err instanceof CheckFailed) {
            summary.checks.push({name, ok: true, soft: true, ms: Date.now() - start, detail: `FAILED (soft): ${detail}`});
            warn(name, `FAILED (--soft, going on): ${detail}`);
            return null;
        }
        summary.checks.push({name, ok: false, ms: Date.now() - start, detail});
        summary.failed = summary.failed || name;
        summary.stoppedAt = summary.stoppedAt || name;
        progress(`check ${name}: FAILED: ${detail}`);
        throw new CheckFailed(`${name}: ${detail}`);
    }
}

// A non-fatal observation: recorded under warnings, does not change the exit code.
function warn(name, detail) {
    summary.warnings.push({name, detail});
    progress(`warning ${name}: ${detail}`);
}

// Polls `fn` (returns a truthy result when done) until `ms` pass; `what` explains a timeout.
async function waitFor(ms, what, fn, intervalMs = 100) {
    const deadline = Date.now() + ms;
    for (;;) {
        const r = await fn();
        if (r) return r;
        if (Date.now() >= deadline) throw new CheckFailed(typeof what === 'function' ? what() : what);
        await sleep(intervalMs);
    }
}

// ---------------------------------------------------------------------------------------------
// IDs

function mmID() { // 26 chars [a-z0-9], like Mattermost IDs (never contains '_')
    const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
    let s = '';
    for (const b of crypto.randomBytes(26)) s += alphabet[b % alphabet.length];
    return s;
}

// ---------------------------------------------------------------------------------------------
// rtcd: started here (--rtcd-bin) or external (--rtcd)

const cleanups = [];
let rtcdLogFile = opts['rtcd-log'] || null;

async function freePort() { // a port in rtcd's allowed range [80, 49151], free for UDP and TCP
    const net = await import('node:net');
    const dgram = await import('node:dgram');
    for (let i = 0; i < 50; i++) {
        const port = 20000 + crypto.randomInt(29000);
        const okTCP = await new Promise((res) => {
            const s = net.createServer().once('error', () => res(false)).listen(port, '127.0.0.1', () => s.close(() => res(true)));
        });
        const okUDP = okTCP && await new Promise((res) => {
            const s = dgram.createSocket('udp4').once('error', () => res(false));
            s.bind(port, '127.0.0.1', () => s.close(() => res(true)));
        });
        if (okUDP) return port;
    }
    throw new Error('no free port found');
}

async function startRtcd(bin) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rtcd-e2e-'));
    const udp = opts['ice-port-udp'] ? Number(opts['ice-port-udp']) : await freePort();
    const tcp = opts['ice-port-tcp'] ? Number(opts['ice-port-tcp']) : await freePort();
    const config = `[api.http]
listen_address = "127.0.0.1:0"
[api.security]
allow_self_registration = true
[rtc]
ice_port_udp = ${udp}
ice_port_tcp = ${tcp}
${opts['rtc-config'].join('\n')}
[logger]
enable_file = false
console_level = "DEBUG"
[store]
data_source = "${path.join(dir, 'data')}"
`;
    fs.writeFileSync(path.join(dir, 'config.toml'), config);
    rtcdLogFile = path.join(dir, 'rtcd.log');
    const log = fs.openSync(rtcdLogFile, 'a');
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
        if (!/^(RTCD_|API_|RTC_|LOGGER_|STORE_)/.test(k)) env[k] = v;
    }
    for (const kv of opts['rtcd-env']) {
        const i = kv.indexOf('=');
        if (i <= 0) throw new CheckFailed(`--rtcd-env ${kv}: expected KEY=VALUE`);
        env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const child = spawn(path.resolve(bin), ['-config', path.join(dir, 'config.toml')], {cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe']});
    summary.rtcd = {bin: path.resolve(bin), pid: child.pid, dir, log: rtcdLogFile, icePortUDP: udp, icePortTCP: tcp, rtcConfig: opts['rtc-config'], env: opts['rtcd-env']};
    let exited = null;
    child.on('exit', (code, sig) => {
        exited = `exit ${code ?? sig}`;
        summary.rtcd.exited = exited;
    });
    cleanups.push(async () => {
        if (exited) return;
        child.kill('SIGTERM');
        const t = Date.now();
        while (!exited && Date.now() - t < 5000) await sleep(50);
        if (!exited) child.kill('SIGKILL');
    });
    const url = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`rtcd did not print "HTTP API listening on" within 20 s (log: ${rtcdLogFile})`)), 20000);
        const onData = (chunk) => {
            fs.writeSync(log, chunk);
            const m = /HTTP API listening on (\S+)/.exec(chunk.toString());
            if (m) {
                clearTimeout(timer);
                resolve(m[1]);
            }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.on('exit', () => {
            clearTimeout(timer);
            reject(new Error(`rtcd exited early (${exited}); log: ${rtcdLogFile}`));
        });
    });
    summary.rtcd.url = url;
    progress(`rtcd started: ${url} (pid ${child.pid}, ICE udp ${udp} tcp ${tcp}, log ${rtcdLogFile})`);
    return url;
}

// "2026-…Z  WARN rtcd::media::stub: no media plane … session_id=…" -> "WARN rtcd::media::stub: no media plane …"
function logMessage(line) {
    return line.replace(/^\S+\s+/, '').replace(/\s+\w+=("[^"]*"|\S+)/g, '').replace(/\s+/g, ' ').trim().slice(0, 200);
}

function rtcdLogLines(filter) {
    if (!rtcdLogFile) return [];
    try {
        return fs.readFileSync(rtcdLogFile, 'utf8').split('\n').filter((l) => l && filter(l));
    } catch {
        return [];
    }
}

// ---------------------------------------------------------------------------------------------
// The plugin emulator (spec control-plane §7–§10)

const RTC = {ICE: 1, SDP: 2, MUTE: 3, UNMUTE: 4, SCREEN_ON: 5, SCREEN_OFF: 6, VOICE_ON: 7, VOICE_OFF: 8};
const enc = new Encoder();
const utf8 = new TextEncoder();
const utf8d = new TextDecoder();

class Plugin {
    constructor(baseURL) {
        this.baseURL = baseURL.replace(/\/+$/, '');
        this.clientID = `e2e-${mmID().slice(0, 12)}`;
        this.authKey = crypto.randomBytes(30).toString('base64url'); // 40 chars (>= 32, <= 64)
        this.sessions = new Map(); // sessionID -> Participant
        this.hello = null;
        this.sent = {};
        this.received = {};
    }

    async register() {
        const res = await fetch(`${this.baseURL}/register`, {
            method: 'POST',
            headers: {'Content-Type': 'application/json', Authorization: this.basic()},
            body: JSON.stringify({clientID: this.clientID, authKey: this.authKey}),
        });
        const body = await res.text();
        if (res.status !== 201) throw new CheckFailed(`POST /register: HTTP ${res.status} ${body.trim()}`);
        return `clientID ${this.clientID}`;
    }

    basic() {
        return `Basic ${Buffer.from(`${this.clientID}:${this.authKey}`).toString('base64')}`;
    }

    connect() {
        const wsURL = `${this.baseURL.replace(/^http/, 'ws').replace(/^(wss?:\/\/[^/]+).*$/, '$1')}/ws`;
        return new Promise((resolve, reject) => {
            const ws = new WebSocket(wsURL, {headers: {Authorization: this.basic()}, maxPayload: 1 << 20});
            this.ws = ws;
            ws.binaryType = 'nodebuffer';
            const timer = setTimeout(() => reject(new CheckFailed(`no hello within 5 s on ${wsURL}`)), 5000);
            ws.on('unexpected-response', (req, res) => {
                clearTimeout(timer);
                reject(new CheckFailed(`GET /ws: HTTP ${res.statusCode} instead of 101`));
            });
            ws.on('error', (err) => {
                clearTimeout(timer);
                reject(new CheckFailed(`websocket error: ${err.message}`));
            });
            ws.on('close', (code) => {
                if (!this.closing) progress(`plugin websocket closed by rtcd (code ${code})`);
                this.wsClosed = true;
            });
            ws.on('message', (data, isBinary) => {
                if (!isBinary) {
                    warn('ws-text-frame', `rtcd sent a text frame: ${String(data).slice(0, 100)}`);
                    return;
                }
                let type;
                let payload;
                try {
                    const it = decodeMulti(data);
                    type = it.next().value;
                    payload = it.next().value;
                } catch (err) {
                    warn('ws-undecodable', `undecodable envelope from rtcd: ${err.message}`);
                    return;
                }
                this.received[type] = (this.received[type] || 0) + 1;
                if (type === 'hello') {
                    clearTimeout(timer);
                    this.hello = payload;
                    resolve(payload);
                    return;
                }
                try {
                    this.onEnvelope(type, payload);
                } catch (err) {
                    warn('ws-envelope', `handling ${type} from rtcd failed: ${err.message}`);
                }
            });
        });
    }

    send(type, data) {
        const a = enc.encode(type);
        const b = enc.encode(data === undefined ? null : data);
        const buf = new Uint8Array(a.length + b.length);
        buf.set(a);
        buf.set(b, a.length);
        this.sent[type] = (this.sent[type] || 0) + 1;
        this.ws.send(buf);
    }

    join(p) {
        this.sessions.set(p.sessionID, p);
        this.send('join', {
            callID: p.callID,
            userID: p.userID,
            sessionID: p.sessionID,
            channelID: p.channelID,
            av1Support: false,
            dcSignaling: p.dcSignaling,
        });
    }

    leave(p) {
        this.send('leave', {sessionID: p.sessionID});
    }

    // An RTC message as the plugin sends it: group/user/call empty, data as bin when present.
    rtc(sessionID, type, data) {
        const msg = {group_id: '', user_id: '', session_id: sessionID, call_id: '', type};
        if (data !== undefined) msg.data = typeof data === 'string' ? utf8.encode(data) : data;
        this.send('rtc', msg);
    }

    onEnvelope(type, payload) {
        const at = since();
        if ((type === 'rtc' || type === 'vad') && (!payload || typeof payload !== 'object')) {
            warn('ws-bad-rtc', `${type} from rtcd without an RTC message map: ${JSON.stringify(payload)}`);
            return;
        }
        if (type === 'rtc' || type === 'vad') {
            const sid = payload.session_id;
            const p = this.sessions.get(sid);
            const data = payload.data === undefined ? undefined : (typeof payload.data === 'string' ? payload.data : utf8d.decode(payload.data));
            if (type === 'vad') {
                const ev = {at: Number(at), session: p ? p.name : sid, type: payload.type === RTC.VOICE_ON ? 'VoiceOn' : payload.type === RTC.VOICE_OFF ? 'VoiceOff' : payload.type, userIDOk: p ? payload.user_id === p.userID : null, callIDOk: p ? payload.call_id === p.callID : null};
                summary.vad.push(ev);
                progress(`vad ${ev.type} for ${ev.session}`);
                if (p) p.vad.push(ev);
                return;
            }
            if (!p) {
                warn('rtc-unknown-session', `rtc type ${payload.type} for unknown session ${sid}`);
                return;
            }
            p.fromRtcd(payload, data);
            return;
        }
        if (type === 'close') {
            const sid = payload && payload.sessionID;
            const p = this.sessions.get(sid);
            summary.closes.push({at: Number(at), session: p ? p.name : sid});
            progress(`close from rtcd for ${p ? p.name : sid}`);
            if (p) p.rtcdClosedAt = Date.now();
            return;
        }
        warn('ws-unexpected-envelope', `unexpected envelope type ${JSON.stringify(type)}`);
    }

    close() {
        this.closing = true;
        if (this.ws) this.ws.close();
    }
}

// ---------------------------------------------------------------------------------------------
// Participants: a browser context + page each

class Participant {
    constructor(name, plugin, ids) {
        this.name = name;
        this.kind = 'chromium';
        this.dcSignaling = DC_SIGNALING; // in the join and the RTCPeer config
        this.plugin = plugin;
        this.sessionID = mmID();
        this.userID = mmID();
        this.callID = ids.callID;
        this.channelID = ids.channelID;
        this.offers = 0; // SDP offers relayed to rtcd over WS
        this.answersSent = 0; // SDP answers relayed to rtcd over WS
        this.candidatesSent = 0;
        this.answersFromRtcd = 0;
        this.offersFromRtcd = 0;
        this.candidatesFromRtcd = 0;
        this.firstOfferAt = null;
        this.firstAnswerAt = null;
        this.connectAt = null;
        this.dcOpenAt = null;
        this.rtcdClosedAt = null;
        this.peerClosed = null;
        this.peerErrors = [];
        this.signalErrors = [];
        this.streams = [];
        this.vad = [];
        this.logs = [];
        this.leaving = false;
        this.chain = Promise.resolve();
    }

    async open(browser, baseURL) {
        this.context = await browser.newContext();
        const page = await this.context.newPage();
        this.page = page;
        page.on('console', (m) => this.log(`console.${m.type()}`, m.text()));
        page.on('pageerror', (e) => this.log('pageerror', e.message));
        await page.exposeFunction('e2eEmit', (evt) => this.fromPage(evt));
        await page.goto(`${baseURL}/page/index.html?client=${opts.client}`);
        const gen = await page.evaluate(() => window.e2e && window.e2e.generation());
        if (gen !== opts.client) throw new CheckFailed(`${this.name}: page did not load the ${opts.client} bundle (got ${gen})`);
    }

    log(level, text) {
        const line = `${since()} ${level} ${text}`;
        this.logs.push(line);
        if (this.logs.length > 400) this.logs.shift();
        if (VERBOSE || level === 'error' || level === 'pageerror') progress(`[${this.name}] ${level}: ${text.slice(0, 500)}`);
    }

    // page -> plugin -> rtcd
    fromPage(evt) {
        switch (evt.kind) {
        case 'offer':
            this.offers++;
            if (!this.firstOfferAt) this.firstOfferAt = Date.now();
            this.log('info', `offer #${this.offers} -> rtcd (WS rtc type 2, ${evt.data.length} bytes)`);
            this.plugin.rtc(this.sessionID, RTC.SDP, evt.data);
            break;
        case 'answer':
            this.answersSent++;
            this.log('info', `answer -> rtcd (WS rtc type 2, ${evt.data.length} bytes)`);
            this.plugin.rtc(this.sessionID, RTC.SDP, evt.data);
            break;
        case 'candidate':
            this.candidatesSent++;
            if (VERBOSE) this.log('info', `candidate -> rtcd ${evt.data}`);
            this.plugin.rtc(this.sessionID, RTC.ICE, evt.data);
            break;
        case 'connect':
            this.connectAt = Date.now();
            progress(`${this.name} connected (RTCPeer 'connect')`);
            break;
        case 'dc':
            if (evt.state === 'open') this.dcOpenAt = Date.now();
            this.log('info', `data channel ${evt.state}`);
            break;
        case 'close':
            this.peerClosed = evt.error || 'closed';
            if (!this.leaving) progress(`${this.name}: RTCPeer close${evt.error ? `: ${evt.error}` : ''}`);
            break;
        case 'error':
            this.peerErrors.push(evt.error);
            progress(`${this.name}: RTCPeer error: ${evt.error}`);
            break;
        case 'signal-error':
            this.signalErrors.push(evt.error);
            progress(`${this.name}: RTCPeer.signal failed: ${evt.error}`);
            break;
        case 'stream':
            this.streams.push({at: Number(since()), kind: evt.trackKind, trackID: evt.trackID});
            progress(`${this.name}: remote ${evt.trackKind} track ${evt.trackID}`);
            break;
        case 'log':
            this.log(evt.level, evt.text);
            break;
        default:
            this.log('warn', `unknown page event ${JSON.stringify(evt)}`);
        }
    }

    // rtcd -> plugin -> page (RTCPeer.signal with the JSON string, as the webapp does)
    fromRtcd(msg, data) {
        if (msg.type === RTC.SDP) {
            let t = '?';
            try {
                t = JSON.parse(data).type;
            } catch { /* reported by the page */ }
            if (t === 'answer') {
                this.answersFromRtcd++;
                if (!this.firstAnswerAt) this.firstAnswerAt = Date.now();
            } else if (t === 'offer') {
                this.offersFromRtcd++;
            }
            this.log('info', `rtcd -> ${t} (WS rtc type 2, ${data ? data.length : 0} bytes)`);
        } else if (msg.type === RTC.ICE) {
            this.candidatesFromRtcd++;
            if (VERBOSE) this.log('info', `rtcd -> candidate ${data}`);
        } else {
            warn('rtc-unexpected-type', `rtcd sent rtc type ${msg.type} for ${this.name}`);
            return;
        }
        if ((msg.user_id !== this.userID || msg.call_id !== this.callID || msg.group_id !== this.plugin.clientID) && !this.idsWarned) {
            this.idsWarned = true;
            warn('rtc-ids', `rtc from rtcd for ${this.name} has group/user/call ${msg.group_id}/${msg.user_id}/${msg.call_id} (expected ${this.plugin.clientID}/${this.userID}/${this.callID})`);
        }
        if (data === undefined) return;
        this.deliver(data);
    }

    // rtcd's rtc data -> RTCPeer.signal(string), in order.
    deliver(data) {
        this.chain = this.chain
            .then(() => this.page.evaluate((d) => window.e2e.signal(d), data))
            .catch((err) => this.log('error', `relaying to page failed: ${err.message}`));
    }

    eval(fn, arg) {
        return this.page.evaluate(fn, arg);
    }

    // Creates the RTCPeer, which sends its first offer (an 'offer' event).
    init(o) {
        return this.eval((x) => window.e2e.init(x), o);
    }

    // RTCPeer.destroy() (errors ignored: the page may be gone).
    async leavePeer() {
        if (this.page) await this.eval(() => window.e2e.leave()).catch(() => {});
    }

    // Whether stats() can still be asked for.
    canStat() {
        return Boolean(this.page) && !this.leaving;
    }

    stats() {
        return this.page.evaluate(() => window.e2e.stats());
    }

    // Fails fast when rtcd or the browser ended this session unexpectedly.
    assertAlive() {
        if (this.rtcdClosedAt && !this.leaving) throw new CheckFailed(`rtcd closed session ${this.name} (close received at +${((this.rtcdClosedAt - T0) / 1000).toFixed(1)} s)`);
        if (this.peerClosed && !this.leaving) throw new CheckFailed(`${this.name}'s RTCPeer closed: ${this.peerClosed}`);
    }
}

// A participant that is not a browser: aiortc_peer.py (PyPI aiortc) as a Calls client whose
// join has dcSignaling=false, so every SDP (its offer, rtcd's answer, rtcd's offers, its
// answers) travels over the plugin's WebSocket. JSON lines on its stdin/stdout (see the
// docstring of aiortc_peer.py); its stderr is kept for diagnostics.
class AiortcParticipant extends Participant {
    constructor(name, plugin, ids) {
        super(name, plugin, ids);
        this.kind = 'aiortc';
        this.dcSignaling = false;
        this.proc = null;
        this.exited = null;
        this.versions = null;
        this.stderrTail = [];
        this.nextID = 1;
        this.pending = new Map(); // stats request id -> resolve
        this.connectionStates = [];
    }

    // Starts the python process and waits for its `ready` line (imports take ~1 s).
    async open() {
        const py = opts.python;
        if (!fs.existsSync(py)) throw new CheckFailed(`${py} not found: run setup.sh (it makes tests/e2e/.venv with aiortc)`);
        const args = [path.join(HERE, 'aiortc_peer.py'), '--name', this.name, '--tone', opts['aiortc-tone']];
        if (VERBOSE) args.push('--verbose');
        const env = {...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1'};
        const proc = spawn(py, args, {cwd: HERE, env, stdio: ['pipe', 'pipe', 'pipe']});
        this.proc = proc;
        proc.stdin.on('error', () => {}); // EPIPE after an early exit is reported by 'exit'
        cleanups.push(async () => {
            if (this.exited) return;
            proc.kill('SIGTERM');
            const t = Date.now();
            while (!this.exited && Date.now() - t < 3000) await sleep(50);
            if (!this.exited) proc.kill('SIGKILL');
        });
        readline.createInterface({input: proc.stderr}).on('line', (line) => {
            this.stderrTail.push(line);
            if (this.stderrTail.length > 60) this.stderrTail.shift();
            this.log('stderr', line);
        });
        const ready = new Promise((resolve, reject) => {
            this.onReady = resolve;
            proc.on('exit', (code, sig) => {
                this.exited = `exit ${code ?? sig}`;
                if (!this.leaving) progress(`${this.name}: aiortc_peer.py ended (${this.exited})`);
                for (const r of this.pending.values()) r(null);
                this.pending.clear();
                reject(new CheckFailed(`aiortc_peer.py (${py}) ended before it was ready (${this.exited}): ${this.stderrTail.slice(-5).join(' | ') || 'no stderr'}`));
            });
            proc.on('error', (err) => reject(new CheckFailed(`cannot start ${py}: ${err.message}`)));
        });
        readline.createInterface({input: proc.stdout}).on('line', (line) => {
            let ev;
            try {
                ev = JSON.parse(line);
            } catch {
                this.log('warn', `non-JSON line from aiortc_peer.py: ${line.slice(0, 200)}`);
                return;
            }
            this.onEvent(ev);
        });
        ready.catch(() => {}); // a later exit is reported through assertAlive
        let timer;
        const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => reject(new CheckFailed(`aiortc_peer.py not ready within 20 s (stderr: ${this.stderrTail.slice(-5).join(' | ') || 'none'})`)), 20000);
        });
        try {
            this.versions = await Promise.race([ready, timeout]);
        } finally {
            clearTimeout(timer);
        }
    }

    send(obj) {
        if (this.exited || !this.proc) return false;
        this.proc.stdin.write(`${JSON.stringify(obj)}\n`);
        return true;
    }

    // Events from aiortc_peer.py, mapped onto the page events of a browser participant.
    onEvent(ev) {
        switch (ev.event) {
        case 'ready':
            this.log('info', `aiortc_peer.py ready: ${JSON.stringify(ev)}`);
            if (this.onReady) this.onReady({python: ev.python, aiortc: ev.aiortc, aioice: ev.aioice, av: ev.av, pid: ev.pid});
            break;
        case 'offer':
        case 'answer':
            this.fromPage({kind: ev.event, data: JSON.stringify({type: ev.type, sdp: ev.sdp})});
            break;
        case 'connection':
            this.connectionStates.push(`${since()} ${ev.state}`);
            this.log('info', `connectionState ${ev.state}`);
            if (ev.state === 'connected' && !this.connectAt) this.fromPage({kind: 'connect'});
            if ((ev.state === 'failed' || ev.state === 'closed') && !this.leaving) this.fromPage({kind: 'close', error: `connectionState ${ev.state}`});
            break;
        case 'ice':
            this.log('info', `iceConnectionState ${ev.state}`);
            break;
        case 'dc':
            this.fromPage({kind: 'dc', state: ev.state});
            break;
        case 'track':
            this.fromPage({kind: 'stream', trackKind: ev.kind, trackID: ev.trackID});
            break;
        case 'signal-error':
            this.fromPage({kind: 'signal-error', error: ev.error});
            break;
        case 'error':
            this.fromPage({kind: 'error', error: `${ev.op ? `op ${ev.op}: ` : ''}${ev.error}`});
            break;
        case 'log':
            this.log(ev.level || 'info', ev.text);
            break;
        case 'stats': {
            const r = this.pending.get(ev.id);
            if (r) {
                this.pending.delete(ev.id);
                r(ev);
            }
            break;
        }
        case 'muted':
        case 'unmuted':
        case 'closed':
            this.log('info', ev.event);
            break;
        default:
            this.log('warn', `unknown event from aiortc_peer.py: ${JSON.stringify(ev).slice(0, 200)}`);
        }
    }

    deliver(data) {
        this.send({op: 'signal', data});
    }

    eval() {
        throw new Error(`${this.name} is an aiortc participant (no page)`);
    }

    // The aiortc peer offers at once (its audio track and calls-dc are in the first offer).
    async init() {
        if (!this.send({op: 'offer'})) throw new CheckFailed(`${this.name}: aiortc_peer.py is not running (${this.exited})`);
        return {kind: 'aiortc'};
    }

    async leavePeer() {
        if (!this.send({op: 'close'})) return;
        const t = Date.now();
        while (!this.exited && Date.now() - t < 3000) await sleep(50);
    }

    canStat() {
        return Boolean(this.proc) && !this.exited && !this.leaving;
    }

    async stats() {
        const id = this.nextID++;
        const got = new Promise((resolve) => this.pending.set(id, resolve));
        if (!this.send({op: 'stats', id})) throw new CheckFailed(`${this.name}: aiortc_peer.py ended (${this.exited})`);
        const st = await Promise.race([got, sleep(5000).then(() => undefined)]);
        if (st === undefined) {
            this.pending.delete(id);
            throw new CheckFailed(`${this.name}: aiortc_peer.py did not answer a stats request within 5 s`);
        }
        if (st === null) throw new CheckFailed(`${this.name}: aiortc_peer.py ended (${this.exited})`);
        this.lastStats = st;
        return st;
    }

    assertAlive() {
        super.assertAlive();
        if (this.exited && !this.leaving) throw new CheckFailed(`${this.name}'s aiortc_peer.py ended (${this.exited}): ${this.stderrTail.slice(-3).join(' | ')}`);
    }
}

// Parses the SFU's out-track ID `<type>_<senderSessionID>_<random>` (media-plane spec).
function trackSender(trackIdentifier) {
    const m = /^(voice|screen|screen-audio|video)_([A-Za-z0-9]+)_(.+)$/.exec(trackIdentifier || '');
    return m ? {type: m[1], sender: m[2]} : null;
}

// Inbound RTP streams of `kind` at a receiver's stats that come from `sender` (or whose sender
// cannot be told from the track ID).
function inboundFrom(stats, kind, sender) {
    return (stats.inbound || []).filter((s) => {
        if (s.kind !== kind) return false;
        const ts = trackSender(s.trackIdentifier);
        return !ts || ts.sender === sender.sessionID;
    });
}
const sum = (arr, f) => arr.reduce((a, s) => a + (f(s) || 0), 0);

// ---------------------------------------------------------------------------------------------
// Static server for the page and the bundles

function startStatic() {
    const types = {'.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8'};
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://x');
        const rel = path.normalize(decodeURIComponent(url.pathname)).replace(/^\/+/, '');
        const top = rel.split(path.sep)[0];
        const file = path.join(HERE, rel);
        if (!['page', 'dist'].includes(top) || !file.startsWith(HERE + path.sep) || !fs.statSync(file, {throwIfNoEntry: false})?.isFile()) {
            res.writeHead(404).end('not found');
            return;
        }
        res.writeHead(200, {'Content-Type': types[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store'});
        fs.createReadStream(file).pipe(res);
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
        cleanups.push(() => new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections();
        }));
        resolve(`http://127.0.0.1:${server.address().port}`);
    }));
}

const CHROMIUM_ARGS = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--auto-select-desktop-capture-source=Entire screen',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--autoplay-policy=no-user-gesture-required',
];

// ---------------------------------------------------------------------------------------------
// Scenario steps shared by the scenarios

const S = {plugin: null, parts: [], browser: null};

async function setup() {
    // Only the bundle of the generation under test: current.js exists only when the current
    // client library was given (CALLS_COMMON_DIR) to setup.sh.
    const bundle = `${opts.client}.js`;
    if (!fs.existsSync(path.join(HERE, 'dist', bundle))) throw new CheckFailed(`dist/${bundle} missing: run setup.sh (or npm ci && node build.mjs${opts.client === 'current' ? ' with CALLS_COMMON_DIR set' : ''})`);
    let rtcdURL = opts.rtcd;
    if (opts['rtcd-bin']) rtcdURL = await check('rtcd-started', () => startRtcd(opts['rtcd-bin']));
    summary.rtcd.url = rtcdURL;

    const staticURL = await startStatic();
    await check('browser-launched', async () => {
        if (!fs.existsSync(opts.chromium)) throw new CheckFailed(`${opts.chromium} not found: run setup.sh (apt-get install chromium)`);
        const t = Date.now();
        S.browser = await chromium.launch({executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS, timeout: 30000});
        cleanups.push(() => S.browser.close());
        summary.browser = {executable: opts.chromium, version: S.browser.version(), launchMs: Date.now() - t};
        return `Chromium ${summary.browser.version} in ${summary.browser.launchMs} ms`;
    });

    const plugin = new Plugin(rtcdURL);
    S.plugin = plugin;
    cleanups.push(async () => {
        // As the plugin does when a call ends: leave every session still in the call, so rtcd
        // has nothing to drain when it is stopped.
        const stay = S.parts.filter((p) => !p.leaving && p.firstOfferAt);
        for (const p of stay) {
            p.leaving = true;
            await p.leavePeer();
            if (!plugin.wsClosed && plugin.ws) plugin.leave(p);
        }
        if (stay.length) await waitFor(3000, 'x', () => stay.every((p) => p.rtcdClosedAt), 50).catch(() => {});
        plugin.close();
    });
    const ids = {callID: mmID(), channelID: mmID()};
    for (let i = 0; i < N; i++) {
        // aiortc-chromium: A is the browser, B the aiortc peer.
        const Kind = AIORTC && i === 1 ? AiortcParticipant : Participant;
        S.parts.push(new Kind(String.fromCharCode(65 + i), plugin, ids));
    }
    summary.callID = ids.callID;
    const pages = S.parts.filter((p) => p.kind === 'chromium');
    const pyPeers = S.parts.filter((p) => p.kind === 'aiortc');

    await check('pages-loaded', async () => {
        const t1 = Date.now();
        await Promise.all(pages.map((p) => p.open(S.browser, staticURL)));
        return `${pages.length} pages with the ${opts.client} client in ${Date.now() - t1} ms`;
    });
    if (pyPeers.length) {
        await check('aiortc-started', async () => {
            const t1 = Date.now();
            await Promise.all(pyPeers.map((p) => p.open()));
            const v = pyPeers[0].versions;
            summary.aiortc = {interpreter: opts.python, ...v};
            return `${pyPeers.map((p) => p.name).join(', ')}: aiortc ${v.aiortc} (aioice ${v.aioice}, av ${v.av}, Python ${v.python}) ready in ${Date.now() - t1} ms`;
        });
    }
    await check('register', () => plugin.register());
    await check('ws-hello', async () => {
        const hello = await plugin.connect();
        if (!hello || typeof hello.clientID !== 'string' || typeof hello.connID !== 'string') {
            throw new CheckFailed(`hello without clientID/connID: ${JSON.stringify(hello)}`);
        }
        if (hello.clientID !== plugin.clientID) throw new CheckFailed(`hello clientID ${hello.clientID} != ${plugin.clientID}`);
        return `connID ${hello.connID}`;
    });
    for (const p of S.parts) {
        summary.sessions[p.name] = {kind: p.kind, sessionID: p.sessionID, userID: p.userID, dcSignaling: p.dcSignaling};
    }
}

async function joinAll() {
    await check('join-and-offer', async () => {
        for (const p of S.parts) S.plugin.join(p);
        // The plugin's join reaches rtcd before the browser's offer (same WS, in order).
        await Promise.all(S.parts.map((p) => p.init({
            dcSignaling: p.dcSignaling,
            dcLocking: DC_LOCKING,
            simulcast: SIMULCAST,
            connTimeoutMs: 15000,
        })));
        await waitFor(5000, () => `no offer from the peer of ${S.parts.filter((p) => !p.offers).map((p) => p.name).join(', ')} within 5 s`,
            () => S.parts.every((p) => p.offers > 0));
        return S.parts.map((p) => `${p.name}: offer relayed as rtc type 2 at +${((p.firstOfferAt - T0) / 1000).toFixed(2)} s`).join('; ');
    });

    await check('sdp-answer', async () => {
        try {
            await waitFor(ANSWER_TIMEOUT_MS, 'x', () => {
                S.parts.forEach((p) => p.assertAlive());
                return S.parts.every((p) => p.firstAnswerAt);
            });
        } catch (err) {
            if (!(err instanceof CheckFailed) || err.message !== 'x') throw err;
            const missing = S.parts.filter((p) => !p.firstAnswerAt);
            // What rtcd logged about these sessions (with --rtcd-bin or --rtcd-log), condensed.
            const evidence = new Map(); // message -> [participant names]
            for (const p of missing) {
                for (const l of rtcdLogLines((x) => x.includes(p.sessionID))) {
                    const msg = logMessage(l);
                    if (!evidence.has(msg)) evidence.set(msg, []);
                    if (!evidence.get(msg).includes(p.name)) evidence.get(msg).push(p.name);
                }
            }
            const ev = [...evidence].map(([msg, who]) => `"${msg}" (${who.join(',')})`);
            throw new CheckFailed(`no SDP answer from rtcd within ${ANSWER_TIMEOUT_MS / 1000} s for ${missing.map((p) => p.name).join(', ')}; ` +
                `each offer was relayed as rtc type 2 (${missing.map((p) => `${p.name} at +${((p.firstOfferAt - T0) / 1000).toFixed(2)} s with ${p.candidatesSent} ICE candidates`).join(', ')})` +
                (ev.length ? `; rtcd logged: ${ev.join('; ')}` : ''));
        }
        summary.timings.answersMs = Object.fromEntries(S.parts.map((p) => [p.name, p.firstAnswerAt - p.firstOfferAt]));
        return Object.entries(summary.timings.answersMs).map(([n, ms]) => `${n}: answer ${ms} ms after the offer`).join('; ');
    });

    await check('rtc-connected', async () => {
        const seen = {}; // name -> last ICE state and candidate pairs seen while waiting
        let lastSample = 0;
        try {
            await waitFor(15000, () => `RTCPeer 'connect' missing for ${S.parts.filter((p) => !p.connectAt).map((p) => `${p.name} (${p.candidatesFromRtcd} ICE candidates from rtcd${p.peerErrors.length ? `, error: ${p.peerErrors.at(-1)}` : ''})`).join(', ')} within 15 s of the answer`, async () => {
                if (Date.now() - lastSample > 1000) {
                    lastSample = Date.now();
                    for (const p of S.parts.filter((x) => !x.connectAt)) {
                        const st = await p.stats().catch(() => ({}));
                        if (st.pairs && st.pairs.length) seen[p.name] = `ice ${st.iceConnectionState}, pairs [${st.pairs.join('; ')}]`;
                        else if (!seen[p.name]) seen[p.name] = `ice ${st.iceConnectionState || '?'}, no candidate pairs`;
                    }
                }
                S.parts.forEach((p) => p.assertAlive());
                return S.parts.every((p) => p.connectAt);
            });
        } catch (err) {
            if (!(err instanceof CheckFailed)) throw err;
            const diag = S.parts.filter((x) => !x.connectAt).map((p) => `${p.name} last seen: ${seen[p.name] || '?'}`);
            throw new CheckFailed(`${err.message}. ${diag.join('. ')}`);
        }
        return Object.fromEntries(S.parts.map((p) => [p.name, `${p.connectAt - p.firstOfferAt} ms after the offer`]));
    });
    summary.timings.connectMs = Object.fromEntries(S.parts.map((p) => [p.name, p.connectAt - p.firstOfferAt]));

    await check('data-channel-open', async () => {
        await waitFor(5000, () => `calls-dc not open for ${S.parts.filter((p) => !p.dcOpenAt).map((p) => p.name).join(', ')}`, () => S.parts.every((p) => p.dcOpenAt));
        // Pong (current: DC type 2; legacy: text "pong") for the 1 s pings.
        const stats = await waitFor(4000, 'no pong on calls-dc', async () => {
            const all = await Promise.all(S.parts.map((p) => p.stats()));
            return all.every((s) => (s.dcIn.pong || s.dcIn['text:pong'] || 0) > 0) && all;
        }, 250).catch((err) => {
            warn('dc-pong', err.message);
            return null;
        });
        return stats ? 'open, pongs received' : 'open';
    });

    await check('transport', async () => {
        const all = await Promise.all(S.parts.map((p) => p.stats()));
        const out = {};
        all.forEach((s, i) => {
            const p = S.parts[i];
            const sp = s.selectedPair;
            if (!sp || !sp.local || !sp.remote) throw new CheckFailed(`${p.name}: no selected candidate pair in getStats`);
            out[p.name] = `${sp.local.candidateType} ${sp.local.protocol}${sp.local.tcpType ? `/${sp.local.tcpType}` : ''} ${sp.local.address}:${sp.local.port} -> ${sp.remote.candidateType} ${sp.remote.protocol} ${sp.remote.address}:${sp.remote.port}`;
            const want = opts['expect-transport'];
            if (want && (sp.local.protocol !== want || sp.remote.protocol !== want)) {
                throw new CheckFailed(`${p.name}: selected pair is ${out[p.name]}, expected ${want}`);
            }
        });
        summary.transport = out;
        return out;
    });
}

// Samples receivers' inbound stats twice, `gapMs` apart.
async function twoSamples(receivers, gapMs) {
    const a = await Promise.all(receivers.map((r) => r.stats()));
    await sleep(gapMs);
    const b = await Promise.all(receivers.map((r) => r.stats()));
    return receivers.map((r, i) => ({r, a: a[i], b: b[i]}));
}

// Why media may be missing: what the sender sends, and what each receiver was offered.
async function mediaDiag(sender, receivers, kind) {
    const out = [];
    try {
        const ss = await sender.stats();
        const sent = (ss.outbound || []).filter((o) => o.kind === kind);
        out.push(`${sender.name} sends ${kind}: ${sent.length ? sent.map((o) => `${o.packetsSent} packets`).join(', ') : 'no outbound-rtp'}`);
        for (const r of receivers) {
            const rs = await r.stats();
            const dc = rs.dcIn || {};
            out.push(`${r.name} got server offers: ${r.offersFromRtcd} via WS, ${dc.sdp || 0} via DC (MediaMap ${dc.mediaMap || 0}); remote tracks: ${r.streams.map((t) => t.kind).join(',') || 'none'}; inbound-rtp: ${(rs.inbound || []).map((i) => `${i.kind} ${i.packetsReceived} pkts`).join(', ') || 'none'}`);
        }
    } catch (err) {
        out.push(`(diagnostics failed: ${err.message})`);
    }
    return out.join('; ');
}

async function withDiag(sender, receivers, kind, fn) {
    try {
        return await fn();
    } catch (err) {
        if (!(err instanceof CheckFailed)) throw err;
        throw new CheckFailed(`${err.message}. ${await mediaDiag(sender, receivers, kind)}`);
    }
}

// Waits until every receiver gets audio from `sender` with packets rising and a non-zero level.
async function expectAudio(sender, receivers, timeoutMs) {
    return withDiag(sender, receivers, 'audio', () => expectAudioInner(sender, receivers, timeoutMs));
}

async function expectAudioInner(sender, receivers, timeoutMs) {
    const last = {};
    const state = {};
    await waitFor(timeoutMs, () => `no audio from ${sender.name} at ${receivers.filter((r) => !state[r.name]).map((r) => `${r.name} (${last[r.name] || 'no inbound audio stream'})`).join(', ')} within ${timeoutMs / 1000} s`, async () => {
        for (const r of receivers) {
            r.assertAlive();
            if (state[r.name]) continue;
            const s = await r.stats();
            const ins = inboundFrom(s, 'audio', sender);
            if (!ins.length) continue;
            const pk = sum(ins, (x) => x.packetsReceived);
            const level = Math.max(...ins.map((x) => x.audioLevel || 0));
            const energy = sum(ins, (x) => x.totalAudioEnergy);
            const prev = r._prevAudio;
            r._prevAudio = pk;
            last[r.name] = `packets ${pk}, audioLevel ${level}, totalAudioEnergy ${energy.toFixed(4)}`;
            if (pk >= 25 && prev !== undefined && pk > prev && (level > 0 || energy > 0)) state[r.name] = last[r.name];
        }
        return receivers.every((r) => state[r.name]);
    }, 500);
    for (const r of receivers) delete r._prevAudio;
    return state;
}

// Waits until every receiver decodes video from `sender` (framesDecoded rising, frameWidth > 0).
async function expectVideo(sender, receivers, timeoutMs) {
    return withDiag(sender, receivers, 'video', () => expectVideoInner(sender, receivers, timeoutMs));
}

async function expectVideoInner(sender, receivers, timeoutMs) {
    const last = {};
    const state = {};
    await waitFor(timeoutMs, () => `no decoded video from ${sender.name} at ${receivers.filter((r) => !state[r.name]).map((r) => `${r.name} (${last[r.name] || 'no inbound video stream'})`).join(', ')} within ${timeoutMs / 1000} s`, async () => {
        for (const r of receivers) {
            r.assertAlive();
            if (state[r.name]) continue;
            const s = await r.stats();
            const ins = inboundFrom(s, 'video', sender);
            if (!ins.length) continue;
            const fd = sum(ins, (x) => x.framesDecoded);
            const w = Math.max(...ins.map((x) => x.frameWidth || 0));
            const prev = r._prevVideo;
            r._prevVideo = fd;
            last[r.name] = `packets ${sum(ins, (x) => x.packetsReceived)}, framesReceived ${sum(ins, (x) => x.framesReceived)}, framesDecoded ${fd} (key ${sum(ins, (x) => x.keyFramesDecoded)}), ${w}x${Math.max(...ins.map((x) => x.frameHeight || 0))}, ` +
                `codec ${[...new Set(ins.map((x) => x.codec).filter(Boolean))].join(',') || '? (no codec matched: payload type not negotiated?)'}, PLI sent ${sum(ins, (x) => x.pliCount)}, NACK sent ${sum(ins, (x) => x.nackCount)}`;
            if (fd > 0 && w > 0 && prev !== undefined && fd > prev) state[r.name] = last[r.name];
        }
        return receivers.every((r) => state[r.name]);
    }, 500);
    for (const r of receivers) delete r._prevVideo;
    return state;
}

async function waitVad(p, type, afterIndex, timeoutMs) {
    return waitFor(timeoutMs, `no vad ${type} for ${p.name} within ${(timeoutMs / 1000).toFixed(1)} s (vad so far: ${JSON.stringify(p.vad)})`, () => {
        p.assertAlive();
        return p.vad.slice(afterIndex).find((v) => v.type === type);
    }, 100);
}

// A browser participant's first unmute: the page adds the mic track (lock + renegotiation),
// the plugin sends Unmute (type 4); the renegotiation must complete (A then sends audio RTP).
async function unmuteBrowser(A) {
    const r = await A.eval((o) => window.e2e.unmute(o), {synth: opts.audio === 'synth'});
    S.plugin.rtc(A.sessionID, RTC.UNMUTE);
    const sent = await waitFor(10000, () => `${A.name}'s audio track was added but ${A.name} sends no audio RTP within 10 s (renegotiation with rtcd not completed? ${A.name}'s signalingState, offers: ${A.offers} via WS)`, async () => {
        A.assertAlive();
        const st = await A.stats();
        const out = (st.outbound || []).filter((o) => o.kind === 'audio' && o.packetsSent > 0);
        return out.length && st.signalingState === 'stable' && out[0].packetsSent;
    }, 200);
    return `track ${r.trackID} (${r.label || opts.audio}) negotiated, ${sent} packets sent`;
}

async function leaveParticipant(p) {
    p.leaving = true;
    await p.leavePeer();
    S.plugin.leave(p);
    const t = Date.now();
    await waitFor(5000, `no close {sessionID} from rtcd within 5 s after leave of ${p.name}`, () => p.rtcdClosedAt);
    return `RTCPeer destroyed, leave sent, close received after ${Math.max(0, p.rtcdClosedAt - t)} ms`;
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function scenarioConnect() {
    await setup();
    await joinAll();
    if (SECONDS > 0) {
        progress(`holding ${SECONDS} s`);
        await sleep(SECONDS * 1000);
    }
    await check('still-connected', async () => {
        const all = await Promise.all(S.parts.map((p) => p.stats()));
        all.forEach((s, i) => {
            S.parts[i].assertAlive();
            if (s.connectionState !== 'connected') throw new CheckFailed(`${S.parts[i].name}: connectionState ${s.connectionState}`);
        });
        return 'all connected';
    });
    for (const p of S.parts) await check(`leave-${p.name}`, () => leaveParticipant(p));
}

async function scenarioThreeParty() {
    await setup();
    await joinAll();
    const [A, B, C] = S.parts;
    const others = (...ex) => S.parts.filter((p) => !ex.includes(p));

    // A unmutes: first unmute adds the mic track (lock + renegotiation), then Unmute (type 4).
    await check('unmute-A', () => unmuteBrowser(A));
    const unmutedAt = Date.now();
    const vadIndex = A.vad.length;
    await check('audio-A-received', async () => expectAudio(A, others(A), 15000));
    await check('vad-voice-on-A', async () => {
        const left = Math.max(1000, 12000 - (Date.now() - unmutedAt));
        const ev = await waitVad(A, 'VoiceOn', vadIndex, left);
        if (ev.userIDOk === false || ev.callIDOk === false) throw new CheckFailed(`vad VoiceOn for A has wrong user_id/call_id (${JSON.stringify(ev)})`);
        return `VoiceOn at +${ev.at.toFixed(2)} s (${((ev.at * 1000 + T0 - unmutedAt) / 1000).toFixed(2)} s after unmute)`;
    });
    for (const p of others(A)) {
        if (p.vad.some((v) => v.type === 'VoiceOn')) warn('vad-unexpected', `VoiceOn for ${p.name}, who never unmuted`);
    }

    // B shares the screen: ScreenOn with the stream ID BEFORE the track is added.
    await check('screen-share-B', async () => {
        const info = await B.eval((o) => window.e2e.prepareScreen(o), {allowCanvas: true, forceCanvas: opts.screen === 'canvas'});
        if (info.source !== 'getDisplayMedia') warn('screen-source', `B shares a ${info.source}`);
        S.plugin.rtc(B.sessionID, RTC.SCREEN_ON, JSON.stringify({screenStreamID: info.streamID}));
        await B.eval(() => window.e2e.startScreen());
        summary.screen = info;
        return `stream ${info.streamID} ${info.settings.width}x${info.settings.height} via ${info.source}`;
    });
    await check('screen-B-decoded', async () => expectVideo(B, others(B), 15000));

    // A mutes: replaceTrack(null) + Mute (type 3); receivers' audio packet counters freeze.
    const vadBeforeMute = A.vad.length;
    await check('mute-A', async () => {
        await A.eval(() => window.e2e.mute());
        S.plugin.rtc(A.sessionID, RTC.MUTE);
        await sleep(1000); // in-flight packets and jitter buffers settle
        const samples = await twoSamples(others(A), 2000);
        const out = {};
        for (const {r, a, b} of samples) {
            const d = sum(inboundFrom(b, 'audio', A), (x) => x.packetsReceived) - sum(inboundFrom(a, 'audio', A), (x) => x.packetsReceived);
            out[r.name] = `+${d} audio packets in 2 s`;
            if (d > 2) throw new CheckFailed(`audio from A still arriving at ${r.name} after mute: +${d} packets in 2 s`);
        }
        return out;
    });
    await waitVad(A, 'VoiceOff', vadBeforeMute, 3000).catch(() => warn('vad-voice-off-A', 'no VoiceOff for A within 3 s of Mute (spec: Mute resets VAD and always emits VoiceOff)'));

    // C leaves; A and B carry on: B's screen keeps reaching A, A unmutes again and B hears it.
    await check(`leave-${C.name}`, () => leaveParticipant(C));
    const rest = others(C);
    const restNotB = rest.filter((p) => p !== B);
    const restNotA = rest.filter((p) => p !== A);
    await check('after-leave-screen-continues', async () => expectVideo(B, restNotB, 5000));
    await check('unmute-A-again', async () => {
        const r = await A.eval((o) => window.e2e.unmute(o), {synth: opts.audio === 'synth'});
        S.plugin.rtc(A.sessionID, RTC.UNMUTE);
        return r.first ? 'track re-added' : 'replaceTrack(track)';
    });
    await check('after-leave-audio-continues', async () => expectAudio(A, restNotA, 10000));

    if (SECONDS > 0) {
        progress(`steady state for ${SECONDS} s`);
        const gap = SECONDS * 1000;
        await check('steady-state', async () => {
            const samples = await twoSamples(rest, gap);
            const out = {};
            for (const {r, a, b} of samples) {
                r.assertAlive();
                if (b.connectionState !== 'connected') throw new CheckFailed(`${r.name}: connectionState ${b.connectionState}`);
                const parts = [];
                if (r !== A) {
                    const d = sum(inboundFrom(b, 'audio', A), (x) => x.packetsReceived) - sum(inboundFrom(a, 'audio', A), (x) => x.packetsReceived);
                    if (d <= 0) throw new CheckFailed(`audio from A stopped at ${r.name}`);
                    parts.push(`audio +${d} pkts`);
                }
                if (r !== B) {
                    const d = sum(inboundFrom(b, 'video', B), (x) => x.framesDecoded) - sum(inboundFrom(a, 'video', B), (x) => x.framesDecoded);
                    if (d <= 0) throw new CheckFailed(`screen from B stopped at ${r.name}`);
                    parts.push(`screen +${d} frames`);
                }
                const lost = sum(b.inbound || [], (x) => x.packetsLost);
                parts.push(`lost ${lost}`);
                out[r.name] = parts.join(', ');
            }
            return out;
        });
    }

    await check('screen-stop-B', async () => {
        await B.eval(() => window.e2e.stopScreen());
        S.plugin.rtc(B.sessionID, RTC.SCREEN_OFF);
        return 'tracks removed, ScreenOff sent';
    });
    for (const p of rest) await check(`leave-${p.name}`, () => leaveParticipant(p));
}

// One Chromium participant (A, the --client library) and one aiortc participant (B,
// aiortc_peer.py, dcSignaling false: all its SDP over the WebSocket) exchange audio.
async function scenarioAiortcChromium() {
    await setup();
    await joinAll();
    const [A, B] = S.parts;

    // B's tone track was in its first offer; the plugin sends Unmute as it would when the user
    // unmutes (the voice track starts enabled, so this is a no-op for forwarding).
    await check('unmute-B', async () => {
        S.plugin.rtc(B.sessionID, RTC.UNMUTE);
        const sent = await waitFor(5000, `B (aiortc) sends no audio RTP within 5 s of connecting`, async () => {
            B.assertAlive();
            const st = await B.stats();
            const out = (st.outbound || []).filter((o) => o.kind === 'audio' && o.packetsSent > 0);
            return out.length && out[0].packetsSent;
        }, 200);
        return `aiortc sends its ${opts['aiortc-tone']} 440 Hz tone, ${sent} packets sent`;
    });
    const vadIndexB = B.vad.length;
    const unmutedB = Date.now();
    // rtcd adds B's voice track to A (server offer over DC or WS, MediaMap), A plays it.
    await check('audio-B-received', async () => expectAudio(B, [A], 15000));
    if (opts['aiortc-tone'] === 'gated') {
        // aiortc sends the RFC 6464 audio level; the gated tone varies it like speech.
        await check('vad-voice-on-B', async () => {
            const left = Math.max(1000, 12000 - (Date.now() - unmutedB));
            const ev = await waitVad(B, 'VoiceOn', vadIndexB, left);
            if (ev.userIDOk === false || ev.callIDOk === false) throw new CheckFailed(`vad VoiceOn for B has wrong user_id/call_id (${JSON.stringify(ev)})`);
            return `VoiceOn at +${ev.at.toFixed(2)} s (${((ev.at * 1000 + T0 - unmutedB) / 1000).toFixed(2)} s after Unmute)`;
        });
    }

    // A unmutes (fake microphone, first unmute: track added + renegotiation with rtcd), then
    // rtcd renegotiates with B: a server offer over the WebSocket, answered by aiortc.
    await check('unmute-A', () => unmuteBrowser(A));
    await check('audio-A-received-by-aiortc', async () => expectAudioAtAiortc(A, B, 15000));

    if (SECONDS > 0) {
        progress(`steady state for ${SECONDS} s`);
        await check('steady-state', async () => {
            const [a1, b1] = await Promise.all([A.stats(), B.stats()]);
            await sleep(SECONDS * 1000);
            const [a2, b2] = await Promise.all([A.stats(), B.stats()]);
            A.assertAlive();
            B.assertAlive();
            for (const [p, st] of [[A, a2], [B, b2]]) {
                if (st.connectionState !== 'connected') throw new CheckFailed(`${p.name}: connectionState ${st.connectionState}`);
            }
            const dA = sum(inboundFrom(a2, 'audio', B), (x) => x.packetsReceived) - sum(inboundFrom(a1, 'audio', B), (x) => x.packetsReceived);
            const dB = sum(inboundFrom(b2, 'audio', A), (x) => x.packetsReceived) - sum(inboundFrom(b1, 'audio', A), (x) => x.packetsReceived);
            const fB = sum(inboundFrom(b2, 'audio', A), (x) => x.frames) - sum(inboundFrom(b1, 'audio', A), (x) => x.frames);
            if (dA <= 0) throw new CheckFailed(`audio from B (aiortc) stopped at A: +${dA} packets in ${SECONDS} s`);
            if (dB <= 0 || fB <= 0) throw new CheckFailed(`audio from A stopped at B (aiortc): +${dB} packets, +${fB} decoded frames in ${SECONDS} s`);
            return {A: `audio from B +${dA} pkts, lost ${sum(a2.inbound || [], (x) => x.packetsLost)}`,
                B: `audio from A +${dB} pkts, +${fB} frames decoded, lost ${sum(b2.inbound || [], (x) => x.packetsLost)}`};
        });
    }

    // B mutes: aiortc stops sending RTP (as replaceTrack(null) does) + Mute (type 3).
    const vadBeforeMute = B.vad.length;
    await check('mute-B', async () => {
        B.send({op: 'mute'});
        S.plugin.rtc(B.sessionID, RTC.MUTE);
        await sleep(1000);
        const [{a, b}] = await twoSamples([A], 2000);
        const d = sum(inboundFrom(b, 'audio', B), (x) => x.packetsReceived) - sum(inboundFrom(a, 'audio', B), (x) => x.packetsReceived);
        if (d > 2) throw new CheckFailed(`audio from B still arriving at A after mute: +${d} packets in 2 s`);
        return `A: +${d} audio packets from B in 2 s`;
    });
    if (opts['aiortc-tone'] === 'gated') {
        await waitVad(B, 'VoiceOff', vadBeforeMute, 3000).catch(() => warn('vad-voice-off-B', 'no VoiceOff for B within 3 s of Mute (spec: Mute resets VAD and always emits VoiceOff)'));
    }

    await check('leave-B', () => leaveParticipant(B));
    await check('leave-A', () => leaveParticipant(A));
}

// Waits until the aiortc participant `r` receives audio from `sender`: more than 50 packets,
// rising, decoded, with a non-zero decoded peak (aiortc has no audioLevel stat).
async function expectAudioAtAiortc(sender, r, timeoutMs) {
    return withDiag(sender, [r], 'audio', async () => {
        let last = 'no remote audio track';
        let prev;
        const got = await waitFor(timeoutMs, () => `no audio from ${sender.name} decoded at ${r.name} (aiortc) within ${timeoutMs / 1000} s (${last}; server offers answered by aiortc: ${r.answersSent}, signal errors: ${r.signalErrors.join(' / ') || 'none'})`, async () => {
            r.assertAlive();
            const st = await r.stats();
            const ins = inboundFrom(st, 'audio', sender);
            if (!ins.length) return false;
            const pk = sum(ins, (x) => x.packetsReceived);
            const frames = sum(ins, (x) => x.frames);
            const peak = Math.max(...ins.map((x) => x.peak || 0));
            last = `tracks ${ins.map((x) => `${x.trackIdentifier} mid ${x.mid}`).join(', ')}: packets ${pk}, lost ${sum(ins, (x) => x.packetsLost)}, frames decoded ${frames}, peak ${peak}`;
            const ok = pk > 50 && prev !== undefined && pk > prev && frames > 0 && peak > 0;
            prev = pk;
            return ok && last;
        }, 500);
        return got;
    });
}

// ---------------------------------------------------------------------------------------------
// Network conditions (inside the test's own namespace: lo only) and media-quality scenarios


function sh(cmd, args) {
    try {
        return execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
    } catch (err) {
        throw new CheckFailed(`${cmd} ${args.join(' ')}: ${(err.stderr || err.message).trim()}`);
    }
}

// Limits UDP to `port` on lo to `kbit` (htb class, 100-packet queue: ~0.7 s at 1.2 Mbit/s, a
// home router's buffer rather than a switch's); returns the lift function.
function limitPort(port, kbit) {
    const tc = (...a) => sh('tc', a);
    tc('qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '10');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit');
    tc('class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', `${kbit}kbit`, 'ceil', `${kbit}kbit`);
    tc('qdisc', 'add', 'dev', 'lo', 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '100');
    tc('filter', 'add', 'dev', 'lo', 'parent', '1:', 'protocol', 'ip', 'u32', 'match', 'ip', 'dport', String(port), '0xffff', 'flowid', '1:20');
    return () => tc('class', 'change', 'dev', 'lo', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '10gbit', 'ceil', '10gbit');
}

// Drops `percent` % of UDP packets on each (sport, dport) flow at random (nft numgen).
function dropRandomly(flows, percent) {
    const nft = (...a) => sh('nft', a);
    nft('add', 'table', 'inet', 'e2eloss');
    nft('add', 'chain', 'inet', 'e2eloss', 'in', '{ type filter hook input priority 0; }');
    for (const [sport, dport] of flows) {
        nft('add', 'rule', 'inet', 'e2eloss', 'in', 'udp', 'sport', String(sport), 'udp', 'dport', String(dport), 'numgen', 'random', 'mod', '100', 'lt', String(percent), 'drop');
    }
    return () => nft('delete', 'table', 'inet', 'e2eloss');
}

// Polls viewers' received-video counters every 100 ms, for frame rates, bitrates and freezes.
class VideoTracker {
    constructor(viewers) {
        this.viewers = viewers;
        this.samples = new Map(viewers.map((v) => [v.name, []]));
        this.stopped = false;
        this.loop = (async () => {
            while (!this.stopped) {
                const t = Date.now();
                await Promise.all(viewers.map(async (v) => {
                    const s = await v.eval(() => window.e2e.videoIn()).catch(() => null);
                    if (s) this.samples.get(v.name).push({t: Date.now(), ...s});
                }));
                await sleep(Math.max(10, 100 - (Date.now() - t)));
            }
        })();
    }

    async stop() {
        this.stopped = true;
        await this.loop;
    }

    // Frames decoded per second and kbit/s over the last `ms`.
    rate(name, ms = 2000) {
        const a = this.samples.get(name);
        const last = a.at(-1);
        if (!last) return {fps: 0, kbps: 0};
        const first = a.find((s) => s.t >= last.t - ms) || last;
        const dt = Math.max(1, last.t - first.t);
        if (dt < ms * 0.8) return {fps: 0, kbps: 0};
        return {fps: (last.framesDecoded - first.framesDecoded) * 1000 / dt, kbps: (last.bytesReceived - first.bytesReceived) * 8 / dt};
    }

    // Longest time without a newly decoded frame in [from, to] (ms).
    longestFreeze(name, from, to = Date.now()) {
        const a = this.samples.get(name).filter((s) => s.t >= from && s.t <= to);
        let longest = 0;
        let lastChange = a.length ? a[0].t : from;
        for (let i = 1; i < a.length; i++) {
            if (a[i].framesDecoded > a[i - 1].framesDecoded) {
                longest = Math.max(longest, a[i].t - lastChange);
                lastChange = a[i].t;
            }
        }
        return Math.max(longest, (a.length ? a.at(-1).t : to) - lastChange);
    }

    // Frames decoded and kbit/s per 500 ms from `from` on, relative to `from` ("+t s: frames kbit").
    timeline(name, from) {
        const a = this.samples.get(name).filter((s) => s.t >= from);
        const out = [];
        let prev = a[0];
        for (const s of a) {
            if (s.t - prev.t < 500) continue;
            out.push(`+${((s.t - from) / 1000).toFixed(1)}: ${s.framesDecoded - prev.framesDecoded} f ${Math.round((s.bytesReceived - prev.bytesReceived) * 8 / (s.t - prev.t))} k lost ${s.packetsLost - prev.packetsLost} nack ${s.nackCount - prev.nackCount} rtx ${s.retransmittedPacketsReceived - prev.retransmittedPacketsReceived} pk ${s.packetsReceived - prev.packetsReceived}`);
            prev = s;
        }
        return out;
    }

    // Frames decoded per second from `from` to the last sample.
    meanFps(name, from) {
        const a = this.samples.get(name).filter((x) => x.t >= from);
        if (a.length < 2) return 0;
        return (a.at(-1).framesDecoded - a[0].framesDecoded) * 1000 / Math.max(1, a.at(-1).t - a[0].t);
    }

    // The lowest frame rate over 2 s windows ending in [from, to].
    minFps(name, from, to = Date.now()) {
        const a = this.samples.get(name);
        let min = Infinity;
        for (const s of a) {
            if (s.t < from + 2000 || s.t > to) continue;
            const first = a.find((x) => x.t >= s.t - 2000);
            min = Math.min(min, (s.framesDecoded - first.framesDecoded) * 1000 / Math.max(1, s.t - first.t));
        }
        return min;
    }
}

// Waits until `cond()` has held on every poll for `holdMs`.
async function waitSustained(ms, holdMs, what, cond) {
    let since = null;
    return waitFor(ms, what, () => {
        S.parts.forEach((p) => p.assertAlive());
        if (!cond()) {
            since = null;
            return false;
        }
        since = since || Date.now();
        return Date.now() - since >= holdMs ? since : false;
    }, 100);
}

// rtcd's log lines about `p`'s simulcast layer, with their times (ms since the epoch).
function layerLog(p, message) {
    return rtcdLogLines((l) => l.includes(message) && l.includes(p.sessionID)).map((l) => ({
        t: Date.parse(l.split(/\s+/)[0]),
        layer: (/layer="?(\w)"?/.exec(l) || [])[1],
        line: logMessage(l),
    }));
}

async function shareScreen(p, o) {
    const info = await p.eval((x) => window.e2e.prepareScreen(x), o);
    S.plugin.rtc(p.sessionID, RTC.SCREEN_ON, JSON.stringify({screenStreamID: info.streamID}));
    await p.eval(() => window.e2e.startScreen());
    summary.screen = info;
    return `stream ${info.streamID} ${info.settings.width}x${info.settings.height} via ${info.source}`;
}

const fmtRate = (r) => `${r.fps.toFixed(1)} fps, ${Math.round(r.kbps)} kbit/s`;

// A shares its screen with simulcast (l: 5 fps / 0.5 Mbit/s, h: 15 fps / 2.5 Mbit/s); B's
// downlink is limited with tc until B is on l for a while, then lifted; C is never limited.
async function scenarioSimulcast() {
    await setup();
    await joinAll();
    const [A, B, C] = S.parts;
    const viewers = [B, C];
    await check('screen-share-A', () => shareScreen(A, {noise: true}));
    await check('screen-A-decoded', () => expectVideo(A, viewers, 15000));
    const tracker = new VideoTracker(viewers);
    cleanups.push(() => tracker.stop());
    const onH = (n) => tracker.rate(n).fps >= 10;
    const onL = (n) => {
        const r = tracker.rate(n);
        return r.fps >= 2 && r.fps <= 7.5;
    };
    const rates = () => viewers.map((v) => `${v.name} ${fmtRate(tracker.rate(v.name))}`).join(', ');
    summary.simulcast = {limitKbit: LIMIT_KBIT};
    const tStart = Date.now();
    await check('viewers-on-h', async () => {
        const at = await waitSustained(30000, 2000, () => `not both on h (>= 10 fps) within 30 s: ${rates()}`, () => onH('B') && onH('C'));
        return `both >= 10 fps from +${((at - tStart) / 1000).toFixed(1)} s: ${rates()}`;
    });
    const port = (await B.stats()).selectedPair.local.port;
    const tLimit = Date.now();
    cleanups.push(async () => {
        S.lastMetrics = await scrapeMetrics().catch(() => null);
    });
    cleanups.push(() => { // B's frames and layer switches around the limit, also after a failure
        summary.simulcast.timeline = tracker.timeline('B', tLimit - 2000);
        summary.simulcast.metrics = S.lastMetrics;
        summary.simulcast.layerLog = layerLog(B, 'simulcast').map((x) => `+${((x.t - tLimit) / 1000).toFixed(2)} s ${x.line} ${x.layer}`);
    });
    const lift = limitPort(port, LIMIT_KBIT);
    progress(`B's downlink (UDP to 127.0.0.1:${port}) limited to ${LIMIT_KBIT} kbit/s`);
    const limited = await check('limited-viewer-moves-to-l', async () => {
        const at = await waitSustained(25000, 2000, () => `B not on l (2..7.5 fps) within 25 s of the limit: ${rates()}`, () => onL('B'));
        const target = layerLog(B, 'receiver target layer').filter((x) => x.t >= tLimit && x.layer === 'l')[0];
        const fwd = layerLog(B, 'simulcast: forwarding layer').filter((x) => x.t >= tLimit && x.layer === 'l')[0];
        const d = {
            targetLMs: target ? target.t - tLimit : null,
            switchLMs: fwd ? fwd.t - tLimit : null,
            observedMs: at - tLimit,
            freezeMs: tracker.longestFreeze('B', tLimit),
            rates: rates(),
        };
        if (!fwd) throw new CheckFailed(`B's frame rate fell but rtcd logged no switch to l: ${JSON.stringify(d)}`);
        return d;
    });
    summary.simulcast.down = limited;
    // Stay limited until 8 s after the switch (before the 10 s upgrade back-off runs out: without
    // bandwidth probing a retry of h is a guess, see the note in docs): B stays on l, C on h.
    await sleep(Math.max(2000, 8000 - (Date.now() - tLimit - limited.switchLMs)));
    await check('limited-viewer-stays-on-l', async () => {
        const from = tLimit + limited.observedMs;
        const maxFps = Math.max(...tracker.samples.get('B').filter((x) => x.t >= from + 2000).map((x) => tracker.rate('B').fps), 0);
        const ups = layerLog(B, 'simulcast: forwarding layer').filter((x) => x.t >= from && x.layer === 'h');
        if (ups.length) throw new CheckFailed(`B was switched back to h while limited: ${ups.map((x) => x.line).join(' | ')}`);
        if (!onL('B')) throw new CheckFailed(`B not on l while limited: ${rates()}`);
        return `${rates()}; limited for ${((Date.now() - tLimit) / 1000).toFixed(1)} s`;
    });
    const tLift = Date.now();
    lift();
    progress(`B's downlink limit lifted`);
    const up = await check('lifted-viewer-returns-to-h', async () => {
        const at = await waitSustained(30000, 2000, () => `B not back on h (>= 10 fps) within 30 s of the lift: ${rates()}`, () => onH('B'));
        const fwd = layerLog(B, 'simulcast: forwarding layer').filter((x) => x.t >= tLift && x.layer === 'h')[0];
        const target = layerLog(B, 'receiver target layer').filter((x) => x.t >= tLift && x.layer === 'h')[0];
        const lowKbps = limited.rates;
        return {
            targetHMs: target ? target.t - tLift : null,
            switchHMs: fwd ? fwd.t - tLift : null,
            observedMs: at - tLift,
            freezeMs: tracker.longestFreeze('B', tLift),
            rates: rates(),
            whileLimited: lowKbps,
        };
    });
    summary.simulcast.up = up;
    await check('unlimited-viewer-stays-on-h', async () => {
        const switches = layerLog(C, 'simulcast: forwarding layer').filter((x) => x.t >= tLimit && x.layer === 'l');
        const minFps = tracker.minFps('C', tLimit);
        const freeze = tracker.longestFreeze('C', tLimit);
        if (switches.length) throw new CheckFailed(`C was switched to l: ${switches.map((x) => x.line).join(' | ')}`);
        if (minFps < 8) throw new CheckFailed(`C's frame rate fell to ${minFps.toFixed(1)} fps`);
        return {minFps: Number(minFps.toFixed(1)), freezeMs: freeze};
    });
    await check('decoding-continuity', async () => {
        const d = {
            B: {onsetMs: tracker.longestFreeze('B', tLimit, tLimit + limited.observedMs), limitedMs: tracker.longestFreeze('B', tLimit + limited.observedMs, tLift), liftedMs: tracker.longestFreeze('B', tLift)},
            C: tracker.longestFreeze('C', tStart),
        };
        summary.simulcast.freezes = d;
        if (d.B.limitedMs > 1500 || d.B.liftedMs > 1500 || d.C > 1500) throw new CheckFailed(`a freeze longer than 1.5 s: ${JSON.stringify(d)}`);
        return d;
    });
    await tracker.stop();
    for (const p of S.parts) await check(`leave-${p.name}`, () => leaveParticipant(p));
}

// Prometheus text → {name: value} for the counters and histogram counts we look at.
async function scrapeMetrics() {
    const res = await fetch(`${summary.rtcd.url}/metrics`);
    const text = await res.text();
    const out = {};
    for (const line of text.split('\n')) {
        const m = /^(rtcd_rtc_(?:retransmissions_refused_total|nacks_received_total|nacks_sent_total|retransmitted_packets_total|direct_audio_packets_total|direct_video_packets_total|keyframe_wait_seconds_count|keyframe_wait_seconds_sum))\s+(\S+)/.exec(line);
        if (m) out[m[1]] = Number(m[2]);
    }
    return out;
}

async function callStats() {
    const res = await fetch(`${summary.rtcd.url}/calls/${summary.callID}/stats`, {headers: {Authorization: S.plugin.basic()}});
    if (res.status !== 200) throw new CheckFailed(`GET /calls/{id}/stats: HTTP ${res.status}`);
    return res.json();
}

const delta = (a, b, k) => (b[k] || 0) - (a[k] || 0);

// A speaks and shares its screen; LOSS_PERCENT % of the packets to B and from A are dropped for
// 12 s: audio and video keep flowing, NACKs and retransmissions rise and the call's quality
// stats show the loss; then the loss is removed and they settle.
async function scenarioLoss() {
    await setup();
    await joinAll();
    const [A, B, C] = S.parts;
    const viewers = [B, C];
    await check('unmute-A', () => unmuteBrowser(A));
    await check('screen-share-A', () => shareScreen(A, {allowCanvas: true, forceCanvas: true}));
    await check('media-A-received', async () => ({audio: await expectAudio(A, viewers, 15000), video: await expectVideo(A, viewers, 15000)}));
    const tracker = new VideoTracker(viewers);
    cleanups.push(() => tracker.stop());
    await sleep(3000);
    const sfuPort = summary.rtcd.icePortUDP;
    const portA = (await A.stats()).selectedPair.local.port;
    const portB = (await B.stats()).selectedPair.local.port;
    const m0 = await scrapeMetrics();
    const [a0, b0] = [await A.stats(), await B.stats()];
    const tLoss = Date.now();
    cleanups.push(() => {
        summary.loss.timelineC = tracker.timeline('C', tLoss - 1000);
    });
    const restore = dropRandomly([[sfuPort, portB], [portA, sfuPort]], LOSS_PERCENT);
    progress(`dropping ${LOSS_PERCENT} % of UDP packets rtcd -> B (:${portB}) and A (:${portA}) -> rtcd`);
    summary.loss = {percent: LOSS_PERCENT};
    const reported = await check('quality-stats-report-the-loss', async () => {
        let last = null;
        await waitFor(15000, () => `GET /calls/{id}/stats did not show the loss within 15 s: ${JSON.stringify(last)}`, async () => {
            last = await callStats();
            return last.loss_ratio.max >= LOSS_PERCENT / 200 && last.remote_loss_ratio.max >= LOSS_PERCENT / 200;
        }, 500);
        return {afterMs: Date.now() - tLoss, lossRatioMax: last.loss_ratio.max, remoteLossRatioMax: last.remote_loss_ratio.max, nacksReceived: last.nacks_received, retransmitted: last.retransmitted_packets};
    });
    summary.loss.reported = reported;
    await sleep(Math.max(0, 12000 - (Date.now() - tLoss)));
    const m1 = await scrapeMetrics();
    const [a1, b1] = [await A.stats(), await B.stats()];
    await check('media-continues-under-loss', async () => {
        const audio = sum(inboundFrom(b1, 'audio', A), (x) => x.packetsReceived) - sum(inboundFrom(b0, 'audio', A), (x) => x.packetsReceived);
        const outA = (st) => (st.outbound || []).filter((o) => o.kind === 'video');
        const d = {aNacksReceived: sum(outA(a1), (x) => x.nackCount) - sum(outA(a0), (x) => x.nackCount), aRetransmitted: sum(outA(a1), (x) => x.retransmittedPacketsSent) - sum(outA(a0), (x) => x.retransmittedPacketsSent), rtcdNacksSent: delta(m0, m1, 'rtcd_rtc_nacks_sent_total'), audioPacketsAtB: audio, meanFpsB: Number(tracker.meanFps('B', tLoss).toFixed(1)), meanFpsC: Number(tracker.meanFps('C', tLoss).toFixed(1)), minFpsB: Number(tracker.minFps('B', tLoss).toFixed(1)), minFpsC: Number(tracker.minFps('C', tLoss).toFixed(1)), freezeB: tracker.longestFreeze('B', tLoss), freezeC: tracker.longestFreeze('C', tLoss)};
        if (audio < 300) throw new CheckFailed(`B got only ${audio} audio packets in 12 s: ${JSON.stringify(d)}`);
        // Random loss costs a frame now and then (a lost keyframe waits for the next one):
        // video must keep coming, not be perfect.
        if (d.meanFpsB < 5 || d.meanFpsC < 5 || d.freezeB > 4000 || d.freezeC > 4000) throw new CheckFailed(`video stalled: ${JSON.stringify(d)}`);
        return d;
    });
    // rtcd sends the sender reports of the streams it seals itself (the core reports only what
    // it wrote): Chromium has a remote-outbound-rtp entry for A's audio and video at B.
    await check('sender-reports', async () => {
        const d = {
            audio: sum(inboundFrom(b1, 'audio', A), (x) => x.senderReports),
            video: sum(inboundFrom(b1, 'video', A), (x) => x.senderReports),
        };
        if (!(d.audio > 0 && d.video > 0)) throw new CheckFailed(`B received no sender reports for A's streams: ${JSON.stringify(d)}`);
        return d;
    });
    await check('retransmissions-rise', async () => {
        const vb0 = inboundFrom(b0, 'video', A);
        const vb1 = inboundFrom(b1, 'video', A);
        const d = {
            rtcdNacksReceived: delta(m0, m1, 'rtcd_rtc_nacks_received_total'),
            rtcdRetransmitted: delta(m0, m1, 'rtcd_rtc_retransmitted_packets_total'),
            rtcdNacksSent: delta(m0, m1, 'rtcd_rtc_nacks_sent_total'),
            // The audio and video rtcd forwards are sealed by the session itself (direct path,
            // AES-CM as Chromium negotiates it), and so are the retransmissions checked here.
            rtcdDirectVideo: delta(m0, m1, 'rtcd_rtc_direct_video_packets_total'),
            rtcdDirectAudio: delta(m0, m1, 'rtcd_rtc_direct_audio_packets_total'),
            chromiumBNacks: sum(vb1, (x) => x.nackCount) - sum(vb0, (x) => x.nackCount),
            chromiumBRetransmittedReceived: sum(vb1, (x) => x.retransmittedPacketsReceived) - sum(vb0, (x) => x.retransmittedPacketsReceived),
            chromiumARetransmittedSent: sum((a1.outbound || []).filter((o) => o.kind === 'video'), (x) => x.retransmittedPacketsSent) - sum((a0.outbound || []).filter((o) => o.kind === 'video'), (x) => x.retransmittedPacketsSent),
        };
        summary.loss.underLoss = d;
        for (const k of ['rtcdNacksReceived', 'rtcdRetransmitted', 'rtcdNacksSent', 'rtcdDirectVideo', 'rtcdDirectAudio', 'chromiumBRetransmittedReceived', 'chromiumARetransmittedSent']) {
            if (!(d[k] > 0)) throw new CheckFailed(`${k} did not rise: ${JSON.stringify(d)}`);
        }
        return d;
    });
    restore();
    const tRestore = Date.now();
    progress('loss removed');
    // Counters are sampled every 5 s: skip the period that still holds lossy seconds.
    await sleep(7000);
    const m2 = await scrapeMetrics();
    await sleep(6000);
    const m3 = await scrapeMetrics();
    await check('recovery-settles', async () => {
        const stats = await callStats();
        const d = {
            nacksReceived: delta(m2, m3, 'rtcd_rtc_nacks_received_total'),
            retransmitted: delta(m2, m3, 'rtcd_rtc_retransmitted_packets_total'),
            nacksSent: delta(m2, m3, 'rtcd_rtc_nacks_sent_total'),
            lossRatioMax: stats.loss_ratio.max,
            remoteLossRatioMax: stats.remote_loss_ratio.max,
            freezeB: tracker.longestFreeze('B', tRestore),
            freezeC: tracker.longestFreeze('C', tRestore),
            refused: delta(m2, m3, 'rtcd_rtc_retransmissions_refused_total'),
            // NACKs for packets rtcd never got (or no longer has) that it turned into a keyframe request.
            keyframesForHoles: rtcdLogLines((l) => l.includes('cannot resend: keyframe wanted')).length,
            underLoss: {nacksReceived: delta(m0, m1, 'rtcd_rtc_nacks_received_total'), retransmitted: delta(m0, m1, 'rtcd_rtc_retransmitted_packets_total'), nacksSent: delta(m0, m1, 'rtcd_rtc_nacks_sent_total')},
        };
        summary.loss.settled = d;
        if (d.nacksReceived > 3 || d.retransmitted > 10 || d.nacksSent > 3) throw new CheckFailed(`loss recovery did not settle within 13 s of removing the loss: ${JSON.stringify(d)}`);
        if (d.lossRatioMax > 0.01 || d.remoteLossRatioMax > 0.01) throw new CheckFailed(`stats still report loss: ${JSON.stringify(d)}`);
        return d;
    });
    await check('keyframe-wait', async () => {
        const m = await scrapeMetrics();
        const n = m.rtcd_rtc_keyframe_wait_seconds_count || 0;
        if (!n) throw new CheckFailed('rtcd_rtc_keyframe_wait_seconds has no observation for the two screen receivers');
        return {receivers: n, meanMs: Math.round(m.rtcd_rtc_keyframe_wait_seconds_sum * 1000 / n)};
    });
    await tracker.stop();
    for (const p of S.parts) await check(`leave-${p.name}`, () => leaveParticipant(p));
}

// ---------------------------------------------------------------------------------------------
// Main

async function finalStats() {
    for (const p of S.parts) {
        const s = summary.sessions[p.name] || (summary.sessions[p.name] = {});
        Object.assign(s, {
            offersRelayed: p.offers,
            answersRelayed: p.answersSent,
            candidatesRelayed: p.candidatesSent,
            answersFromRtcd: p.answersFromRtcd,
            offersFromRtcd: p.offersFromRtcd,
            candidatesFromRtcd: p.candidatesFromRtcd,
            remoteTracks: p.streams,
            peerErrors: p.peerErrors,
            signalErrors: p.signalErrors,
            closedByRtcd: p.rtcdClosedAt ? Number(((p.rtcdClosedAt - T0) / 1000).toFixed(3)) : null,
        });
        if (p.canStat()) {
            try {
                const st = await Promise.race([p.stats(), sleep(3000).then(() => null)]);
                if (st) {
                    s.final = {
                        connectionState: st.connectionState,
                        iceConnectionState: st.iceConnectionState,
                        signalingState: st.signalingState,
                        dcState: st.dcState,
                        dcIn: st.dcIn,
                        selectedPair: st.selectedPair,
                        inbound: st.inbound,
                        outbound: st.outbound,
                    };
                }
            } catch { /* page gone */ }
        }
        if (p.kind === 'aiortc') {
            s.aiortc = {exited: p.exited, connectionStates: p.connectionStates};
            const ls = p.lastStats;
            if (ls) { // the last stats taken before it left (aiortc has no page to ask afterwards)
                s.aiortc.lastStats = {t: ls.t, connectionState: ls.connectionState, signalingState: ls.signalingState, dcIn: ls.dcIn, transceivers: ls.transceivers, selectedPair: ls.selectedPair, inbound: ls.inbound, outbound: ls.outbound};
            }
            if (summary.failed) s.aiortc.stderrTail = p.stderrTail.slice(-20);
        }
        if (summary.failed) s.lastLogs = p.logs.slice(-15);
    }
    if (S.plugin) summary.ws = {sent: S.plugin.sent, received: S.plugin.received};
    if (rtcdLogFile) {
        summary.rtcd.warnLines = rtcdLogLines((l) => /\b(WARN|ERROR)\b/.test(l)).slice(-20);
    }
}

async function main() {
    const scenario = {'connect': scenarioConnect, 'three-party': scenarioThreeParty, 'aiortc-chromium': scenarioAiortcChromium, 'simulcast': scenarioSimulcast, 'loss': scenarioLoss}[opts.scenario];
    progress(`scenario ${opts.scenario}, client ${opts.client} (dcSignaling ${DC_SIGNALING}, dcLocking ${DC_LOCKING}), ${N} participants${AIORTC ? ' (A: Chromium, B: aiortc, dcSignaling false)' : ''}`);
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckFailed(`scenario did not finish within ${SCENARIO_TIMEOUT_MS / 1000} s`)), SCENARIO_TIMEOUT_MS);
    });
    try {
        await Promise.race([scenario(), timeout]);
        summary.ok = summary.checks.length > 0 && summary.checks.every((c) => c.ok);
    } catch (err) {
        if (!summary.failed) {
            const name = /within \d+ s$/.test(err.message) && err.message.startsWith('scenario') ? 'scenario-timeout' : 'harness-error';
            summary.failed = name;
            summary.stoppedAt = summary.stoppedAt || name;
            summary.checks.push({name, ok: false, detail: err instanceof CheckFailed ? err.message : (err.stack || String(err))});
            progress(`${name}: ${err instanceof CheckFailed ? err.message : (err.stack || err)}`);
        }
        summary.ok = false;
    } finally {
        clearTimeout(timer);
    }
    summary.timings.totalMs = Date.now() - T0;
    await Promise.race([finalStats(), sleep(10000)]);
    await runCleanups();
    if (summary.ok && summary.rtcd.dir && !process.env.E2E_KEEP) { // keep rtcd's config, data and log only when a check failed
        fs.rmSync(summary.rtcd.dir, {recursive: true, force: true});
        summary.rtcd.log = null;
    }
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    const failedCheck = summary.checks.find((c) => !c.ok);
    if (summary.ok) {
        progress(`RESULT: PASS (${summary.checks.length} checks, ${summary.warnings.length} warnings, ${(summary.timings.totalMs / 1000).toFixed(1)} s)`);
    } else {
        progress(`RESULT: FAIL at ${summary.failed}: ${failedCheck ? failedCheck.detail : '?'}`);
    }
    process.exit(summary.ok ? 0 : 1);
}

async function runCleanups() {
    while (cleanups.length) {
        const f = cleanups.pop();
        await Promise.race([Promise.resolve().then(f).catch(() => {}), sleep(10000)]);
    }
}

for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]]) {
    process.on(sig, () => {
        progress(`${sig}: cleaning up (rtcd, browser)`);
        Promise.race([runCleanups(), sleep(15000)]).finally(() => process.exit(code));
    });
}
main();
