// The browser SDK as an app on its own origin uses it: imported from the Switchboard
// server by a page served elsewhere (CORS), it makes a call; and a start the server
// refuses rejects its promise once and fires no delegate event.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { waitFor, startServer, stopServers, sdkPage, browserPage, answerCalls, closeBrowsers } from './harness.js';

const SECRET = 'c3'.repeat(32);
let dir; let base; let token; let app;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-sdk-'));
  ({ base, token } = await startServer(dir, 'server', `[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
`));
  // The app's own web server: another origin (another port) than Switchboard's.
  app = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end('<!doctype html><title>An app</title><audio id="peer" autoplay></audio>');
  });
  await new Promise((r) => app.listen(0, '127.0.0.1', r));
});

after(async () => {
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

// An access token minted as docs/sdk-web.md tells app backends to: HS256 over the
// claims, keyed with the service's API secret.
function mintToken(secret, { service, user, apiKey, ttl }) {
  const b64 = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: service, uid: user, iss: apiKey, iat: now, exp: now + ttl })}`;
  return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
}

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt));

test('a page on another origin imports the SDK from the server and makes a call', async () => {
  const appOrigin = `http://127.0.0.1:${app.address().port}`;
  assert.notEqual(appOrigin, base);
  const alice = await browserPage(dir, 'alice', `${appOrigin}/`);
  const bob = await sdkPage(dir, 'bob', base);
  await answerCalls(bob, 'bob', token('bob'));
  const loaded = await alice.evaluate(async (server) => {
    window.sb = await import(`${server}/sdk/switchboard.js`);
    window.events = [];
    window.delegate = new Proxy({}, { get: (_, evt) => (arg) => window.events.push({ evt, arg: JSON.parse(JSON.stringify(arg ?? null)) }) });
    const types = await fetch(`${server}/sdk/switchboard.d.ts`);
    return { origin: location.origin, call: typeof window.sb.Call, types: types.ok && (await types.text()).includes('export declare class Call') };
  }, base);
  assert.deepEqual(loaded, { origin: appOrigin, call: 'function', types: true });
  await alice.evaluate(async ({ server, token }) => {
    window.call = new window.sb.Call({ serverUrl: server });
    await window.call.makeCall({
      myId: 'alice', myServiceId: 'web', peerId: 'bob', accessToken: token, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: document.getElementById('peer') } }, delegate: window.delegate,
    });
  }, { server: base, token: token('alice') });
  await waitEvent(alice, 'evtConnected');
  await waitEvent(bob, 'evtConnected');
  // Bob's microphone arrives on the app's page.
  await waitFor('audio from bob', () => alice.evaluate(async () => {
    let bytes = 0;
    (await window.call.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') bytes += s.bytesReceived ?? 0; });
    return bytes > 2000;
  }));
  await alice.evaluate(() => window.call.endCall());
  const ended = (await waitEvent(bob, 'evtDisconnected')).arg;
  assert.deepEqual([ended.reason.code, ended.source, ended.byRemote], [1001, 'caller', true]);
});

test('a start the server refuses rejects once and fires no evtDisconnected', async () => {
  const page = await sdkPage(dir, 'carol', base);
  const outcome = await page.evaluate(async ({ server, good, expired, forged }) => {
    const out = [];
    const attempt = async (what, run) => {
      const before = window.events.length;
      try { await run(); out.push({ what, resolved: true }); } catch (e) {
        out.push({ what, isSb: e instanceof window.sb.SwitchboardError, reason: e.reason, code: e.code ?? null });
      }
      // Long enough for the private connection to close and any late event to fire.
      await new Promise((r) => setTimeout(r, 700));
      out.at(-1).events = window.events.slice(before).map((e) => e.evt);
    };
    const base = { myId: 'carol', myServiceId: 'web', mediaType: 'audio', delegate: window.delegate };
    await attempt('call myself', () => new window.sb.Call({ serverUrl: server }).makeCall({ ...base, accessToken: good, peerId: 'carol' }));
    await attempt('bad user id', () => new window.sb.Call({ serverUrl: server }).makeCall({ ...base, accessToken: good, peerId: 'not valid!' }));
    await attempt('expired token', () => new window.sb.Call({ serverUrl: server }).makeCall({ ...base, accessToken: expired, peerId: 'dave' }));
    await attempt('forged token', () => new window.sb.Call({ serverUrl: server }).makeCall({ ...base, accessToken: forged, peerId: 'dave' }));
    await attempt('room id = my id', () => new window.sb.Conference({ serverUrl: server }).joinConference({ ...base, accessToken: good, roomId: 'carol' }));
    return out;
  }, {
    server: base,
    good: mintToken(SECRET, { service: 'web', user: 'carol', apiKey: 'web-key', ttl: 3600 }),
    expired: mintToken(SECRET, { service: 'web', user: 'carol', apiKey: 'web-key', ttl: -600 }),
    forged: mintToken('d4'.repeat(32), { service: 'web', user: 'carol', apiKey: 'web-key', ttl: 3600 }),
  });
  const ok = (what, reason, code) => ({ what, isSb: true, reason, code, events: [] });
  assert.deepEqual(outcome, [
    ok('call myself', 'id_conflict', null),
    ok('bad user id', 'invalid_user_id', null),
    ok('expired token', 'AUTH_ERROR', 1303),
    ok('forged token', 'SERVICE_ACCESS_TOKEN_ERROR', 1501),
    ok('room id = my id', 'id_conflict', null),
  ]);
});
