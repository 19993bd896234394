// Browser-to-browser calls through the real server: Playwright (playwright-core)
// driving Debian's Chromium with fake media devices, everything on 127.0.0.1, using
// only the public SDK served by the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { chromium } from 'playwright-core';

const BIN = process.env.SWITCHBOARD_BIN ?? path.resolve('../../target/debug/switchboard');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const SECRET = 'b1'.repeat(32);

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

const waitFor = async (what, fn, ms = 15000) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

let server; let appServer; let dir; let base; let token; const records = [];
const browsers = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-'));
  appServer = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (u.pathname === '/call_evt') records.push(Object.fromEntries(u.searchParams));
    res.end('ok');
  });
  await new Promise((r) => appServer.listen(0, '127.0.0.1', r));
  const port = await freePort();
  const config = path.join(dir, 'switchboard.toml');
  fs.writeFileSync(config, `listen = "127.0.0.1:${port}"
data_dir = "${path.join(dir, 'data')}"
media_bind = "127.0.0.1:0"
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "http://127.0.0.1:${appServer.address().port}/call_evt"
`);
  server = spawn(BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: process.env.SB_LOG ?? 'warn' } });
  server.stderr.on('data', (d) => process.stderr.write(d));
  base = `http://127.0.0.1:${port}`;
  await waitFor('the server', () => fetch(`${base}/healthz`).then((r) => r.ok).catch(() => false));
  token = (user) => execFileSync(BIN, ['token', '--config', config, '--service', 'web', '--user', user]).toString().trim();
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  server?.kill('SIGKILL');
  appServer?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// `media`: 'fake' (fake camera and microphone, allowed), 'denied' (the user refuses
// access), 'none' (a machine without camera or microphone).
async function openPage(name, media = 'fake') {
  const mediaArgs = {
    fake: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    denied: ['--use-fake-device-for-media-stream', '--deny-permission-prompts'],
    none: ['--use-fake-ui-for-media-stream'],
  }[media];
  const ctx = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(dir, `${name}-`)), {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...mediaArgs,
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    ],
  });
  browsers.push(ctx);
  const page = ctx.pages()[0] ?? await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error`, e));
  page.on('console', (m) => { if (process.env.SB_LOG) console.error(`[${name}] ${m.text()}`); });
  await page.goto(`${base}/`);
  await page.evaluate(async () => {
    window.sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.media = {};
    for (const kind of ['audio', 'video']) {
      const el = document.createElement(kind);
      el.autoplay = true;
      el.muted = kind === 'video';
      document.body.appendChild(el);
      window.media[kind] = el;
    }
    window.delegate = new Proxy({}, { get: (_, evt) => (arg) => window.events.push({ evt, arg }) });
  });
  return page;
}

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt) => waitFor(`${evt}`, async () => (await eventsOf(page)).find((e) => e.evt === evt));

// Bytes received and frames decoded on the connection to the relay.
const inbound = (page) => page.evaluate(async () => {
  const out = { audioBytes: 0, videoFrames: 0 };
  (await window.call.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audioBytes += s.bytesReceived ?? 0;
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.videoFrames += s.framesDecoded ?? 0;
  });
  return out;
});

// The loudest level a WebAudio analyser sees on the peer's audio over ~1.5 s.
const peerLevel = (page) => page.evaluate(async () => {
  const ctx = new AudioContext();
  await ctx.resume();
  const src = ctx.createMediaStreamSource(window.call.peerStream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  src.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let peak = 0;
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 50));
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    peak = Math.max(peak, Math.sqrt(sum / buf.length));
  }
  await ctx.close();
  return peak;
});

for (const mediaType of ['audio', 'video']) {
  test(`two browsers make a ${mediaType} call through the server`, async () => {
    const [alice, bob] = [await openPage('alice'), await openPage('bob')];
    const caller = `alice-${mediaType}`; const callee = `bob-${mediaType}`;
    // Bob listens for calls offered directly by the server and answers.
    await bob.evaluate(async ({ token, callee }) => {
      await window.sb.listenForCalls({
        serverUrl: location.origin, myId: callee, myServiceId: 'web', accessToken: token,
        onIncomingCall: async (inc) => {
          window.events.push({ evt: 'incoming', arg: inc.peerId });
          window.call = new window.sb.Call({ serverUrl: location.origin });
          await window.call.verifyCall({
            ccParam: inc.ccParam, mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } }, delegate: window.delegate,
          });
          await window.call.acceptCall();
        },
      });
    }, { token: token(callee), callee });
    await alice.evaluate(async ({ token, caller, callee, mediaType }) => {
      window.call = new window.sb.Call({ serverUrl: location.origin });
      await window.call.makeCall({
        myId: caller, myServiceId: 'web', peerId: callee, accessToken: token, mediaType,
        mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } }, delegate: window.delegate,
      });
    }, { token: token(caller), caller, callee, mediaType });

    await waitEvent(alice, 'evtWaitConnected');
    await waitEvent(bob, 'evtVerified');
    await waitEvent(alice, 'evtConnected');
    await waitEvent(bob, 'evtConnected');

    // Audio flows both ways through the relay, and it is the fake device's beep.
    for (const page of [alice, bob]) {
      const first = await waitFor('inbound audio', async () => { const s = await inbound(page); return s.audioBytes > 0 && s; });
      await waitFor('growing inbound audio', async () => (await inbound(page)).audioBytes > first.audioBytes);
      const level = await peerLevel(page);
      assert.ok(level > 0.01, `the peer's beep is heard (RMS ${level})`);
      if (mediaType === 'video') await waitFor('decoded video frames', async () => (await inbound(page)).videoFrames > 5);
    }

    // Mute and video toggles reach the peer.
    await alice.evaluate(() => window.call.muteMyAudio(true));
    await waitEvent(bob, 'evtPeerMicMuted');
    await alice.evaluate(() => window.call.muteMyAudio(false));
    await waitEvent(bob, 'evtPeerMicUnmuted');
    if (mediaType === 'video') {
      await bob.evaluate(() => window.call.disableVideo());
      await waitEvent(alice, 'evtVideoDisabledByPeer');
    }
    // In an audio call this turns the camera on: the relay adds a line to send it on,
    // and one to Alice's connection to receive it on.
    await bob.evaluate(() => window.call.enableVideo());
    await waitEvent(alice, 'evtVideoEnabledByPeer');
    const before = (await inbound(alice)).videoFrames;
    await waitFor('alice decodes bob\'s video', async () => (await inbound(alice)).videoFrames > before + 5);
    if (mediaType === 'audio') {
      const shown = await alice.evaluate(() => window.media.video.srcObject?.getVideoTracks().length ?? 0);
      assert.equal(shown, 1, 'the peer video element shows the new track');
    }

    // The callee hangs up.
    await new Promise((r) => setTimeout(r, 1100));
    await bob.evaluate(() => window.call.endCall());
    const a = (await waitEvent(alice, 'evtDisconnected')).arg;
    const b = (await waitEvent(bob, 'evtDisconnected')).arg;
    assert.deepEqual([a.reason, a.source, a.byRemote], [{ code: 1001, strCode: 'NORMAL' }, 'callee', true]);
    assert.deepEqual([b.reason, b.source, b.byRemote], [{ code: 1001, strCode: 'NORMAL' }, 'callee', false]);

    const rec = await waitFor('the call record', () => records.find((r) => r.from_user_id === caller));
    assert.equal(rec.to_user_id, callee);
    assert.equal(rec.type, mediaType === 'video' ? 'V' : 'A');
    assert.equal(rec.disconnect_reason, '1001');
    assert.equal(rec.releaser_type, '1');
    assert.ok(Number(rec.duration) > 0, `duration ${rec.duration}`);
  });
}

