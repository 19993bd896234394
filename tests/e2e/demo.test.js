// The demo page at / on embedded defaults, used as a person would: two users sign
// in, one video-calls the other, the other accepts, mutes and hangs up; both read the
// reason in words. SCREENSHOT=path saves the caller's screen during the call.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, freePort, browserPage, closeBrowsers } from './harness.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-demo-'));
const closers = [];

after(async () => {
  await closeBrowsers();
  for (const c of closers.reverse()) await c();
  fs.rmSync(dir, { recursive: true, force: true });
});

const browser = (name, base) => browserPage(dir, name, base, { viewport: { width: 1100, height: 820 } });

test('two people call each other from the demo page', async () => {
  const port = await freePort();
  const server = spawn(BIN, ['serve', '--data-dir', path.join(dir, 'data'), '--listen', `127.0.0.1:${port}`],
    { stdio: 'ignore', env: { ...process.env, RUST_LOG: 'warn' } });
  closers.push(async () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${port}/`;
  for (let i = 0; i < 100 && !(await fetch(`${base}healthz`).then((r) => r.ok).catch(() => false)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }

  const [alice, bob] = [await browser('alice', base), await browser('bob', base)];
  for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
    await page.fill('#user', user);
    await page.click('#signinBtn');
    await page.waitForSelector('#dial:not(.hidden)');
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
  if (process.env.SCREENSHOT) {
    await new Promise((r) => setTimeout(r, 1500));
    await alice.screenshot({ path: process.env.SCREENSHOT });
  }
  await bob.click('#hangupBtn');
  for (const page of [alice, bob]) {
    await page.waitForSelector('#ended:not(.hidden)');
    assert.equal(await page.textContent('#why'), 'Call ended');
    assert.match(await page.textContent('#code'), /NORMAL \(1001\) · by callee/);
  }
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
  assert.match(await bob.textContent('#code'), /NORMAL \(1001\) · by caller/);
  // Calling someone who is not online reads as such.
  await alice.click('#againBtn');
  await alice.fill('#peer', 'nobody');
  await alice.click('#voiceBtn');
  await alice.waitForSelector('#ended:not(.hidden)');
  assert.equal(await alice.textContent('#why'), 'Not reachable right now');

  // The room tab: both join a video room, see each other's tile with video, a talking
  // ring and network bars; one mutes, one leaves.
  await alice.click('#againBtn');
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
