// A call through an impaired network: two Chromium pages, each sending a tone of its
// own (a WAV file as the fake microphone) and the fake camera, through a UDP path in
// front of the relay that does what `tc netem` does to every datagram: random loss,
// delay with jitter (packets reorder), a blackout, a network that never comes back.
// netem itself is not in this machine's kernel (CONFIG_NET_SCH_NETEM is not set), so
// the impairment is applied here, to the media path only; signaling is not impaired.
//
// Each phase checks what a user would notice (the tone's frequency, video moving again,
// the call still up) and prints the figures docs/reliability.md records.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, startServer, stopServers, appServer as startApp, sdkPage, answerCalls, closeBrowsers, udpPath, freeUdpPort, toneWav } from './harness.js';

const SECRET = 'c3'.repeat(32);
const MEDIA_TIMEOUT_MS = 5000;

let app; let dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-netem-'));
  app = await startApp();
});

after(async () => {
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * netem's model, applied to each datagram each way: lost with probability `loss`, else
 * delayed by `delayMs` ± `jitterMs` (uniform and independent, so packets reorder as they
 * do under netem); during a blackout or while `down`, everything is lost.
 */
function netem() {
  const n = { loss: 0, delayMs: 0, jitterMs: 0, until: 0, down: false, passed: 0, dropped: 0 };
  n.shape = () => {
    if (n.down || Date.now() < n.until || Math.random() < n.loss) { n.dropped++; return null; }
    n.passed++;
    return n.delayMs + (Math.random() * 2 - 1) * n.jitterMs;
  };
  return n;
}


const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt, ms) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt), ms);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts measuring on a page: the spectrum of the peer's audio summed per phase
 * (`window.phase`), and the video frames decoded, sampled every 50 ms.
 */
const startMeter = (page) => page.evaluate(async () => {
  const ctx = new AudioContext();
  await ctx.resume();
  const an = ctx.createAnalyser();
  an.fftSize = 8192;
  an.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(window.call.peerStream).connect(an);
  const db = new Float32Array(an.frequencyBinCount);
  window.binHz = ctx.sampleRate / an.fftSize;
  window.spectra = {};
  window.phase = 'setup';
  window.frames = [];
  setInterval(() => {
    an.getFloatFrequencyData(db);
    const acc = (window.spectra[window.phase] ??= new Float64Array(db.length));
    for (let i = 0; i < db.length; i++) acc[i] += 10 ** (db[i] / 10);
  }, 100);
  setInterval(async () => {
    let f = 0;
    (await window.call.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') f += s.framesDecoded ?? 0; });
    window.frames.push([Date.now(), f]);
  }, 50);
});

/** The loudest frequency of a phase (100-4000 Hz) and the share of the energy around it. */
const tone = (page, phase) => page.evaluate((phase) => {
  const acc = window.spectra[phase];
  const lo = Math.floor(100 / window.binHz); const hi = Math.ceil(4000 / window.binHz);
  let best = lo; let total = 0;
  for (let i = lo; i < hi; i++) { total += acc[i]; if (acc[i] > acc[best]) best = i; }
  return { hz: Math.round(best * window.binHz), share: (acc[best - 1] + acc[best] + acc[best + 1]) / total };
}, phase);

/** The inbound audio counters (WebRTC stats) of a page. */
const audioIn = (page) => page.evaluate(async () => {
  const o = {};
  const stats = await window.call.getStats();
  stats.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      Object.assign(o, {
        codec: stats.get(s.codecId)?.mimeType,
        samples: s.totalSamplesReceived ?? 0, concealed: s.concealedSamples ?? 0, lost: s.packetsLost ?? 0,
        received: s.packetsReceived ?? 0, fec: s.fecPacketsReceived ?? 0,
        jbDelay: s.jitterBufferDelay ?? 0, jbEmitted: s.jitterBufferEmittedCount ?? 0,
      });
    }
  });
  return o;
});

/** What a phase did to a page's audio: decoded share, packets lost on the way, jitter buffer. */
const audioFigures = (a, b) => {
  const samples = b.samples - a.samples; const lost = b.lost - a.lost; const got = b.received - a.received;
  return {
    codec: b.codec,
    decoded: +(1 - (b.concealed - a.concealed) / samples).toFixed(3),
    lost: +(lost / (lost + got)).toFixed(3),
    fec: b.fec - a.fec,
    jitterBufferMs: Math.round((1000 * (b.jbDelay - a.jbDelay)) / Math.max(1, b.jbEmitted - a.jbEmitted)),
  };
};

/** Key frames a page decoded, and key frames asked of it (PLI) by the relay. */
const keyFrames = (page) => page.evaluate(async () => {
  const o = { decoded: 0, askedOfMe: 0 };
  (await window.call.getStats()).forEach((s) => {
    if (s.kind !== 'video') return;
    if (s.type === 'inbound-rtp') o.decoded += s.keyFramesDecoded ?? 0;
    if (s.type === 'outbound-rtp') o.askedOfMe += s.pliCount ?? 0;
  });
  return o;
});

/** Milliseconds from `at` until the page decoded a video frame again. */
const videoBackAfter = (page, at) => page.evaluate((at) => {
  const before = window.frames.filter(([t]) => t <= at).pop()?.[1] ?? 0;
  const back = window.frames.find(([t, f]) => t > at && f > before);
  return back ? back[0] - at : null;
}, at);

