// Device control through the public SDK, with Chromium's fake devices: start with the
// microphone off, switch microphone and camera mid-call without renegotiating, turn the
// camera off (released: its track ends) and on again, share the screen, choose the speaker.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, startServer, stopServers, sdkPage, answerCalls, closeBrowsers } from './harness.js';

let dir; let base; let token;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-devices-'));
  ({ base, token } = await startServer(dir, 'server', `[[service]]
id = "web"
api_key = "web-key"
api_secret = "${'e5'.repeat(32)}"
`));
});

after(async () => {
  await closeBrowsers();
  stopServers();
  fs.rmSync(dir, { recursive: true, force: true });
});

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt));
const inbound = (page) => page.evaluate(async () => {
  const out = { audio: 0, frames: 0 };
  (await window.call.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio += s.bytesReceived ?? 0;
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.frames += s.framesDecoded ?? 0;
  });
  return out;
});
const growing = async (page, key, what) => {
  const before = (await inbound(page))[key];
  await waitFor(what, async () => (await inbound(page))[key] > before + (key === 'audio' ? 2000 : 5));
};

test('devices: mic off at start, microphone and camera switched mid-call, camera released and back, screen shared, speaker chosen', async () => {
  const [alice, bob] = [await sdkPage(dir, 'alice', base), await sdkPage(dir, 'bob', base)];
  await answerCalls(bob, 'bob-d', token('bob-d'));
  // Alice starts on a chosen microphone, muted.
  const devices = await alice.evaluate(async () => {
    await navigator.mediaDevices.getUserMedia({ audio: true, video: true }).then((s) => s.getTracks().forEach((t) => t.stop()));
    return window.sb.getMediaDevices();
  });
  assert.ok(devices.audioInput.length >= 1 && devices.videoInput.length >= 1, JSON.stringify(devices));
  const [firstMic, otherMic] = [devices.audioInput[0].deviceId, devices.audioInput.at(-1).deviceId];
  await alice.evaluate(async ({ token, mic }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    await window.call.makeCall({
      myId: 'alice-d', myServiceId: 'web', peerId: 'bob-d', accessToken: token, mediaType: 'video', micOn: false,
      mediaDeviceId: { inputAudio: mic }, mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } }, delegate: window.delegate,
    });
  }, { token: token('alice-d'), mic: firstMic });
  await waitEvent(alice, 'evtConnected');
  await waitEvent(bob, 'evtPeerMicMuted');
  const micOf = () => alice.evaluate(() => { const t = window.call.localStream.getAudioTracks()[0]; return { id: t.getSettings().deviceId, enabled: t.enabled }; });
  assert.deepEqual(await micOf(), { id: firstMic, enabled: false });
  await alice.evaluate(() => window.call.muteMyAudio(false));
  await waitEvent(bob, 'evtPeerMicUnmuted');
  await growing(bob, 'audio', 'bob hears alice');
  await growing(bob, 'frames', 'bob sees alice');

  // Another microphone, mid-call: the same line, no renegotiation, still heard.
  const offers = () => alice.evaluate(() => window.call.pc.localDescription.sdp.length);
  const sdpBefore = await offers();
  await alice.evaluate((id) => window.call.changeAudioInputDevice(id), otherMic);
  assert.deepEqual(await micOf(), { id: otherMic, enabled: true });
  assert.equal(await offers(), sdpBefore, 'no renegotiation');
  await growing(bob, 'audio', 'bob hears the new microphone');
  // Another camera (or the same one again): video goes on.
  await alice.evaluate((id) => window.call.changeVideoInputDevice(id), devices.videoInput.at(-1).deviceId);
  await growing(bob, 'frames', 'bob sees the new camera');

  // Camera off releases it: its track ends, none is left; on again opens it anew.
  const old = await alice.evaluate(() => {
    window.oldCam = window.call.localStream.getVideoTracks()[0];
    return window.oldCam.readyState;
  });
  assert.equal(old, 'live');
  await alice.evaluate(() => window.call.disableVideo());
  assert.deepEqual(await alice.evaluate(() => [window.oldCam.readyState, window.call.localStream.getVideoTracks().length]), ['ended', 0]);
  await waitEvent(bob, 'evtVideoDisabledByPeer');
  await alice.evaluate(() => window.call.enableVideo());
  assert.equal(await alice.evaluate(() => window.call.localStream.getVideoTracks()[0]?.readyState), 'live');
  await waitEvent(bob, 'evtVideoEnabledByPeer');
  await growing(bob, 'frames', 'bob sees alice again');

  // Screen share on the same video line: bob's picture becomes the screen (another size),
  // then the camera again.
  const width = () => bob.evaluate(() => window.media.video.videoWidth);
  const camWidth = await waitFor('bob shows alice\'s camera', async () => (await width()) || null);
  await alice.evaluate(() => window.call.startMyScreenShare());
  const shared = await waitFor('bob shows the screen', async () => { const w = await width(); return w && w !== camWidth ? w : null; });
  await alice.evaluate(() => window.call.stopMyScreenShare());
  await waitFor('bob shows the camera again', async () => (await width()) === camWidth);
  assert.notEqual(shared, camWidth);

  // The speaker: Chromium has setSinkId.
  const sink = await bob.evaluate(async () => {
    const out = (await window.sb.getMediaDevices()).audioOutput[0]?.deviceId ?? 'default';
    await window.call.setAudioOutputDevice(out);
    return [out, window.media.audio.sinkId];
  });
  assert.equal(sink[1], sink[0] === 'default' ? sink[1] : sink[0]);

  await alice.evaluate(() => window.call.endCall());
  await waitEvent(bob, 'evtDisconnected');
});
