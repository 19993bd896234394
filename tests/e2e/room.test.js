// A video room with three Chromium pages through the real server, using only the
// public SDK served by it: each hears the room through its one roomAudio element and
// decodes the other two's video after requestPeerVideo; mute, camera off and leave reach
// the others as events; a real HTTP app server receives on_gcall_evt_cb S, C, …, E.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor as waitForAtMost, audioLevel, startServer, stopServers, appServer as startApp, browserPage, closeBrowsers } from './harness.js';

const SECRET = 'c3'.repeat(32);

const waitFor = (what, fn, ms = 20000) => waitForAtMost(what, fn, ms);

let dir; let app; let base; let token;
// on_gcall_evt_cb as received: the query's names in order, and its values.
const gcalls = () => (app.hits['/gcall_evt'] ?? []).map((q) => ({ names: Object.keys(q), q }));

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-room-'));
  app = await startApp();
  ({ base, token } = await startServer(dir, 'room', `[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_gcall_evt_cb_url = "${app.url}/gcall_evt"
`));
});

after(async () => {
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function openPage(name) {
  const page = await browserPage(dir, name, `${base}/`);
  await page.evaluate(async () => {
    window.sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.roomAudio = document.createElement('audio');
    window.roomAudio.autoplay = true;
    document.body.appendChild(window.roomAudio);
    window.views = {};
    window.delegate = new Proxy({}, { get: (_, evt) => (arg) => window.events.push({ evt, arg: JSON.parse(JSON.stringify(arg ?? null)) }) });
  });
  return page;
}

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt, pred = () => true) =>
  waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt && pred(e.arg)));

// The loudest RMS level a WebAudio analyser sees on the roomAudio element's stream.
const roomLevel = (page) => audioLevel(page, 'room');

// Frames each requested peer's <video> has shown.
const shown = (page) => page.evaluate(() => Object.fromEntries(Object.entries(window.views)
  .map(([u, el]) => [u, el.getVideoPlaybackQuality?.().totalVideoFrames ?? 0])));