test('a call through loss, delay with jitter and a blackout keeps its tone and video; a network that never comes back ends it NETWORK_UNSTABLE', async (t) => {
  const net = netem();
  const relayPort = await freeUdpPort();
  const via = await udpPath(relayPort, net.shape);
  const srv = await startServer(dir, 'netem', `media_advertise = "127.0.0.1:${via.port}"
media_shards = 1
media_timeout_ms = ${MEDIA_TIMEOUT_MS}
# Media only through the shaped UDP path: ICE-TCP and TURN would go around it.
media_tcp = false
turn = false
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`, { mediaBind: `127.0.0.1:${relayPort}` });
  const HZ = { alice: 440, bob: 1000 };
  const open = (who) => sdkPage(dir, who, srv.base, { args: [`--use-file-for-fake-audio-capture=${toneWav(path.join(dir, `${who}.wav`), HZ[who])}`] });
  const [alice, bob] = [await open('alice'), await open('bob')];
  try {
    await answerCalls(bob, 'bob-n', srv.token('bob-n'));
    await alice.evaluate(async ({ token }) => {
      window.call = new window.sb.Call({ serverUrl: location.origin });
      await window.call.makeCall({
        myId: 'alice-n', myServiceId: 'web', peerId: 'bob-n', accessToken: token, mediaType: 'video',
        mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } }, delegate: window.delegate,
      });
    }, { token: srv.token('alice-n') });
    await waitEvent(alice, 'evtConnected');
    await waitEvent(bob, 'evtConnected');
    const pages = { alice, bob };
    for (const page of [alice, bob]) {
      await waitFor('decoded video', () => page.evaluate(async () => {
        let f = 0;
        (await window.call.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') f += s.framesDecoded ?? 0; });
        return f > 10;
      }));
      await startMeter(page);
    }

    // Each impairment for 4.5 s: 1.5 s to settle (the jitter buffer, the encoder's FEC),
    // then 3 s measured.
    const figures = {};
    const phases = [
      ['clean', {}],
      ['loss 10 %', { loss: 0.1 }],
      ['loss 30 %', { loss: 0.3 }],
      ['delay 200 ms ± 50 ms', { delayMs: 200, jitterMs: 50 }],
    ];
    for (const [name, shape] of phases) {
      Object.assign(net, { loss: 0, delayMs: 0, jitterMs: 0 }, shape);
      await sleep(1500);
      const before = { alice: await audioIn(alice), bob: await audioIn(bob) };
      for (const page of [alice, bob]) await page.evaluate((p) => { window.phase = p; }, name);
      await sleep(3000);
      for (const page of [alice, bob]) await page.evaluate(() => { window.phase = 'between'; });
      for (const [who, peer] of [['alice', 'bob'], ['bob', 'alice']]) {
        const heard = await tone(pages[who], name);
        figures[`${name}: ${who} hears`] = { ...heard, ...audioFigures(before[who], await audioIn(pages[who])) };
        assert.ok(Math.abs(heard.hz - HZ[peer]) <= 15, `${name}: ${who} hears ${peer}'s ${HZ[peer]} Hz, got ${JSON.stringify(heard)}`);
      }
    }

    // A 2 s blackout: video moves again soon after, the tone is back, nobody hung up.
    Object.assign(net, { loss: 0, delayMs: 0, jitterMs: 0 });
    await sleep(2000);
    const keysBefore = { alice: await keyFrames(alice), bob: await keyFrames(bob) };
    net.until = Date.now() + 2000;
    await sleep(2000);
    const back = net.until;
    for (const page of [alice, bob]) await page.evaluate(() => { window.phase = 'after blackout'; });
    await sleep(2500);
    for (const [who, peer] of [['alice', 'bob'], ['bob', 'alice']]) {
      const ms = await videoBackAfter(pages[who], back);
      figures[`blackout 2 s: ${who}'s video back after (ms)`] = ms;
      const [k0, k1] = [keysBefore[who], await keyFrames(pages[who])];
      figures[`blackout 2 s: ${who}: key frames decoded, PLIs received`] = [k1.decoded - k0.decoded, k1.askedOfMe - k0.askedOfMe];
      assert.ok(ms !== null, `${who}'s video moves again after the blackout`);
      const heard = await tone(pages[who], 'after blackout');
      assert.ok(Math.abs(heard.hz - HZ[peer]) <= 15, `after the blackout ${who} hears ${HZ[peer]} Hz, got ${JSON.stringify(heard)}`);
    }
    for (const page of [alice, bob]) {
      assert.equal((await eventsOf(page)).filter((e) => e.evt === 'evtDisconnected').length, 0, 'the call outlives a 2 s blackout');
    }

    // The network goes and does not come back: the call ends NETWORK_UNSTABLE.
    net.down = true;
    const downAt = Date.now();
    const a = (await waitEvent(alice, 'evtDisconnected', MEDIA_TIMEOUT_MS + 15000)).arg;
    const b = (await waitEvent(bob, 'evtDisconnected', MEDIA_TIMEOUT_MS + 15000)).arg;
    figures['network gone: call ended after (ms)'] = Date.now() - downAt;
    assert.deepEqual([a.reason.code, b.reason.code], [1301, 1301]);
    const rec = await waitFor('the call record', () => (app.hits['/call_evt'] ?? []).find((r) => r.from_user_id === 'alice-n'));
    assert.equal(rec.disconnect_reason, '1301');
    figures.datagrams = { passed: net.passed, dropped: net.dropped };
    t.diagnostic(JSON.stringify(figures, null, 1));
  } finally {
    via.close();
  }
});
