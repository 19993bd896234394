// The call-engine face (seed 004) in Chromium, through the real server, with only the
// public SDK it serves: a group call of five pages with invitations (accept, reject, no
// answer, invite mid-call, leave, hang-up), audio heard through the room, volumes,
// network quality and every seed 004 event the app would listen to; the group call's
// record at a real HTTP app server; a CallEngine page and a PlanetKit page calling each
// other; one instance per user unless multi-device; and a 1-to-1
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

test('four pages: A calls B, C and D; B accepts, C rejects, D never answers; A invites E; B leaves; A hangs up', async () => {
  const [a, b, c, d] = [await enginePage('alice'), await enginePage('bob'), await enginePage('carol'), await enginePage('dan')];
  await a.evaluate(() => window.engine.setSelfInfo('Alice A.', 'https://example.com/alice.png'));
  const callId = await a.evaluate(() => window.engine.calls({
    userIdList: ['bob', 'carol', 'dan'], callMediaType: window.sb.CALL_MEDIA_TYPE.AUDIO, timeout: 5, userData: 'standup',
    mediaHtmlElement: { roomAudio: window.roomAudio },
  }));
  assert.match(callId, /^[0-9a-f]{32}$/);
  for (const page of [b, c, d]) {
    const rung = await waitEvent(page, 'onCallReceived');
    assert.deepEqual(
      { callerId: rung.callerId, calleeIdList: rung.calleeIdList, callMediaType: rung.callMediaType, userData: rung.userData, callId: rung.callId },
      { callerId: 'alice', calleeIdList: ['bob', 'carol', 'dan'], callMediaType: 1, userData: 'standup', callId },
    );
    assert.deepEqual([rung.callerNickname, rung.callerAvatarUrl], ['Alice A.', 'https://example.com/alice.png']);
  }
  await b.evaluate(() => window.engine.accept({ mediaHtmlElement: { roomAudio: window.roomAudio } }));
  await c.evaluate(() => window.engine.reject());
  await waitEvent(c, 'onCallCancelled', (e) => e.userId === 'carol');
  await waitEvent(a, 'onUserReject', (e) => e.userId === 'carol');
  await waitEvent(a, 'onUserJoin', (e) => e.userId === 'bob');
  const begin = await waitEvent(a, 'onCallBegin');
  assert.deepEqual([begin.callMediaType, begin.callRole], [1, 1]);
  assert.equal((await waitEvent(b, 'onCallBegin')).roomID, begin.roomID, 'one roomID for everyone');
  // Dan's invitation runs out after 5 s.
  await waitEvent(a, 'onUserNoResponse', (e) => e.userId === 'dan');
  await waitEvent(d, 'onCallCancelled', (e) => e.userId === 'dan');
  const order = (await eventsOf(a)).map((e) => e.name).filter((n) => ['onUserReject', 'onCallBegin', 'onUserNoResponse'].includes(n));
  assert.equal(order.at(-1), 'onUserNoResponse', order.join());

  // Media is the room's: each hears the other; volumes and network quality name both.
  for (const page of [a, b]) {
    await waitFor('room audio', () => page.evaluate(() => window.roomAudio.srcObject != null));
    const level = await waitFor('audio heard', async () => { const l = await audioLevel(page, 'room'); return l > 0.01 && l; });
    assert.ok(level > 0.01);
    const volumes = await waitEvent(page, 'onUserVoiceVolumeChanged', (e) => 'alice' in e.volumeMap && 'bob' in e.volumeMap);
    assert.ok(Object.values(volumes.volumeMap).every((v) => v >= 0 && v <= 100), JSON.stringify(volumes));
    await waitEvent(page, 'onUserNetworkQualityChanged', (e) => ['alice', 'bob'].every((u) => e.networkQualityList.some((q) => q.userId === u)));
  }
  await b.evaluate(() => window.engine.closeMicrophone());
  await waitEvent(a, 'onUserAudioAvailable', (e) => e.userId === 'bob' && e.isAudioAvailable === false);

  // A invites E, who joins.
  const e = await enginePage('erin');
  await a.evaluate(() => window.engine.inviteUser({ userIdList: ['erin'] }));
  await waitEvent(b, 'onUserInviting', (ev) => ev.userId === 'erin');
  await waitEvent(e, 'onCallReceived', (ev) => ev.callId === callId);
  await e.evaluate(() => window.engine.accept({ mediaHtmlElement: { roomAudio: window.roomAudio } }));
  await waitEvent(a, 'onUserJoin', (ev) => ev.userId === 'erin');
  await waitEvent(b, 'onUserJoin', (ev) => ev.userId === 'erin');

  // B leaves; then A hangs up: fewer than two remain, so the call ends for E too.
  const left = await b.evaluate(async () => {
    const room = window.engine.current.owner;
    await window.engine.hangup();
    return [window.engine.current, room.ended, room.pc?.connectionState];
  });
  assert.deepEqual(left, [null, true, 'closed'], 'B left: its media is gone');
  await waitEvent(a, 'onUserLeave', (ev) => ev.userId === 'bob');
  await waitEvent(e, 'onUserLeave', (ev) => ev.userId === 'bob');
  await a.evaluate(() => window.engine.hangup());
  for (const [page, role] of [[a, 1], [b, 2], [e, 2]]) {
    const end = await waitEvent(page, 'onCallEnd');
    assert.equal(end.callRole, role);
    assert.ok(end.totalTime > 0 && end.reason === 1, JSON.stringify(end));
  }

  const rec = await waitFor('the group call record', () => (app.hits['/group_call_evt'] ?? []).find((r) => r.call_id === callId));
  const results = JSON.parse(rec.members).map((m) => [m.user_id, m.result]);
  assert.deepEqual(results, [['alice', 'joined'], ['bob', 'joined'], ['carol', 'rejected'], ['dan', 'no_response'], ['erin', 'joined']]);
  assert.equal(rec.end_reason, '1');
  assert.equal(await a.evaluate(() => window.engine.current), null, 'the engine is free for the next call');
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
  // Volumes and network quality in a 1-to-1 call too, naming both users, at both ends.
  for (const page of [dan, erin]) {
    const volumes = await waitEvent(page, 'onUserVoiceVolumeChanged', (e) => 'dan' in e.volumeMap && 'erin' in e.volumeMap);
    assert.ok(Object.values(volumes.volumeMap).every((v) => v >= 0 && v <= 100), JSON.stringify(volumes));
    assert.equal(volumes.callId, sid);
    await waitEvent(page, 'onUserNetworkQualityChanged', (e) => ['dan', 'erin'].every((u) => e.networkQualityList.some((q) => q.userId === u && q.quality >= 1 && q.quality <= 6)));
  }
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
  // queryRecentCalls: each sees the call from its side.
  // (Erin was also in the first test's group call: newest first, and only calls she was in.)
  const mine = await erin.evaluate(() => window.engine.queryRecentCalls({ limit: 5 }));
  assert.deepEqual([mine[0].callId, mine[0].scene, mine[0].inviter, mine[0].result, mine[0].role], [sid, 'SINGLE_CALL', 'dan', 'INCOMING', 2]);
  assert.ok(mine.every((c) => c.inviter === 'erin' || c.inviteList.includes('erin')), JSON.stringify(mine));
  const outgoing = await dan.evaluate(() => window.engine.queryRecentCalls({ result: 'OUTGOING' }));
  assert.deepEqual(outgoing.map((c) => c.callId), [sid]);
});

