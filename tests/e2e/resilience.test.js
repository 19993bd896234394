// Calls and rooms that survive a dropped signaling connection (the browser's WebSocket
// goes through a TCP proxy the test can cut: an abrupt reset, as when a phone moves from
// Wi-Fi to cellular or a NAT forgets the connection; media goes to the relay directly),
// and failures that reach the app with the right code. Playwright driving Debian's
// Chromium with fake devices, on 127.0.0.1, using only the public SDK.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, audioLevel, startServer, stopServers, appServer as startApp, sdkPage, answerCalls, closeBrowsers } from './harness.js';

const SECRET = 'c3'.repeat(32);
// Short, so that the test that lets it run out stays short.
const GRACE_MS = 6000;

let app; let dir; let base; let token; let records; const proxies = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-resilience-'));
  app = await startApp();
  // A short heartbeat and session timeout: a session whose client goes silent is closed
  // by the server within 3 s (the test of a server-side close uses it).
  ({ base, token } = await startServer(dir, 'server', `reconnect_grace_ms = ${GRACE_MS}
heartbeat_secs = 1
session_timeout_secs = 3
[limits]
calls_per_user_per_sec = 0.1
calls_per_user_burst = 2
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`));
  records = () => app.hits['/call_evt'] ?? [];
});

after(async () => {
  await closeBrowsers();
  for (const p of proxies) p.close();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * A TCP proxy to the server. `cut()` resets every connection through it (no close
 * frame, no FIN: the browser sees 1006); `close()` also stops listening, so nothing
 * reconnects.
 */
async function proxy() {
  const target = new URL(base);
  const sockets = new Set();
  const srv = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), '127.0.0.1');
    for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)); s.on('error', () => {}); }
    client.pipe(upstream); upstream.pipe(client);
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const p = {
    url: `http://127.0.0.1:${srv.address().port}`,
    connections: () => sockets.size / 2,
    cut: () => { for (const s of sockets) s.resetAndDestroy(); },
    close: () => { srv.close(); p.cut(); },
  };
  proxies.push(p);
  return p;
}

const openPage = (name) => sdkPage(dir, name, base);

const eventsOf = (page) => page.evaluate(() => window.events);
const count = async (page, evt) => (await eventsOf(page)).filter((e) => e.evt === evt).length;
const waitEvent = (page, evt, ms) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt), ms);
const audioBytes = (page) => page.evaluate(async () => {
  let n = 0;
  (await window.call.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.bytesReceived ?? 0; });
  return n;
});
const stillHearing = async (page) => {
  const before = await audioBytes(page);
  await waitFor('audio still arriving', async () => (await audioBytes(page)) > before + 2000);
  assert.ok(await audioLevel(page, 'peer') > 0.01, 'the peer is heard');
};

// Alice calls through `via` (a proxy); Bob listens and answers on the server directly.
async function connectedCall(alice, bob, via, caller, callee, tokenOf = token) {
  await answerCalls(bob, callee, tokenOf(callee));
  await alice.evaluate(async ({ token, caller, callee, via }) => {
    window.call = new window.sb.Call({ serverUrl: via });
    await window.call.makeCall({
      myId: caller, myServiceId: 'web', peerId: callee, accessToken: token, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate,
    });
  }, { token: tokenOf(caller), caller, callee, via: via.url });
  await waitEvent(alice, 'evtConnected');
  await waitEvent(bob, 'evtConnected');
  await stillHearing(alice);
  await stillHearing(bob);
}

