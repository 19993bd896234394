// The seed 003 sample (WebPlanetKit's "1-to-1 audio call") run as written against the
// Switchboard browser SDK: the only changes are the values its placeholders stand for
// ('MY_ID', 'ACCESS_TOKEN', …) and the line that makes `planetKit` (`new PlanetKit({
// serverUrl })`), which the sample leaves out. The callee's push goes through the app server's notify_cb, as the sample's
// FCM would carry it.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { waitFor, startServer, stopServers, appServer as startApp, browserPage, closeBrowsers } from './harness.js';

const SECRET = 'd4'.repeat(32);
let app; let dir; let base; let token;
const notifies = () => app.hits['/notify'] ?? [];
const records = () => app.hits['/call_evt'] ?? [];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-seed-'));
  app = await startApp();
  ({ base, token } = await startServer(dir, 'server', `[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
notify_cb_url = "${app.url}/notify"
on_call_evt_cb_url = "${app.url}/call_evt"
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
  // The sample's page: an <audio id="peer-audio">, and the SDK loaded as a module (it
  // puts `PlanetKit` on the page, as WebPlanetKit's script does).
  await page.evaluate(async () => {
    document.body.insertAdjacentHTML('beforeend', '<div><audio id="peer-audio" autoplay></audio></div>');
    await import('/sdk/switchboard.js');
    window.log = [];
  });
  return page;
}

test('the seed 003 sample runs as written: make, push, verify, accept, end', async () => {
  const [caller, callee] = [await openPage('seed-caller'), await openPage('seed-callee')];

  // The callee's side of the sample, up to the push.
  await callee.evaluate(() => {
    const planetKit = new PlanetKit({ serverUrl: location.origin });
    window.planetKit = planetKit;
    const peerAudioElement = document.getElementById('peer-audio');
    window.callVerify = function callVerify(notifyParams) {
      // Set verifyCallParams based on information of notifyParams received from the app server
      const verifyCallParams = {
        myId: notifyParams.app_callee_uid,
        myServiceId: notifyParams.app_callee_sid,
        mediaType: notifyParams.app_call_type, // 'audio'
        ccParam: notifyParams.cc_param,
        mediaHtmlElement: {
          peer: {
            audio: peerAudioElement
          }
        },
        delegate: {
          // For each of the following, add your own implementation or
          // assign an event handler that matches the signature
          evtVerified: (callVerifiedParams) => { window.log.push(['evtVerified', callVerifiedParams]); planetKit.acceptCall().then(() => window.log.push(['accepted'])); },
          evtConnected: () => { window.log.push(['evtConnected']); },
          evtDisconnected: (disconnectedParam) => { window.log.push(['evtDisconnected', disconnectedParam]); },
        }
      };

      planetKit.verifyCall(verifyCallParams)
        .then(() => {
          // Successfully verified a call
        })
        .catch((verifyCallError) => {
          // Failed to verify a call
          window.log.push(['verifyCallError', verifyCallError.reason, verifyCallError.message]);
        });
    };
  });

  // The caller's side of the sample.
  await caller.evaluate(({ accessToken }) => {
    const planetKit = new PlanetKit({ serverUrl: location.origin });
    window.planetKit = planetKit;
    const peerAudioElement = document.getElementById('peer-audio');
    const makeCallParams = {
      myId: 'seed-alice',
      myServiceId: 'web',
      peerId: 'seed-bob',
      peerServiceId: 'web',
      accessToken,
      mediaType: 'audio',
      mediaHtmlElement: {
        peer: {
          audio: peerAudioElement
        }
      },
      delegate: {
        // For each of the following, add your own implementation or
        // assign an event handler that matches the signature
        evtWaitConnected: () => { window.log.push(['evtWaitConnected']); },
        evtConnected: () => { window.log.push(['evtConnected']); },
        evtDisconnected: (disconnectedParam) => { window.log.push(['evtDisconnected', disconnectedParam]); }
      }
    };
    planetKit.makeCall(makeCallParams)
      .then(() => {
        // Successfully made a call
      })
      .catch((makeCallError) => {
        // Failed to make a call
        window.log.push(['makeCallError', makeCallError.reason, makeCallError.message]);
      });
  }, { accessToken: token('seed-alice') });

  // The push: the app server got notify_cb (the cc_param is its `param`) and hands the
  // callee what the sample reads.
  const push = await waitFor('notify_cb', () => notifies().find((n) => n.to_user_id === 'seed-bob'));
  await callee.evaluate((notifyParams) => window.callVerify(notifyParams), {
    app_callee_uid: push.to_user_id, app_callee_sid: push.to_service_id, app_call_type: 'audio', cc_param: push.param,
  });

  const logOf = (page) => page.evaluate(() => window.log);
  const has = (page, evt) => waitFor(evt, async () => (await logOf(page)).find((e) => e[0] === evt));
  await has(caller, 'evtWaitConnected');
  const verified = await has(callee, 'evtVerified').catch(async (e) => { throw new Error(`${e.message}: ${JSON.stringify(await logOf(callee))} push ${JSON.stringify(push)}`); });
  assert.equal(verified[1].peerId, 'seed-alice');
  await has(caller, 'evtConnected');
  await has(callee, 'evtConnected');
  // The peer's audio plays in the sample's <audio id="peer-audio">.
  await waitFor('peer audio playing', () => caller.evaluate(() => {
    const el = document.getElementById('peer-audio');
    return el.srcObject?.getAudioTracks().length > 0 && !el.paused;
  }));

  await caller.evaluate(() => { window.planetKit.endCall(); });
  const a = (await has(caller, 'evtDisconnected'))[1];
  const b = (await has(callee, 'evtDisconnected'))[1];
  assert.deepEqual(a.reason, { code: 1001, strCode: 'PLANETKIT_DISCONNECT_REASON_NORMAL' });
  assert.deepEqual(b.reason, { code: 1001, strCode: 'PLANETKIT_DISCONNECT_REASON_NORMAL' });
  assert.equal(b.source, 'caller');
  const rec = await waitFor('the call record', () => records().find((r) => r.from_user_id === 'seed-alice'));
  assert.equal(rec.disconnect_reason, '1001');
  assert.deepEqual((await logOf(caller)).filter((e) => e[0].endsWith('Error')), []);

  // The same planetKit object makes the next call.
  await caller.evaluate(({ accessToken }) => window.planetKit.makeCall({
    myId: 'seed-alice', myServiceId: 'web', peerId: 'seed-bob', accessToken, mediaType: 'audio',
    delegate: { evtWaitConnected: () => window.log.push(['again']) },
  }), { accessToken: token('seed-alice') });
  await has(caller, 'again');
  await caller.evaluate(() => window.planetKit.endCall());
});
