// Browsers in a deployment of two nodes (each the real binary, on a PostgreSQL and a
// Redis of the test's own, behind a TCP balancer): the node that runs a call is killed,
// and both browsers, using only the public SDK, hear each other again through the other
// node's relay (a new peer connection each: the caller's SDK reconnects through the
// balancer and resumes, the callee's node resumes the call for it).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  waitFor, audioLevel, startServer, stopServers, appServer as startApp, sdkPage, answerCalls, closeBrowsers,
  startRedis, startPostgres, balancer,
} from './harness.js';

const SECRET = 'c4'.repeat(32);

let app; let dir; let redis; let pg; let lb; const nodes = [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-cluster-'));
  app = await startApp();
  [redis, pg] = [await startRedis(), await startPostgres(dir)];
  for (const n of [1, 2]) {
    nodes.push(await startServer(dir, `node${n}`, `database_url = "${pg.url}"
node_id = "node${n}"
redis_url = "${redis.url}"
cluster_secret = "a deployment secret of the browser tests, 32+ bytes"
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`));
  }
  lb = await balancer(nodes.map((n) => Number(new URL(n.base).port)));
});

after(async () => {
  await closeBrowsers();
  lb?.close();
  stopServers();
  redis?.stop();
  pg?.stop();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt, ms) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt), ms);
// Its peer's audio is loud enough (none yet, before the first track: not yet).
const hears = (page, what, ms = 20000) => waitFor(what, async () => (await audioLevel(page, 'peer').catch(() => 0)) > 0.01, ms);

test('a call goes on when the node that runs it is killed: both browsers hear each other again', async () => {
  const [node1, node2] = nodes;
  // Alice's page and signaling go through the balancer (node 1 while it lives); Bob's to
  // node 2. The call lives on node 1, Alice's node.
  const alice = await sdkPage(dir, 'alice', lb.url);
  const bob = await sdkPage(dir, 'bob', node2.base);
  await answerCalls(bob, 'bob', node2.token('bob'));
  await alice.evaluate(async ({ token, via }) => {
    window.call = new window.sb.Call({ serverUrl: via });
    await window.call.makeCall({
      myId: 'alice', myServiceId: 'web', peerId: 'bob', accessToken: token, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate,
    });
  }, { token: node1.token('alice'), via: lb.url });
  await waitEvent(alice, 'evtConnected');
  await waitEvent(bob, 'evtConnected');
  await hears(alice, 'alice hears bob');
  await hears(bob, 'bob hears alice');
  for (const page of [alice, bob]) await page.evaluate(() => { window.firstPc = window.call.pc; });

  node1.proc.kill('SIGKILL');
  const killed = Date.now();
  const moved = (page) => page.evaluate(() => window.call.pc !== window.firstPc
    && ['connected', 'completed'].includes(window.call.pc.iceConnectionState));
  await waitFor('both browsers on new peer connections', async () => (await moved(alice)) && (await moved(bob)), 30000);
  await hears(alice, 'alice hears bob again');
  await hears(bob, 'bob hears alice again');
  console.log(`both browsers hear each other again ${((Date.now() - killed) / 1000).toFixed(1)} s after the kill`);
  for (const page of [alice, bob]) {
    assert.equal((await eventsOf(page)).filter((e) => e.evt === 'evtDisconnected').length, 0, 'nobody was told the call ended');
  }

  // The call goes on under its sid on node 2: Bob hangs up, one record, a normal end.
  await bob.evaluate(() => window.call.endCall());
  assert.equal((await waitEvent(alice, 'evtDisconnected')).arg.reason.code, 1001);
  const rec = await waitFor('the call record', () => (app.hits['/call_evt'] ?? []).find((r) => r.from_user_id === 'alice'));
  assert.equal(rec.disconnect_reason, '1001');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((app.hits['/call_evt'] ?? []).length, 1, 'one record');
});