test('a call survives its signaling connection being cut, and a new ICE connection', async () => {
  const via = await proxy();
  const [alice, bob] = [await openPage('alice'), await openPage('bob')];
  await connectedCall(alice, bob, via, 'alice-r', 'bob-r');

  // Cut Alice's WebSocket: her SDK reconnects and resumes; nobody is told the call ended.
  via.cut();
  await waitEvent(alice, 'evtReconnecting');
  await waitEvent(alice, 'evtReconnected');
  assert.equal(await count(alice, 'evtDisconnected') + await count(bob, 'evtDisconnected'), 0);
  await stillHearing(alice);
  await stillHearing(bob);
  // Cut twice more, quickly: each time it comes back.
  for (let i = 2; i <= 3; i++) {
    await waitFor('a new connection through the proxy', () => via.connections() > 0);
    via.cut();
    await waitFor(`reconnected ${i} times`, async () => (await count(alice, 'evtReconnected')) >= i);
  }

  // A network change moves the media too: a new-ICE offer makes a new connection to the
  // relay for the same party, and both hear each other on it.
  const ufrag = () => alice.evaluate(() => /a=ice-ufrag:(\S+)/.exec(window.call.pc.localDescription.sdp)[1]);
  const before = await ufrag();
  await alice.evaluate(() => window.call._negotiate(() => window.call._restartIce()));
  assert.notEqual(await ufrag(), before, 'new ICE credentials');
  await waitFor('ICE connected again', () => alice.evaluate(() => ['connected', 'completed'].includes(window.call.pc.iceConnectionState)));
  await stillHearing(alice);
  await stillHearing(bob);

  // The call ends as calls end: the record says NORMAL, not a network failure.
  await alice.evaluate(() => window.call.endCall());
  const a = (await waitEvent(alice, 'evtDisconnected')).arg;
  const b = (await waitEvent(bob, 'evtDisconnected')).arg;
  assert.deepEqual([a.reason.code, b.reason.code], [1001, 1001]);
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'alice-r'));
  assert.equal(rec.disconnect_reason, '1001');
  assert.equal(rec.releaser_type, '2');
});

test('a caller that cannot come back within the grace ends the call: NETWORK_UNSTABLE for the peer, 1611 for her', async () => {
  const via = await proxy();
  const [alice, bob] = [await openPage('alice2'), await openPage('bob2')];
  await connectedCall(alice, bob, via, 'alice-g', 'bob-g');
  const cutAt = Date.now();
  via.close();
  await waitEvent(alice, 'evtReconnecting');
  const b = (await waitEvent(bob, 'evtDisconnected', GRACE_MS + 10000)).arg;
  assert.deepEqual([b.reason.code, b.source, b.byRemote], [1301, 'caller', true]);
  const a = (await waitEvent(alice, 'evtDisconnected', GRACE_MS + 10000)).arg;
  assert.equal(a.reason.code, 1611);
  assert.equal(a.reason.strCode, 'PLANETKIT_DISCONNECT_REASON_WEB_SIGNALING_UNEXPECTED_DISCONNECTED');
  assert.ok(Date.now() - cutAt >= GRACE_MS - 1000, 'she tried for the whole grace');
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'alice-g'));
  assert.equal(rec.disconnect_reason, '1301');
});

// The room's level, once its audio element plays anything.
const roomLevel = async (page) => ((await page.evaluate(() => !!window.roomAudio?.srcObject)) ? audioLevel(page, 'room') : 0);

