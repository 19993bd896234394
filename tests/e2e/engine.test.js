// The call-engine face (seed 004) in Chromium, through the real server, with only the
// public SDK it serves: a group call with invitations (accept, reject, the caller's
// hang-up), audio heard through the room, volumes and every seed 004 event the app
// would listen to; the group call's record at a real HTTP app server; and a 1-to-1
// call started with `calls`, answered with `accept` and switched from video to audio.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor as waitForAtMost, audioLevel, startServer, stopServers, appServer as startApp, browserPage, closeBrowsers } from './harness.js';

const SECRET = 'e4'.repeat(32);
const waitFor = (what, fn, ms = 20000) => waitForAtMost(what, fn, ms);

let dir; let app; let base; let token;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-engine-'));
  app = await startApp();
  ({ base, token } = await startServer(dir, 'engine', `[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
on_group_call_evt_cb_url = "${app.url}/group_call_evt"
`));
});

after(async () => {
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A page signed in to a CallEngine as `user`: every event in `window.events`. */
async function enginePage(user) {
  const page = await browserPage(dir, user, `${base}/`);
  await page.evaluate(async ({ user, accessToken }) => {
    const sb = await import('/sdk/switchboard.js');
    window.sb = sb;
    window.events = [];
    window.roomAudio = document.createElement('audio');
    window.roomAudio.autoplay = true;
    document.body.appendChild(window.roomAudio);
    window.media = { audio: document.createElement('audio'), video: document.createElement('video') };
    window.media.audio.autoplay = true;
    document.body.append(window.media.audio, window.media.video);
    window.engine = await sb.CallEngine.login({ serverUrl: location.origin, userId: user, accessToken });
    for (const name of sb.CALL_EVENTS) window.engine.on(name, (p) => window.events.push({ name, ...p }));
  }, { user, accessToken: token(user) });
  return page;
}

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, name, pred = () => true) =>
  waitFor(`${name} on the page`, async () => (await eventsOf(page)).find((e) => e.name === name && pred(e)));

test('a group call through the call engine: invitations, answers, audio, volumes, seed 004 events and the record', async () => {
  const [alice, bob, carol] = [await enginePage('alice'), await enginePage('bob'), await enginePage('carol')];
  const callId = await alice.evaluate(() => window.engine.calls({
    userIdList: ['bob', 'carol'], callMediaType: window.sb.CALL_MEDIA_TYPE.AUDIO, userData: 'standup',
    mediaHtmlElement: { roomAudio: window.roomAudio },
  }));
  assert.match(callId, /^[0-9a-f]{32}$/);
  for (const page of [bob, carol]) {
    const rung = await waitEvent(page, 'onCallReceived');
    assert.deepEqual(
      { callerId: rung.callerId, calleeIdList: rung.calleeIdList, callMediaType: rung.callMediaType, userData: rung.userData, callId: rung.callId },
      { callerId: 'alice', calleeIdList: ['bob', 'carol'], callMediaType: 1, userData: 'standup', callId },
    );
  }
  await bob.evaluate(() => window.engine.accept({ mediaHtmlElement: { roomAudio: window.roomAudio } }));
  const begin = await waitEvent(alice, 'onCallBegin');
  assert.deepEqual([begin.callMediaType, begin.callRole], [1, 1]);
  assert.equal((await waitEvent(bob, 'onCallBegin')).roomID, begin.roomID, 'one roomID for everyone');
  await waitEvent(alice, 'onUserJoin', (e) => e.userId === 'bob');
  await waitEvent(bob, 'onUserJoin', (e) => e.userId === 'alice');
  await carol.evaluate(() => window.engine.reject());
  await waitEvent(carol, 'onCallCancelled', (e) => e.userId === 'carol');
  await waitEvent(alice, 'onUserReject', (e) => e.userId === 'carol');
  await waitEvent(bob, 'onUserReject', (e) => e.userId === 'carol');

  // Media is the room's: each hears the other, and volumes arrive by seed 004's name.
  for (const page of [alice, bob]) {
    await waitFor('room audio', () => page.evaluate(() => window.roomAudio.srcObject != null));
    const level = await waitFor('audio heard', async () => { const l = await audioLevel(page, 'room'); return l > 0.01 && l; });
    assert.ok(level > 0.01);
  }
  const volumes = await waitEvent(alice, 'onUserVoiceVolumeChanged', (e) => 'bob' in e.volumeMap);
  assert.ok(volumes.volumeMap.bob >= 0 && volumes.volumeMap.bob <= 100, JSON.stringify(volumes));
  await waitEvent(alice, 'onUserAudioAvailable', (e) => e.userId === 'bob' && e.isAudioAvailable);

  // Alice hangs up: two were left, so the call ends for Bob too.
  await alice.evaluate(() => window.engine.hangup());
  const aliceEnd = await waitEvent(alice, 'onCallEnd');
  assert.deepEqual([aliceEnd.callRole, aliceEnd.reason], [1, 1]);
  await waitEvent(bob, 'onUserLeave', (e) => e.userId === 'alice');
  const bobEnd = await waitEvent(bob, 'onCallEnd');
  assert.deepEqual([bobEnd.callRole, bobEnd.reason, bobEnd.roomID], [2, 1, begin.roomID]);
  assert.ok(bobEnd.totalTime > 1, JSON.stringify(bobEnd));

  const rec = await waitFor('the group call record', () => (app.hits['/group_call_evt'] ?? []).find((r) => r.call_id === callId));
  const results = JSON.parse(rec.members).map((m) => [m.user_id, m.result]);
  assert.deepEqual(results, [['alice', 'joined'], ['bob', 'joined'], ['carol', 'rejected']]);
  assert.equal(rec.end_reason, '1');
  // The engines are free for the next call.
  assert.equal(await alice.evaluate(() => window.engine.current), null);
});

test('calls with one user is a 1-to-1 call: accept, begin on both sides, tone heard, switched to audio, hang up', async () => {
  const [dan, erin] = [await enginePage('dan'), await enginePage('erin')];
  const sid = await dan.evaluate(() => window.engine.calls({
    userIdList: ['erin'], callMediaType: window.sb.CALL_MEDIA_TYPE.VIDEO,
    mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } },
  }));
  assert.match(sid, /^[0-9a-f-]{36}$/);
  const rung = await waitEvent(erin, 'onCallReceived');
  assert.deepEqual([rung.callerId, rung.calleeIdList, rung.callMediaType], ['dan', ['erin'], 2]);
  await erin.evaluate(() => window.engine.accept({ mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } } }));
  const [a, b] = [await waitEvent(dan, 'onCallBegin'), await waitEvent(erin, 'onCallBegin')];
  assert.deepEqual([a.callRole, b.callRole, a.roomID === b.roomID, a.callMediaType], [1, 2, true, 2]);
  const level = await waitFor('erin hears dan', async () => {
    const l = await erin.evaluate(async () => {
      const stream = window.media.audio.srcObject;
      if (!stream) return 0;
      const ctx = new AudioContext();
      await ctx.resume();
      const an = ctx.createAnalyser();
      ctx.createMediaStreamSource(stream).connect(an);
      const buf = new Float32Array(an.fftSize);
      let peak = 0;
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 50));
        an.getFloatTimeDomainData(buf);
        peak = Math.max(peak, Math.sqrt(buf.reduce((s, x) => s + x * x, 0) / buf.length));
      }
      await ctx.close();
      return peak;
    });
    return l > 0.01 && l;
  });
  assert.ok(level > 0.01);
  // Dan turns the call into an audio call: both hear it, and Dan's camera goes.
  await dan.evaluate(() => window.engine.switchCallMediaType(window.sb.CALL_MEDIA_TYPE.AUDIO));
  for (const page of [dan, erin]) {
    const changed = await waitEvent(page, 'onCallMediaTypeChanged');
    assert.deepEqual([changed.oldCallMediaType, changed.newCallMediaType], [2, 1]);
  }
  await waitEvent(erin, 'onUserVideoAvailable', (e) => e.userId === 'dan' && !e.isVideoAvailable);
  await erin.evaluate(() => window.engine.hangup());
  for (const page of [dan, erin]) {
    const end = await waitEvent(page, 'onCallEnd');
    assert.equal(end.reason, 1);
  }
  const rec = await waitFor('the call record', () => (app.hits['/call_evt'] ?? []).find((r) => r.sid === sid));
  assert.equal(rec.disconnect_reason, '1001');
});

