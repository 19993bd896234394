// Browser-to-browser calls through the real server: Playwright (playwright-core)
// driving Debian's Chromium with fake media devices, everything on 127.0.0.1, using
// only the public SDK served by the server.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, waitFor, audioLevel, startServer, stopServers, appServer as startApp, sdkPage, answerCalls, closeBrowsers, udpPath, freeUdpPort } from './harness.js';

const SECRET = 'b1'.repeat(32);

let app; let dir; let base; let token;
const records = { find: (f) => (app.hits['/call_evt'] ?? []).find(f) };

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-e2e-'));
  app = await startApp();
  ({ base, token } = await server('main'));
});

after(async () => {
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// A server with its own data dir and config.
const server = (name, { mediaBind = '127.0.0.1:0', extra = '' } = {}) => startServer(dir, name, `${extra}
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`, { mediaBind });

// `media`: 'fake', 'denied' or 'none' (harness.js); `at`: the server.
const openPage = (name, media = 'fake', at = base) => sdkPage(dir, name, at, { media });

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
const peerLevel = (page) => audioLevel(page, 'peer');

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
    // Called twice at once: one camera, one line.
    await bob.evaluate(() => Promise.all([window.call.enableVideo(), window.call.enableVideo()]));
    assert.equal(await bob.evaluate(() => window.call.localStream.getVideoTracks().length), 1);
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
    assert.deepEqual([a.reason, a.source, a.byRemote], [{ code: 1001, strCode: 'PLANETKIT_DISCONNECT_REASON_NORMAL' }, 'callee', true]);
    assert.deepEqual([b.reason, b.source, b.byRemote], [{ code: 1001, strCode: 'PLANETKIT_DISCONNECT_REASON_NORMAL' }, 'callee', false]);

    const rec = await waitFor('the call record', () => records.find((r) => r.from_user_id === caller));
    assert.equal(rec.to_user_id, callee);
    assert.equal(rec.type, mediaType === 'video' ? 'V' : 'A');
    assert.equal(rec.disconnect_reason, '1001');
    assert.equal(rec.releaser_type, '1');
    assert.ok(Number(rec.duration) > 0, `duration ${rec.duration}`);
  });
}

// Bob answers whatever rings; Alice makes a video call to him. `options` go to `new Call`.
async function videoCall(alice, bob, { caller, callee, tokenOf = token, options = {} }) {
  await bob.evaluate(async ({ token, callee, options }) => {
    await window.sb.listenForCalls({
      serverUrl: location.origin, myId: callee, myServiceId: 'web', accessToken: token,
      onIncomingCall: async (inc) => {
        window.call = new window.sb.Call({ serverUrl: location.origin, ...options });
        await window.call.verifyCall({ ccParam: inc.ccParam, mediaHtmlElement: { peer: { video: window.media.video } }, delegate: window.delegate });
        await window.call.acceptCall();
      },
    });
  }, { token: tokenOf(callee), callee, options });
  await alice.evaluate(async ({ token, caller, callee, options }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin, ...options });
    await window.call.makeCall({
      myId: caller, myServiceId: 'web', peerId: callee, accessToken: token, mediaType: 'video',
      mediaHtmlElement: { peer: { video: window.media.video } }, delegate: window.delegate,
    });
  }, { token: tokenOf(caller), caller, callee, options });
}

// The video codec each side receives, and frames decoded.
const videoCodec = (page) => page.evaluate(async () => {
  const stats = await window.call.getStats();
  let out = null;
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video' && s.codecId) {
      out = { codec: stats.get(s.codecId)?.mimeType, framesDecoded: s.framesDecoded ?? 0 };
    }
  });
  return out;
});

test('two browsers that both offer only H.264 get H.264 video through the relay', async () => {
  const [alice, bob] = [await openPage('alice-h264'), await openPage('bob-h264')];
  await videoCall(alice, bob, { caller: 'alice-h264', callee: 'bob-h264', options: { videoCodecs: ['H264'] } });
  await waitEvent(bob, 'evtConnected');
  for (const page of [alice, bob]) {
    const v = await waitFor('decoded H.264 frames', async () => { const v = await videoCodec(page); return v?.framesDecoded > 10 && v; });
    assert.equal(v.codec, 'video/H264');
  }
  await alice.evaluate(() => window.call.endCall());
  await waitEvent(bob, 'evtDisconnected');
});

// A lossy network in front of the relay: a UDP proxy that forwards between each client
// and the relay (one upstream socket per client, as a NAT would) and drops every
// `nth` RTP packet each way. STUN, DTLS and RTCP pass.
async function lossyProxy(relayPort, nth) {
  const counts = { up: 0, down: 0, dropped: 0 };
  const isRtp = (m) => m.length > 12 && m[0] >= 128 && m[0] <= 191 && !((m[1] & 0x7f) >= 64 && (m[1] & 0x7f) <= 95);
  const drop = (dir, m) => isRtp(m) && ++counts[dir] % nth === 0 && ++counts.dropped;
  const path = await udpPath(relayPort, (dir, m) => (drop(dir, m) ? null : 0));
  return { ...path, counts };
}

