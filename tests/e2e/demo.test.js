// The demo page at / on embedded defaults, used as a person would: two users sign
// in, one video-calls the other, the other accepts, mutes and hangs up; both read the
// reason in words. Then the page's states one by one: a ringing box that goes when the
// call ends, a call that takes the page, end screens that say who ended it, a room left
// behind clean. SCREENSHOT_CALL, SCREENSHOT_ROOM, SCREENSHOT_ENDED and
// SCREENSHOT_ROOM_ENDED (paths) save the pictures of docs/ (see docs/sdk-web.md).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, browserPage, closeBrowsers } from './harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-demo-'));
const closers = [];
let base;

before(async () => {
  const port = await freePort();
  const server = spawn(BIN, ['serve', '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`],
    { stdio: 'ignore', env: { ...process.env, RUST_LOG: 'warn' } });
  closers.push(async () => server.kill('SIGKILL'));
  base = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 100 && !(await fetch(`${base}healthz`).then((r) => r.ok).catch(() => false)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  await closeBrowsers();
  for (const c of closers.reverse()) await c();
  fs.rmSync(dir, { recursive: true, force: true });
});

const browser = (name) => browserPage(dir, name, base, { viewport: { width: 1100, height: 800 } });

async function signIn(page, user) {
  await page.fill('#user', user);
  await page.click('#signinBtn');
  await page.waitForSelector('#dial:not(.hidden)');
}

test('two people call each other from the demo page', async () => {
  const [alice, bob] = [await browser('alice'), await browser('bob')];
  for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
    await signIn(page, user);
    assert.match(await page.textContent('#me'), new RegExp(`${user} · demo`));
  }
  await alice.fill('#peer', 'bob');
  await alice.click('#videoBtn');
  await bob.waitForSelector('#incoming:not(.hidden)');
  assert.equal(await bob.textContent('#inWho'), 'alice is calling');
  assert.equal(await bob.textContent('#inKind'), 'Video call');
  await bob.click('#acceptBtn');
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => /^\d\d:\d\d$/.test(document.getElementById('state').textContent));
    await page.waitForFunction(() => document.getElementById('peerVideo').videoWidth > 0);
  }
  await bob.click('#muteBtn');
  await alice.waitForSelector('#peerMuted:not(.hidden)');
  if (process.env.SCREENSHOT_CALL) {
    await new Promise((r) => setTimeout(r, 1500));
    await alice.screenshot({ path: process.env.SCREENSHOT_CALL });
  }
  await bob.click('#hangupBtn');
  for (const page of [alice, bob]) await page.waitForSelector('#ended:not(.hidden)');
  assert.equal(await alice.textContent('#why'), 'bob hung up');
  assert.match(await alice.textContent('#code'), /NORMAL \(1001\) · by bob/);
  assert.equal(await bob.textContent('#why'), 'You hung up');
  assert.match(await bob.textContent('#code'), /NORMAL \(1001\) · by you/);
  // A voice call upgraded to video: Bob turns his camera on, Alice sees him.
  for (const page of [alice, bob]) await page.click('#againBtn');
  await alice.fill('#peer', 'bob');
  await alice.click('#voiceBtn');
  await bob.waitForSelector('#incoming:not(.hidden)');
  assert.equal(await bob.textContent('#inKind'), 'Voice call');
  await bob.click('#acceptBtn');
  await alice.waitForFunction(() => /^\d\d:\d\d$/.test(document.getElementById('state').textContent));
  assert.ok(await alice.isHidden('#peerVideo'), 'a voice call shows no video');
  assert.equal(await bob.textContent('#camBtn'), 'Camera on');
  await bob.click('#camBtn');
  await bob.waitForSelector('#myVideo:not(.hidden)');
  await alice.waitForSelector('#peerVideo:not(.hidden)');
  await alice.waitForFunction(() => document.getElementById('peerVideo').videoWidth > 0);
  await alice.click('#hangupBtn');
  await bob.waitForSelector('#ended:not(.hidden)');
  assert.match(await bob.textContent('#code'), /NORMAL \(1001\) · by alice/);
  // Someone who is not online is rung until they come online or the ring time ends
  // (the demo service has no push); the caller may give up.
  await alice.click('#againBtn');
  await alice.fill('#peer', 'nobody');
  await alice.click('#voiceBtn');
  await alice.waitForFunction(() => document.getElementById('state').textContent === 'Ringing…');
  await alice.click('#hangupBtn');
  await alice.waitForSelector('#ended:not(.hidden)');
  assert.equal(await alice.textContent('#why'), 'Cancelled');
  assert.match(await alice.textContent('#code'), /CANCEL \(1201\) · by you/);

  // The room tab: both join a video room, see each other's tile with video, a talking
  // ring and network bars; one mutes, one leaves.
  for (const page of [alice, bob]) await page.click('#againBtn');
  for (const page of [alice, bob]) {
    await page.fill('#roomName', 'standup');
    await page.click('#joinVideoBtn');
    await page.waitForSelector('#room:not(.hidden)');
  }
  for (const [page, other] of [[alice, 'bob'], [bob, 'alice']]) {
    await page.waitForFunction(() => document.querySelectorAll('#tiles .tile').length === 2);
    await page.waitForFunction((o) => document.querySelector(`#tile-${o} video`)?.videoWidth > 0, other);
    await page.waitForFunction((o) => document.querySelector(`#tile-${o} .bars i.on`) != null, other, { timeout: 15000 });
    await page.waitForFunction(() => document.querySelector('#tiles .tile.talking') != null, null, { timeout: 15000 });
    assert.equal(await page.textContent('#roomCount'), '2 in the room');
  }
  if (process.env.SCREENSHOT_ROOM) await alice.screenshot({ path: process.env.SCREENSHOT_ROOM });
  await bob.click('#roomMuteBtn');
  await alice.waitForSelector('#tile-bob .mic:not(.hidden)');
  await bob.click('#leaveBtn');
  await bob.waitForSelector('#roomEnded:not(.hidden)');
  assert.equal(await bob.textContent('#roomWhy'), 'You left the room');
  await alice.waitForFunction(() => document.querySelectorAll('#tiles .tile').length === 1);
});