test('three browsers in a video room hear and see each other; the app server sees every change', async () => {
  const names = ['ann', 'ben', 'cat'];
  const pages = {};
  for (const name of names) {
    const page = await openPage(name);
    pages[name] = page;
    await page.evaluate(async ({ name, token }) => {
      window.conf = new window.sb.Conference({ serverUrl: location.origin });
      await window.conf.joinConference({
        myId: name, myServiceId: 'web', roomId: 'weekly', mediaType: 'video', accessToken: token,
        displayName: `${name} (web)`, appServerData: `data-${name}`,
        mediaHtmlElement: { roomAudio: window.roomAudio }, delegate: window.delegate,
      });
    }, { name, token: token(name) });
    await waitEvent(page, 'evtConnected');
  }
  await waitEvent(pages.ann, 'evtPeerListUpdated', (a) => a.totalPeersCount === 2);
  const annPeers = await pages.ann.evaluate(() => window.conf.getPeersInfo().map((p) => p.displayName).sort());
  assert.deepEqual(annPeers, ['ben (web)', 'cat (web)']);

  // Everyone hears the room (the fake devices' beeps) through the one roomAudio element.
  for (const name of names) {
    const level = await waitFor(`${name} hears the room`, async () => { const l = await roomLevel(pages[name]); return l > 0.01 && l; });
    assert.ok(level > 0.01, `${name} hears the room (RMS ${level})`);
  }

  // No video arrives unasked; after requestPeerVideo each decodes the other two.
  for (const name of names) {
    const videoBytes = await pages[name].evaluate(async () => {
      let n = 0;
      (await window.conf.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') n += s.bytesReceived ?? 0; });
      return n;
    });
    assert.equal(videoBytes, 0, `${name} received video nobody asked for`);
  }
  for (const name of names) {
    for (const other of names.filter((n) => n !== name)) {
      await pages[name].evaluate(async (other) => {
        const el = document.createElement('video');
        el.autoplay = true; el.muted = true;
        document.body.appendChild(el);
        window.views[other] = el;
        await window.conf.requestPeerVideo({ userId: other, resolution: 'vga', videoViewElement: el });
      }, other);
    }
  }
  for (const name of names) {
    await waitFor(`${name} decodes both peers' video`, async () => {
      const s = await shown(pages[name]);
      return Object.keys(s).length === 2 && Object.values(s).every((n) => n > 5);
    });
  }

  // Mute, camera off and leave reach the others.
  await pages.ben.evaluate(() => window.conf.muteMyAudio(true));
  await waitEvent(pages.ann, 'evtPeersMicMuted', (peers) => peers[0].userId === 'ben');
  await waitEvent(pages.cat, 'evtPeersMicMuted', (peers) => peers[0].userId === 'ben');
  await pages.cat.evaluate(() => window.conf.disableVideo());
  await waitEvent(pages.ann, 'evtPeersVideoUpdated', (peers) => peers[0].userId === 'cat' && peers[0].videoEnabled === false);
  await pages.cat.evaluate(() => window.conf.leaveConference());
  await waitEvent(pages.cat, 'evtDisconnected', (d) => d.reason.strCode === 'PLANETKIT_DISCONNECT_REASON_NORMAL' && d.source === 'participant');
  const left = await waitEvent(pages.ann, 'evtPeerListUpdated', (a) => a.removedPeers.length === 1);
  assert.equal(left.arg.removedPeers[0].userId, 'cat');
  assert.equal(left.arg.totalPeersCount, 1);
  await pages.ben.evaluate(() => window.conf.leaveConference());
  await pages.ann.evaluate(() => window.conf.leaveConference());
  await waitEvent(pages.ann, 'evtDisconnected');

  // The app server: S, C, C, then media changes and leaves, E last, with every field.
  const seq = await waitFor('on_gcall_evt_cb E', () => gcalls().some((g) => g.q.sc === 'E') && gcalls());
  const summary = seq.map((g) => `${g.q.sc}${g.q.msc} ${g.q.user_id} ${g.q.online}`);
  assert.deepEqual(summary, [
    'SC ann 1', 'CC ben 2', 'CC cat 3', 'CM ben 3', 'CM cat 3', 'CD cat 2', 'CD ben 1', 'ED ann 0',
  ]);
  const fields = 'sid,svc_id,id,user_svc_id,user_id,host_svc_id,host_id,sc,setup_time,start_time,end_time,online,media_type,msc,stid,ts,rel_code,rel_code_str,ue_type,display_name,disconnect_reason,releaser_type,app_svr_data';
  for (const g of seq) {
    assert.equal(g.names.join(','), fields);
    assert.match(g.q.sid, /^[0-9a-f]{32}$/);
    assert.equal(g.q.svc_id, 'web');
    assert.equal(g.q.id, 'weekly');
    assert.equal(g.q.host_id, 'ann');
    assert.equal(g.q.media_type, 'V');
    assert.equal(g.q.ue_type, 'BROWSER');
    assert.equal(g.q.app_svr_data, `data-${g.q.user_id}`);
    assert.equal(g.q.display_name, `${g.q.user_id} (web)`);
  }
  const last = seq.at(-1).q;
  assert.equal(last.disconnect_reason, '1001');
  assert.equal(last.releaser_type, '3');
  assert.ok(Number(last.end_time) >= Number(last.start_time));
});

test('one engine per page: a call answered and a room joined on the same WebSocket', async () => {
  const dan = await openPage('dan');
  const eve = await openPage('eve');
  // Count the page's WebSockets: the engine must be the only one.
  await dan.evaluate(async (token) => {
    const Native = window.WebSocket;
    window.sockets = 0;
    window.WebSocket = class extends Native { constructor(...a) { super(...a); window.sockets += 1; } };
    window.engine = await window.sb.Engine.connect({
      serverUrl: location.origin, myId: 'dan', myServiceId: 'web', accessToken: token,
      onIncomingCall: async (inc) => {
        window.events.push({ evt: 'incoming', arg: inc.peerId });
        window.call = new window.sb.Call({ engine: window.engine });
        await window.call.verifyCall({ ccParam: inc.ccParam, delegate: window.delegate });
        await window.call.acceptCall();
      },
    });
  }, token('dan'));
  await eve.evaluate(async (token) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    await window.call.makeCall({ myId: 'eve', myServiceId: 'web', peerId: 'dan', accessToken: token, mediaType: 'audio', delegate: window.delegate });
  }, token('eve'));
  await waitEvent(dan, 'evtConnected');
  await waitEvent(eve, 'evtConnected');
  await eve.evaluate(() => window.call.endCall());
  await waitEvent(dan, 'evtDisconnected', (d) => d.reason.code === 1001 && d.source === 'caller');
  // The same engine, now in a room with eve.
  await dan.evaluate(async () => {
    window.conf = new window.sb.Conference({ engine: window.engine });
    await window.conf.joinConference({ roomId: 'after', mediaType: 'audio', mediaHtmlElement: { roomAudio: window.roomAudio }, delegate: window.delegate });
  });
  await eve.evaluate(async (token) => {
    window.conf = new window.sb.Conference({ serverUrl: location.origin });
    await window.conf.joinConference({ myId: 'eve', myServiceId: 'web', roomId: 'after', mediaType: 'audio', accessToken: token, mediaHtmlElement: { roomAudio: window.roomAudio }, delegate: window.delegate });
  }, token('eve'));
  await waitEvent(dan, 'evtPeerListUpdated', (a) => a.addedPeers.some((p) => p.userId === 'eve'));
  await waitFor('room audio playing', () => dan.evaluate(() => window.roomAudio.srcObject != null));
  const level = await waitFor('dan hears the room', async () => { const l = await roomLevel(dan); return l > 0.01 && l; });
  assert.ok(level > 0.01);
  await dan.evaluate(() => window.conf.leaveConference());
  await waitEvent(eve, 'evtPeerListUpdated', (a) => a.removedPeers.some((p) => p.userId === 'dan'));
  assert.equal(await dan.evaluate(() => window.sockets), 1, 'one WebSocket for the call and the room');
});