test('signing in again elsewhere signs the earlier instance out (onKickedOffline), unless multi-device', async () => {
  const first = await enginePage('frank');
  const second = await enginePage('frank');
  await waitEvent(first, 'onKickedOffline');
  assert.equal((await eventsOf(second)).filter((e) => e.name === 'onKickedOffline').length, 0);
  // The one signed in now is the one rung.
  const gina = await enginePage('gina');
  await gina.evaluate(() => window.engine.calls({ userIdList: ['frank'], mediaHtmlElement: { peer: { audio: window.media.audio } } }));
  await waitEvent(second, 'onCallReceived', (e) => e.callerId === 'gina');
  assert.equal((await eventsOf(first)).filter((e) => e.name === 'onCallReceived').length, 0);
  await gina.evaluate(() => window.engine.hangup());
  await waitEvent(second, 'onCallCancelled', (e) => e.userId === 'gina');
  // With multi-device a third login leaves the second one signed in: both ring.
  const third = await browserPage(dir, 'frank3', `${base}/`);
  await third.evaluate(async (accessToken) => {
    const sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.engine = await sb.CallEngine.login({ serverUrl: location.origin, userId: 'frank', accessToken, multiDevice: true });
    for (const name of sb.CALL_EVENTS) window.engine.on(name, (p) => window.events.push({ name, ...p }));
  }, token('frank'));
  await gina.evaluate(() => window.engine.calls({ userIdList: ['frank'], mediaHtmlElement: { peer: { audio: window.media.audio } } }));
  await waitEvent(third, 'onCallReceived', (e) => e.callerId === 'gina');
  await waitFor('the second instance rung again', async () => (await eventsOf(second)).filter((e) => e.name === 'onCallReceived').length >= 2);
  assert.equal((await eventsOf(second)).filter((e) => e.name === 'onKickedOffline').length, 0);
  await gina.evaluate(() => window.engine.hangup());
});