test('a room participant whose connection is cut, or whose network changes, stays in the room', async () => {
  const via = await proxy();
  const [ann, ben] = [await openPage('ann'), await openPage('ben')];
  const join = (page, user, serverUrl) => page.evaluate(async ({ token, user, serverUrl }) => {
    window.roomAudio = document.createElement('audio');
    document.body.appendChild(window.roomAudio);
    window.conf = new window.sb.Conference({ serverUrl });
    await window.conf.joinConference({
      myId: user, myServiceId: 'web', roomId: 'reconnect-room', accessToken: token, mediaType: 'audio',
      mediaHtmlElement: { roomAudio: window.roomAudio }, delegate: window.delegate,
    });
  }, { token: token(user), user, serverUrl });
  await join(ann, 'ann', via.url);
  await join(ben, 'ben', base);
  await waitFor('ann hears ben', async () => (await roomLevel(ann)) > 0.01);
  via.cut();
  await waitEvent(ann, 'evtReconnecting');
  await waitEvent(ann, 'evtReconnected');
  assert.equal(await count(ann, 'evtDisconnected'), 0);
  const removed = (await eventsOf(ben)).filter((e) => e.evt === 'evtPeerListUpdated' && e.arg.removedPeers.length);
  assert.equal(removed.length, 0, 'ben never saw ann leave');
  await waitFor('ann still hears ben', async () => (await roomLevel(ann)) > 0.01);
  await waitFor('ben still hears ann', async () => (await roomLevel(ben)) > 0.01);
  // Her network changes: a new ICE connection to the relay, the same participant.
  await ann.evaluate(() => window.conf._negotiate(() => window.conf._restartIce()));
  await waitFor('ICE connected again', () => ann.evaluate(() => ['connected', 'completed'].includes(window.conf.pc.iceConnectionState)));
  const annBytes = () => ann.evaluate(async () => {
    let n = 0;
    (await window.conf.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') n += s.bytesReceived ?? 0; });
    return n;
  });
  const b0 = await annBytes();
  await waitFor('ann receives on the new connection', async () => (await annBytes()) > b0 + 2000);
  await waitFor('ben hears ann after her ICE restart', async () => (await roomLevel(ben)) > 0.01);
  // Still a participant: her mute reaches ben through the new connection.
  await ann.evaluate(() => window.conf.muteMyAudio(true));
  await waitEvent(ben, 'evtPeersMicMuted');
  await ann.evaluate(() => window.conf.leaveConference());
  await waitEvent(ben, 'evtPeerListUpdated');
});

test('closing the page during a call tells the peer APP_DESTROY at once, not after the grace', async () => {
  const [alice, bob] = [await openPage('alice3'), await openPage('bob3')];
  await connectedCall(alice, bob, { url: base }, 'alice-p', 'bob-p');
  const left = Date.now();
  await bob.goto('about:blank');
  const a = (await waitEvent(alice, 'evtDisconnected')).arg;
  assert.deepEqual([a.reason.code, a.reason.strCode, a.source, a.byRemote], [1309, 'PLANETKIT_DISCONNECT_REASON_APP_DESTROY', 'callee', true]);
  assert.ok(Date.now() - left < GRACE_MS, 'told before the reconnect grace ran out');
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'alice-p'));
  assert.deepEqual([rec.disconnect_reason, rec.releaser_type], ['1309', '1']);
});

test('endCall before the call exists cancels it as soon as it does', async () => {
  const [alice, bob] = [await openPage('alice4'), await openPage('bob4')];
  // Bob is online: the call would ring.
  await bob.evaluate(async ({ token }) => {
    await window.sb.listenForCalls({ serverUrl: location.origin, myId: 'nobody-c', myServiceId: 'web', accessToken: token, onIncomingCall: () => {} });
  }, { token: token('nobody-c') });
  const ended = await alice.evaluate(async ({ token }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    const made = window.call.makeCall({ myId: 'alice-c', myServiceId: 'web', peerId: 'nobody-c', accessToken: token, mediaType: 'audio', delegate: window.delegate });
    await window.call.endCall();
    await made;
    return new Promise((resolve) => { const t = setInterval(() => { const e = window.events.find((x) => x.evt === 'evtDisconnected'); if (e) { clearInterval(t); resolve(e.arg); } }, 50); });
  }, { token: token('alice-c') });
  assert.deepEqual([ended.reason.code, ended.source], [1201, 'caller']);
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'alice-c'));
  assert.equal(rec.disconnect_reason, '1201');
});

test('refusals reject with SwitchboardError: a rate limit is SERVICE_TOO_MANY_REQUESTS (1512)', async () => {
  const alice = await openPage('alice5');
  const errors = await alice.evaluate(async ({ token }) => {
    const engine = await window.sb.Engine.connect({ serverUrl: location.origin, myId: 'alice-l', myServiceId: 'web', accessToken: token });
    const out = [];
    for (let i = 0; i < 4; i++) {
      const call = new window.sb.Call({ engine });
      try {
        await call.makeCall({ myId: 'alice-l', myServiceId: 'web', peerId: `nobody-${i}`, accessToken: token, mediaType: 'audio', delegate: {} });
        out.push(null);
      } catch (e) {
        out.push({ isError: e instanceof Error, isSb: e instanceof window.sb.SwitchboardError, reason: e.reason, code: e.code, message: e.message });
      }
    }
    return out;
  }, { token: token('alice-l') });
  const limited = errors.filter(Boolean);
  assert.ok(limited.length >= 1, JSON.stringify(errors));
  for (const e of limited) {
    assert.deepEqual([e.isError, e.isSb, e.reason, e.code], [true, true, 'SERVICE_TOO_MANY_REQUESTS', 1512], JSON.stringify(e));
    assert.equal(typeof e.message, 'string');
  }
});