test('simulcast: a receiver that asks for qvga gets the small layer, one that asks for hd the full one', async () => {
  const sim = await openPage('sim');
  const lo = await openPage('lo');
  const hi = await openPage('hi');
  const join = (page, name, simulcast, cameraOn = true) => page.evaluate(async ({ name, token, simulcast, cameraOn }) => {
    window.conf = new window.sb.Conference({ serverUrl: location.origin });
    await window.conf.joinConference({
      myId: name, myServiceId: 'web', roomId: 'layers', mediaType: 'video', accessToken: token, simulcast, cameraOn,
      mediaHtmlElement: { roomAudio: window.roomAudio }, delegate: window.delegate,
    });
  }, { name, token: token(name), simulcast, cameraOn });
  await join(sim, 'sim', true);
  // The receivers keep their cameras off: on a busy machine three encoders make
  // Chromium's CPU adaptation shrink the sender's full layer, and the layers the server
  // picks (ranked by the bitrate they arrive at) are what is under test here.
  await join(lo, 'lo', false, false);
  await join(hi, 'hi', false, false);
  const watch = (page, resolution) => page.evaluate(async (resolution) => {
    const el = document.createElement('video');
    el.autoplay = true; el.muted = true;
    document.body.appendChild(el);
    window.views.sim = el;
    await window.conf.requestPeerVideo({ userId: 'sim', resolution, videoViewElement: el });
  }, resolution);
  await watch(lo, 'qvga');
  await watch(hi, 'hd');
  const width = (page) => page.evaluate(() => window.views.sim.videoWidth);
  await waitFor('both decode sim', async () => (await width(lo)) > 0 && (await width(hi)) > 0);
  // The full layer needs the sender's bandwidth estimate to grow: give it time.
  const seen = await waitFor('hd wider than qvga', async () => {
    const [l, h] = [await width(lo), await width(hi)];
    return h > l && { l, h };
  }, 30000).catch(async (e) => {
    // What the sender sent, and why not more (qualityLimitationReason: cpu, bandwidth).
    const layers = await sim.evaluate(async () => {
      const o = [];
      (await window.conf.pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') o.push({ rid: s.rid, w: s.frameWidth, fps: s.framesPerSecond, limit: s.qualityLimitationReason, active: s.active, bps: s.targetBitrate });
      });
      return o;
    });
    throw new Error(`${e.message}: widths ${await width(lo)}/${await width(hi)}, sender ${JSON.stringify(layers)}`);
  });
  console.log('simulcast widths', JSON.stringify(seen));
  assert.ok(seen.l <= 320, `qvga receiver gets the small layer (${seen.l} px wide)`);
  assert.ok(seen.h >= 2 * seen.l, `hd receiver gets the full layer (${seen.h} vs ${seen.l} px)`);
});