test('signing in again elsewhere signs the earlier instance out (onKickedOffline); with multi-device every device rings and the first answer wins', async () => {
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
  // The first to answer takes the call; the other device is told another one did.
  await third.evaluate(() => window.engine.accept({ mediaHtmlElement: { peer: { audio: document.createElement('audio') } } }));
  await waitEvent(second, 'onCallNotConnected', (e) => e.reason === 7 && e.userId === 'frank');
  await waitEvent(gina, 'onCallBegin');
  await gina.evaluate(() => window.engine.hangup());
});

test('a CallEngine page and a PlanetKit page call each other, both ways', async () => {
  const engine = await enginePage('ivy');
  const kit = await browserPage(dir, 'hank', `${base}/`);
  await kit.evaluate(async (accessToken) => {
    window.sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.media = { audio: document.createElement('audio'), video: document.createElement('video') };
    window.media.audio.autoplay = true;
    document.body.append(window.media.audio, window.media.video);
    window.delegate = new Proxy({}, { get: (_, evt) => (arg) => window.events.push({ name: evt, ...(arg ?? {}) }) });
    // Answers whatever rings, the PlanetKit way.
    await window.sb.listenForCalls({
      serverUrl: location.origin, myId: 'hank', myServiceId: 'web', accessToken,
      onIncomingCall: async (inc) => {
        window.call = new window.sb.Call({ serverUrl: location.origin });
        await window.call.verifyCall({ ccParam: inc.ccParam, mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate });
        await window.call.acceptCall();
      },
    });
  }, token('hank'));
  // The engine calls the PlanetKit page.
  await engine.evaluate(() => window.engine.calls({ userIdList: ['hank'], mediaHtmlElement: { peer: { audio: window.media.audio } } }));
  await waitEvent(engine, 'onCallBegin', (e) => e.callRole === 1);
  await waitEvent(kit, 'evtConnected');
  await engine.evaluate(() => window.engine.hangup());
  await waitEvent(kit, 'evtDisconnected');
  await waitEvent(engine, 'onCallEnd');
  // The PlanetKit page calls the engine.
  await kit.evaluate(async (accessToken) => {
    window.out = new window.sb.Call({ serverUrl: location.origin });
    await window.out.makeCall({
      myId: 'hank', myServiceId: 'web', peerId: 'ivy', accessToken, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate,
    });
  }, token('hank'));
  const rung = await waitEvent(engine, 'onCallReceived', (e) => e.callerId === 'hank');
  assert.deepEqual(rung.calleeIdList, ['ivy']);
  await engine.evaluate(() => window.engine.accept({ mediaHtmlElement: { peer: { audio: window.media.audio } } }));
  await waitEvent(engine, 'onCallBegin', (e) => e.callRole === 2);
  await waitFor('the PlanetKit caller connected', async () => (await eventsOf(kit)).filter((e) => e.name === 'evtConnected').length >= 2);
  await kit.evaluate(() => window.out.endCall());
  await waitFor('the engine hears the end', async () => (await eventsOf(engine)).filter((e) => e.name === 'onCallEnd').length >= 2);
});