test('getUserMedia failures reject makeCall with the web reasons 1602 and 1603', async () => {
  for (const [media, code, strCode] of [['denied', 1602, 'WEB_GUM_NOT_ALLOWED_ERROR'], ['none', 1603, 'WEB_GUM_NOT_FOUND_ERROR']]) {
    const page = await openPage(`gum-${media}`, media);
    const err = await page.evaluate(async ({ token }) => {
      const call = new window.sb.Call({ serverUrl: location.origin });
      try {
        await call.makeCall({ myId: 'gum-user', myServiceId: 'web', peerId: 'nobody', accessToken: token, mediaType: 'video', delegate: {} });
        return null;
      } catch (e) {
        return e;
      }
    }, { token: token('gum-user') });
    assert.ok(err, `makeCall rejects when ${media}`);
    assert.deepEqual([err.reason, err.code, err.strCode], ['internal_initialization_error', code, strCode], JSON.stringify(err));
  }
});

test('the CLI calls a browser: each receives the other through the server', async () => {
  const bob = await openPage('bob-cli');
  await bob.evaluate(async ({ token }) => {
    await window.sb.listenForCalls({
      serverUrl: location.origin, myId: 'bob-cli', myServiceId: 'web', accessToken: token,
      onIncomingCall: async (inc) => {
        window.call = new window.sb.Call({ serverUrl: location.origin });
        await window.call.verifyCall({ ccParam: inc.ccParam, mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate });
        await window.call.acceptCall();
      },
    });
  }, { token: token('bob-cli') });
  const cli = spawn(BIN, ['call', '--server', base, '--service', 'web', '--user', 'carol-cli', '--token', token('carol-cli'),
    '--to', 'bob-cli', '--tone', '440', '--hangup-after', '4'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = [];
  cli.stdout.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l))));
  const exited = new Promise((r) => cli.on('exit', r));

  await waitEvent(bob, 'evtConnected');
  await waitFor('inbound audio', async () => (await inbound(bob)).audioBytes > 0);
  // The browser hears the CLI's tone: the analyser's strongest bin is at 440 Hz.
  const hz = await waitFor('the 440 Hz tone', () => bob.evaluate(async () => {
    const ctx = new AudioContext();
    await ctx.resume();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 8192;
    ctx.createMediaStreamSource(window.call.peerStream).connect(analyser);
    await new Promise((r) => setTimeout(r, 600));
    const bins = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(bins);
    let best = 0;
    for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
    const found = (best * ctx.sampleRate) / analyser.fftSize;
    await ctx.close();
    return Math.abs(found - 440) <= 15 ? found : null;
  }));
  assert.ok(Math.abs(hz - 440) <= 15, `browser heard ${hz} Hz`);

  await exited;
  const media = lines.filter((l) => l.event === 'media');
  assert.ok(media.length > 0 && media.at(-1).packets_in > 50, `the CLI received the browser's audio: ${JSON.stringify(media.at(-1))}`);
  const end = lines.find((l) => l.event === 'disconnected');
  assert.deepEqual([end.reason.name, end.source.name], ['NORMAL', 'caller']);
  const b = (await waitEvent(bob, 'evtDisconnected')).arg;
  assert.deepEqual([b.reason.strCode, b.source, b.byRemote], ['NORMAL', 'caller', true]);
});