test('media that cannot be negotiated ends the call with 1609 for both sides', async () => {
  const [alice, bob] = [await openPage('alice6'), await openPage('bob6')];
  // Alice's browser cannot apply the relay's answer.
  await alice.evaluate(() => { RTCPeerConnection.prototype.setRemoteDescription = () => Promise.reject(new DOMException('refused by the test', 'InvalidAccessError')); });
  await answerCalls(bob, 'bob-n', token('bob-n'));
  await alice.evaluate(async ({ token }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    await window.call.makeCall({ myId: 'alice-n', myServiceId: 'web', peerId: 'bob-n', accessToken: token, mediaType: 'audio', delegate: window.delegate });
  }, { token: token('alice-n') });
  const a = (await waitEvent(alice, 'evtDisconnected')).arg;
  const b = (await waitEvent(bob, 'evtDisconnected')).arg;
  assert.deepEqual([a.reason.code, a.source, a.byRemote], [1609, 'caller', false]);
  assert.deepEqual([b.reason.code, b.source, b.byRemote], [1609, 'caller', true]);
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'alice-n'));
  assert.equal(rec.disconnect_reason, '1609');
});

test('a token about to expire is refreshed mid-call: evtTokenExpiring, then refreshToken, and the call goes on', async () => {
  const [alice, bob] = [await openPage('alice7'), await openPage('bob7')];
  await answerCalls(bob, 'bob-t', token('bob-t'));
  // Alice's token expires in 50 s: the server warns at once (within 60 s of it).
  await alice.evaluate(async ({ token }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    await window.call.makeCall({
      myId: 'alice-t', myServiceId: 'web', peerId: 'bob-t', accessToken: token, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate,
    });
  }, { token: token('alice-t', 'web', 50) });
  const warned = (await waitEvent(alice, 'evtTokenExpiring')).arg;
  assert.ok(warned.expiresAt * 1000 - Date.now() < 60000, JSON.stringify(warned));
  await waitEvent(alice, 'evtConnected');
  await alice.evaluate((fresh) => window.call.refreshToken(fresh), token('alice-t'));
  // Refused tokens reject: one for another user.
  const refused = await alice.evaluate((other) => window.call.refreshToken(other).then(() => null, (e) => ({ isSb: e instanceof window.sb.SwitchboardError, reason: e.reason })), token('mallory-t'));
  assert.deepEqual(refused, { isSb: true, reason: 'AUTH_ERROR' });
  await stillHearing(alice);
  await alice.evaluate(() => window.call.endCall());
  const b = (await waitEvent(bob, 'evtDisconnected')).arg;
  assert.equal(b.reason.code, 1001);
});

test('a call survives the page going offline for 5 s and the server closing its silent session', async () => {
  // The default reconnect grace (15 s) on a server of its own: 5 s offline fits in it.
  const other = await startServer(dir, 'server15', `heartbeat_secs = 1
session_timeout_secs = 3
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
`);
  const [alice, bob] = [await sdkPage(dir, 'alice8', other.base), await sdkPage(dir, 'bob8', other.base)];
  await connectedCall(alice, bob, { url: other.base }, 'alice-o', 'bob-o', other.token);
  // Offline for 5 s (Playwright's network emulation): the WebSocket drops; back online,
  // the SDK reconnects within the grace and the call goes on.
  await alice.context().setOffline(true);
  await waitEvent(alice, 'evtReconnecting');
  await new Promise((r) => setTimeout(r, 5000));
  await alice.context().setOffline(false);
  await waitEvent(alice, 'evtReconnected');
  await stillHearing(alice);
  await stillHearing(bob);
  // The client goes silent (its heartbeat stops, as on a half-open connection): the server
  // closes the session (1001, heartbeat timeout) and the SDK comes back on a new one.
  const before = await count(alice, 'evtReconnected');
  await alice.evaluate(() => clearInterval(window.call.session.session.heartbeat));
  await waitFor('reconnected after the server closed the session', async () => (await count(alice, 'evtReconnected')) > before, 15000);
  assert.equal(await count(alice, 'evtDisconnected') + await count(bob, 'evtDisconnected'), 0);
  await stillHearing(alice);
  await alice.evaluate(() => window.call.endCall());
  assert.equal((await waitEvent(bob, 'evtDisconnected')).arg.reason.code, 1001);
});