// Video statistics of one page: what it received and what it sent.
const videoStats = (page) => page.evaluate(async () => {
  const out = { framesDecoded: 0, nackSent: 0, nackReceived: 0, retransmitted: 0, pliReceived: 0 };
  (await window.call.getStats()).forEach((s) => {
    if (s.kind !== 'video') return;
    if (s.type === 'inbound-rtp') { out.framesDecoded += s.framesDecoded ?? 0; out.nackSent += s.nackCount ?? 0; }
    if (s.type === 'outbound-rtp') {
      out.nackReceived += s.nackCount ?? 0; out.retransmitted += s.retransmittedPacketsSent ?? 0; out.pliReceived += s.pliCount ?? 0;
    }
  });
  return out;
});

test('video recovers from packet loss on the way to and from the relay (NACK)', async (t) => {
  const relayPort = await freeUdpPort();
  const proxy = await lossyProxy(relayPort, 25); // 4 % of RTP each way
  const lossy = await server('lossy', { mediaBind: `127.0.0.1:${relayPort}`, extra: `media_advertise = "127.0.0.1:${proxy.port}"\nmedia_shards = 1` });
  try {
    const [alice, bob] = [await openPage('alice-loss', 'fake', lossy.base), await openPage('bob-loss', 'fake', lossy.base)];
    const tokenOf = lossy.token;
    await videoCall(alice, bob, { caller: 'alice-loss', callee: 'bob-loss', tokenOf });
    await waitEvent(bob, 'evtConnected');
    for (const page of [alice, bob]) await waitFor('decoded video', async () => (await videoStats(page)).framesDecoded > 10);
    // Several seconds through the lossy network.
    await waitFor('NACKs both ways', async () => {
      const [a, b] = [await videoStats(alice), await videoStats(bob)];
      return a.nackSent > 0 && b.nackSent > 0 && a.nackReceived > 0 && b.nackReceived > 0;
    }, 20000);
    const [a0, b0] = [await videoStats(alice), await videoStats(bob)];
    await new Promise((r) => setTimeout(r, 2000));
    const [a1, b1] = [await videoStats(alice), await videoStats(bob)];
    // Each browser asked the relay to resend what the proxy dropped on the way down, and
    // resent what the relay asked for on the way up; the picture keeps moving.
    for (const [who, s0, s1] of [['alice', a0, a1], ['bob', b0, b1]]) {
      assert.ok(s1.retransmitted > 0, `${who} retransmitted on the relay's NACKs: ${JSON.stringify(s1)}`);
      assert.ok(s1.framesDecoded - s0.framesDecoded >= 20, `${who} keeps decoding under loss: ${JSON.stringify([s0, s1])}`);
    }
    assert.ok(proxy.counts.dropped > 20, `the proxy dropped packets: ${JSON.stringify(proxy.counts)}`);
    t.diagnostic(JSON.stringify({ alice: a1, bob: b1, proxy: proxy.counts }));
    await alice.evaluate(() => window.call.endCall());
    await waitEvent(bob, 'evtDisconnected');
  } finally {
    proxy.close();
  }
});

test('getUserMedia failures reject makeCall with the web reasons 1602 and 1603', async () => {
  for (const [media, code, strCode] of [['denied', 1602, 'PLANETKIT_DISCONNECT_REASON_WEB_RTC_NOT_ALLOWED_ERROR'], ['none', 1603, 'PLANETKIT_DISCONNECT_REASON_WEB_RTC_NOT_FOUND_ERROR']]) {
    const page = await openPage(`gum-${media}`, media);
    const err = await page.evaluate(async ({ token }) => {
      const call = new window.sb.Call({ serverUrl: location.origin });
      try {
        await call.makeCall({ myId: 'gum-user', myServiceId: 'web', peerId: 'nobody', accessToken: token, mediaType: 'video', delegate: {} });
        return null;
      } catch (e) {
        return { reason: e.reason, code: e.code, strCode: e.strCode, isError: e instanceof window.sb.SwitchboardError };
      }
    }, { token: token('gum-user') });
    assert.ok(err, `makeCall rejects when ${media}`);
    assert.deepEqual([err.reason, err.code, err.strCode, err.isError], ['internal_initialization_error', code, strCode, true], JSON.stringify(err));
  }
});

test('the CLI calls a browser: each receives the other through the server', async () => {
  const bob = await openPage('bob-cli');
  await answerCalls(bob, 'bob-cli', token('bob-cli'));
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
  assert.deepEqual([b.reason.strCode, b.source, b.byRemote], ['PLANETKIT_DISCONNECT_REASON_NORMAL', 'caller', true]);
});