test('onUserSigExpired: a token that runs out ends the session; login with a fresh one brings the user back', async () => {
  // Minted here as an app backend would (docs/sdk-web.md), expired 27 s ago: the
  // server's 30 s clock skew lets it in, then closes the session within seconds.
  const { createHmac } = await import('node:crypto');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'web', uid: 'kim', iss: 'web-key', iat: now - 60, exp: now - 27 })}`;
  const stale = `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
  const kim = await browserPage(dir, 'kim', `${base}/`);
  await kim.evaluate(async (accessToken) => {
    window.sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.engine = window.sb.CallEngine.createInstance({ serverUrl: location.origin });
    for (const name of window.sb.CALL_EVENTS) window.engine.on(name, (p) => window.events.push({ name, ...p }));
    await window.engine.login({ userId: 'kim', userSig: accessToken });
  }, stale);
  await waitEvent(kim, 'onUserSigExpired');
  await kim.evaluate((fresh) => window.engine.login({ userId: 'kim', userSig: fresh }), token('kim'));
  // Back: a call reaches her.
  const lee = await enginePage('lee');
  await lee.evaluate(() => window.engine.calls({ userIdList: ['kim'], mediaHtmlElement: { peer: { audio: window.media.audio } } }));
  await waitEvent(kim, 'onCallReceived', (e) => e.callerId === 'lee');
  await lee.evaluate(() => window.engine.hangup());
});