test('demo page states: the ringing box goes with its call, a call takes the page, end screens are clean and say who ended it, a room left leaves nothing', async () => {
  const [carol, dave] = [await browser('carol'), await browser('dave')];
  const errors = [];
  const missing = [];
  for (const page of [carol, dave]) {
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('response', (r) => { if (r.status() >= 400) missing.push(`${r.status()} ${r.url()}`); });
  }
  // Loaded again with the listeners on: nothing the page asks for is missing (favicon).
  for (const page of [carol, dave]) await page.reload();
  const icon = await fetch(`${base}favicon.ico`);
  assert.equal(icon.status, 200);
  assert.equal(icon.headers.get('content-type'), 'image/svg+xml');
  await signIn(carol, 'carol');
  await signIn(dave, 'dave');

  // Cancelled while it rings: dave's ringing box goes with the call.
  await carol.fill('#peer', 'dave');
  await carol.click('#voiceBtn');
  await dave.waitForSelector('#incoming:not(.hidden)');
  await carol.click('#hangupBtn');
  await dave.waitForSelector('#incoming', { state: 'hidden' });
  await carol.waitForSelector('#ended:not(.hidden)');
  assert.equal(await carol.textContent('#why'), 'Cancelled');
  assert.match(await carol.textContent('#code'), /CANCEL \(1201\) · by you/);
  assert.ok(await dave.isVisible('#dial'), 'dave is back where he was');

  // A video call takes the page: no room form above it, its controls in view.
  await carol.click('#againBtn');
  await carol.fill('#peer', 'dave');
  await carol.click('#videoBtn');
  await dave.waitForSelector('#incoming:not(.hidden)');
  await dave.click('#acceptBtn');
  for (const page of [carol, dave]) {
    await page.waitForFunction(() => /^\d\d:\d\d$/.test(document.getElementById('state').textContent));
    await page.waitForFunction(() => document.getElementById('peerVideo').videoWidth > 0);
    assert.ok(await page.isHidden('#roomJoin') && await page.isHidden('#dial'), 'only the call is on the page');
    const box = await page.locator('#hangupBtn').boundingBox();
    assert.ok(box && box.y + box.height <= 800, `Hang up in view at 1100×800: ${JSON.stringify(box)}`);
  }
  // Dave mutes, then hangs up: carol's end screen has no badge and no frozen video.
  await dave.click('#muteBtn');
  await carol.waitForSelector('#peerMuted:not(.hidden)');
  await dave.click('#hangupBtn');
  for (const page of [carol, dave]) {
    await page.waitForSelector('#ended:not(.hidden)');
    assert.ok(await page.isHidden('#peerMuted') && await page.isHidden('#peerCamOff'), 'no stale badge');
    assert.ok(await page.isHidden('#peerVideo') && await page.isHidden('#myVideo'), 'no frozen video');
    assert.ok(await page.isVisible('#avatar'));
    assert.equal(await page.evaluate(() => document.getElementById('peerVideo').srcObject), null);
  }
  if (process.env.SCREENSHOT_ENDED) await carol.screenshot({ path: process.env.SCREENSHOT_ENDED });
  assert.equal(await carol.textContent('#why'), 'dave hung up');
  assert.equal(await dave.textContent('#why'), 'You hung up');
  assert.match(await dave.textContent('#code'), /· by you$/);
  for (const page of [carol, dave]) await page.click('#againBtn');
  assert.ok(await carol.isVisible('#roomJoin') && await carol.isVisible('#dial'), 'back to both forms');

  // A room: carol leaves, and nothing of it stays on her page.
  for (const page of [carol, dave]) {
    await page.fill('#roomName', 'retro');
    await page.click('#joinVoiceBtn');
    await page.waitForSelector('#room:not(.hidden)');
  }
  await carol.waitForFunction(() => document.getElementById('roomCount').textContent === '2 in the room');
  await carol.click('#leaveBtn');
  await carol.waitForSelector('#roomEnded:not(.hidden)');
  assert.equal(await carol.textContent('#roomWhy'), 'You left the room');
  assert.match(await carol.textContent('#roomCode'), /NORMAL \(1001\) · by you/);
  assert.equal(await carol.evaluate(() => document.querySelectorAll('#tiles .tile').length), 0, 'no tiles left');
  assert.ok(await carol.isHidden('#roomCount'), 'no count of a room she left');
  if (process.env.SCREENSHOT_ROOM_ENDED) await carol.screenshot({ path: process.env.SCREENSHOT_ROOM_ENDED });
  await dave.waitForFunction(() => document.getElementById('roomCount').textContent === '1 in the room');
  await dave.click('#leaveBtn');
  await dave.waitForSelector('#roomEnded:not(.hidden)');

  assert.deepEqual(errors, [], 'no script errors on either page');
  assert.deepEqual(missing, [], 'nothing the pages asked for was missing');
});

test('a group call from the demo page: each invitee\'s state on screen, then the room view', async () => {
  const [ann, ben, cat] = [await browser('ann'), await browser('ben'), await browser('cat')];
  for (const [page, user] of [[ann, 'ann'], [ben, 'ben'], [cat, 'cat']]) {
    await signIn(page, user);
    await page.waitForSelector('#groupDial:not(.hidden)');
  }
  await ann.fill('#groupPeers', 'ben, cat');
  await ann.click('#groupVoiceBtn');
  await ann.waitForSelector('#invitee-ben[data-state="ringing"]');
  for (const page of [ben, cat]) {
    await page.waitForSelector('#incoming:not(.hidden)');
    assert.match(await page.textContent('#inKind'), /Group voice call/);
  }
  assert.equal(await ben.textContent('#inWho'), 'ann is calling you and cat');
  await ben.click('#acceptBtn');
  await cat.click('#declineBtn');
  await ann.waitForSelector('#invitee-ben[data-state="joined"]');
  await ann.waitForSelector('#invitee-cat[data-state="declined"]');
  await ann.waitForSelector('#tile-ben');
  await ben.waitForSelector('#tile-ann');
  await ann.waitForFunction(() => document.getElementById('roomState').textContent === 'Connected');
  // Ann hangs up: two were left, so it is over for Ben too.
  await ann.click('#leaveBtn');
  await ann.waitForSelector('#roomEnded:not(.hidden)');
  await ben.waitForSelector('#roomEnded:not(.hidden)');
  assert.equal(await ben.textContent('#roomWhy'), 'The call ended');
  assert.equal(await ann.textContent('#roomWhy'), 'You left the call');
  assert.equal(await cat.isVisible('#incoming'), false);
});
