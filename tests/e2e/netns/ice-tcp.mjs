// Calls for users whose network drops UDP, run by ../ice-tcp.test.js inside a network
// namespace of its own (`unshare -n`: only its loopback, which nothing outside shares),
// where this file sets the firewall with nftables: UDP dropped from the start, or cut
// in the middle of a call. Media then goes over ICE-TCP (RFC 6544) to the relay.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, waitFor, audioLevel, startServer, stopServers, appServer as startApp, sdkPage, answerCalls, closeBrowsers, freePort, testCerts, toneWav } from '../harness.js';

const SECRET = 'c3'.repeat(32);
// The far end of a call, on a network that lets everything through: a CLI running as
// this user, whose packets the firewall leaves alone.
const FAR_UID = 65534;
// What the pages that call the CLI send (Chromium's fake microphone playing a WAV), and
// the CLI checks it decodes: audio both ways, each at its frequency.
const PAGE_HZ = 660;
let app; let dir; let base; let token; let iceTcpPort; let pageTone;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'switchboard-ice-tcp-'));
  pageTone = [`--use-file-for-fake-audio-capture=${toneWav(path.join(dir, 'page.wav'), PAGE_HZ)}`];
  app = await startApp();
  iceTcpPort = await freePort();
  // TURN's relayed sockets on 127.0.0.2, which the firewall below leaves alone: the
  // TURN server's own leg to the relay is inside the server's host, not the user's network.
  ({ base, token } = await startServer(dir, 'ice-tcp', `media_shards = 1
media_tcp_port = ${iceTcpPort}
turn_relay_ip = "127.0.0.2"
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`));
});

after(async () => {
  udp(true);
  await closeBrowsers();
  stopServers();
  app?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Lets everything through (`on`), or drops every UDP packet sent in this namespace, and
 * with `tcpToMedia` false TCP to the relay's ICE-TCP port too (what is left: signaling
 * and the TURN server's TCP port).
 */
function udp(on, { tcpToMedia = true } = {}) {
  try { execFileSync('nft', ['delete', 'table', 'inet', 'sbtest'], { stdio: 'ignore' }); } catch { /* none yet */ }
  if (!on) {
    const tcp = tcpToMedia ? '' : `\n tcp dport ${iceTcpPort} drop`;
    execFileSync('nft', ['-f', '-'], {
      input: `table inet sbtest {\n chain out {\n type filter hook output priority 0; policy accept;\n ip saddr 127.0.0.2 accept\n ip daddr 127.0.0.2 accept\n meta skuid ${FAR_UID} accept\n meta l4proto udp drop${tcp}\n }\n}\n`,
    });
  }
}

/** The local candidate of the pair a page's call uses now (its `protocol`, `candidateType`, `relayProtocol`). */
const selected = (page) => page.evaluate(async () => {
  const stats = await window.call.getStats();
  const all = [...stats.values()];
  const id = all.find((s) => s.type === 'transport' && s.selectedCandidatePairId)?.selectedCandidatePairId;
  const pair = id ? stats.get(id) : all.find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
  const local = pair && stats.get(pair.localCandidateId);
  return local ? { protocol: local.protocol, candidateType: local.candidateType, relayProtocol: local.relayProtocol ?? null } : null;
});

/** The transport of that pair: 'udp', 'tcp' or null. */
const transport = async (page) => (await selected(page))?.protocol ?? null;

/** The strongest frequency a page hears from its call's peer, within 15 Hz of `hz`. */
const hears = (page, hz) => waitFor(`${hz} Hz`, () => page.evaluate(async (hz) => {
  if (!window.call?.peerStream?.getAudioTracks().length) return null;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  ctx.createMediaStreamSource(window.call.peerStream).connect(analyser);
  await new Promise((r) => setTimeout(r, 600));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const found = (best * ctx.sampleRate) / analyser.fftSize;
  await ctx.close();
  return Math.abs(found - hz) <= 15 ? found : null;
}, hz), 20000);

/**
 * The CLI at the far end (`args`, spawn `opts`): the JSON lines it printed, its exit, and
 * a wait until it has received more than 50 packets of the page's audio (a second) and
 * decodes the page's tone (`PAGE_HZ`) from them.
 */
function farEnd(args, opts = {}) {
  const proc = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'inherit'], ...opts });
  const lines = [];
  proc.stdout.on('data', (d) => lines.push(...d.toString().split('\n').filter(Boolean).map((l) => JSON.parse(l))));
  const exited = new Promise((r) => proc.on('exit', r));
  const last = () => lines.filter((l) => l.event === 'media').at(-1);
  const hears = () => last()?.packets_in > 50 && Math.abs((last()?.dominant_hz ?? 0) - PAGE_HZ) <= 10;
  return {
    lines,
    exited,
    hearsThePage: () => waitFor('the CLI decodes the page\'s tone', hears, 20000)
      .catch((e) => { throw new Error(`${e.message}; it last said ${JSON.stringify(last())}`); }),
    kill: () => { if (proc.exitCode === null) proc.kill('SIGKILL'); },
  };
}

const eventsOf = (page) => page.evaluate(() => window.events);
const waitEvent = (page, evt) => waitFor(evt, async () => (await eventsOf(page)).find((e) => e.evt === evt), 20000);

test('with UDP dropped, the CLI and a browser call each other over ICE-TCP and hear each other', async () => {
  udp(false);
  try {
    const bob = await sdkPage(dir, 'bob', base, { args: pageTone });
    await answerCalls(bob, 'bob', token('bob'));
    // The CLI is not told: it offers UDP and TCP and ICE finds that only TCP works.
    const cli = farEnd(['call', '--server', base, '--service', 'web', '--user', 'alice', '--token', token('alice'),
      '--to', 'bob', '--tone', '440']);
    try {
      await waitEvent(bob, 'evtConnected');
      const hz = await hears(bob, 440);
      assert.ok(Math.abs(hz - 440) <= 15, `the browser heard ${hz} Hz`);
      assert.equal(await transport(bob), 'tcp');
      await cli.hearsThePage();
      // The browser hangs up once both have heard each other (not the CLI on a timer,
      // which a slow ICE on a busy machine could beat).
      await bob.evaluate(() => window.call.endCall());
      await cli.exited;
      const end = cli.lines.find((l) => l.event === 'disconnected');
      assert.equal(end.reason.name, 'NORMAL');
    } finally {
      cli.kill();
    }
  } finally {
    udp(true);
  }
});

test('a browser call whose UDP is cut mid-call moves to ICE-TCP, keeps its audio and ends NORMAL', async () => {
  const [carol, dave] = [await sdkPage(dir, 'carol', base), await sdkPage(dir, 'dave', base)];
  await answerCalls(dave, 'dave', token('dave'));
  await carol.evaluate(async ({ accessToken }) => {
    window.call = new window.sb.Call({ serverUrl: location.origin });
    await window.call.makeCall({ myId: 'carol', myServiceId: 'web', peerId: 'dave', accessToken, mediaType: 'audio',
      mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate });
  }, { accessToken: token('carol') });
  await waitEvent(dave, 'evtConnected');
  await waitFor('udp at first', async () => (await transport(dave)) === 'udp');
  await waitFor('dave hears carol over UDP', async () => (await audioLevel(dave, 'peer')) > 0.01);
  udp(false);
  try {
    await waitFor('the call on TCP', async () => (await transport(dave)) === 'tcp' && (await transport(carol)) === 'tcp', 30000);
    // Audio that arrived after the move: the level of what plays now.
    await waitFor('dave hears carol over TCP', async () => (await audioLevel(dave, 'peer')) > 0.01);
    await carol.evaluate(() => window.call.endCall());
    const ended = (await waitEvent(dave, 'evtDisconnected')).arg;
    assert.deepEqual([ended.reason.strCode, ended.source], ['PLANETKIT_DISCONNECT_REASON_NORMAL', 'caller']);
    const rec = await waitFor('the record', () => (app.hits['/call_evt'] ?? []).find((r) => r.to_user_id === 'dave'));
    assert.equal(rec.disconnect_reason, '1001');
  } finally {
    udp(true);
  }
});

/**
 * A browser page (`iceTransportPolicy` as given) that calls `peer`: the CLI, on an open
 * network, answering with a 440 Hz tone. The local candidate the page's call settled on.
 * `server`: the one of this file, or another (`{ base, token, ca, pageArgs }`).
 */
async function turnCall(name, peer, iceTransportPolicy, server = { base, token }) {
  const { ca, pageArgs } = server;
  const page = await sdkPage(dir, name, server.base, { args: [...pageTone, ...(pageArgs ?? [])] });
  const env = ca ? { ...process.env, SSL_CERT_FILE: ca } : process.env;
  const cli = farEnd(['answer', '--server', server.base, '--service', 'web', '--user', peer, '--token', server.token(peer),
    '--wait', '--tone', '440'], { uid: FAR_UID, gid: FAR_UID, env });
  try {
    await waitFor('the CLI signed in', () => cli.lines.some((l) => l.event === 'session_open'));
    await page.evaluate(async ({ accessToken, peer, iceTransportPolicy }) => {
      window.call = new window.sb.Call({ serverUrl: location.origin, iceTransportPolicy });
      await window.call.makeCall({ myId: 'turn-user', myServiceId: 'web', peerId: peer, accessToken, mediaType: 'audio',
        mediaHtmlElement: { peer: { audio: window.media.audio } }, delegate: window.delegate });
    }, { accessToken: server.token('turn-user'), peer, iceTransportPolicy });
    await waitEvent(page, 'evtConnected');
    const hz = await hears(page, 440);
    assert.ok(Math.abs(hz - 440) <= 15, `the browser heard ${hz} Hz through TURN`);
    const local = await selected(page);
    await cli.hearsThePage();
    await page.evaluate(() => window.call.endCall());
    await cli.exited;
    return local;
  } finally {
    cli.kill();
  }
}

test('iceTransportPolicy relay: a call through the embedded TURN server over UDP', async () => {
  const local = await turnCall('turn-udp', 'erin', 'relay');
  assert.deepEqual([local.candidateType, local.relayProtocol], ['relay', 'udp'], JSON.stringify(local));
});

test('with UDP and the ICE-TCP port dropped, a call finds its way through TURN over TCP', async () => {
  udp(false, { tcpToMedia: false });
  try {
    const local = await turnCall('turn-tcp', 'frank', 'all');
    assert.deepEqual([local.candidateType, local.relayProtocol], ['relay', 'tcp'], JSON.stringify(local));
  } finally {
    udp(true);
  }
});

test('over wss to the server\'s own TLS listener, with only that TCP port open, a call goes through TURN over TLS on it', async () => {
  const certs = testCerts(path.join(dir, 'tls'));
  // The far end's CLI (another user) reads the CA.
  fs.chmodSync(dir, 0o755);
  const [tcpPort, turnPort] = [await freePort(), await freePort()];
  const tls = await startServer(dir, 'tls', `media_shards = 1
media_tcp_port = ${tcpPort}
turn_port = ${turnPort}
turn_relay_ip = "127.0.0.2"
tls_cert = "${certs.cert}"
tls_key = "${certs.key}"
[[service]]
id = "web"
api_key = "web-key"
api_secret = "${SECRET}"
on_call_evt_cb_url = "${app.url}/call_evt"
`, { ca: certs.caPem });
  const listen = Number(new URL(tls.base).port);
  const appPort = Number(new URL(app.url).port);
  // Nothing but TCP to the listener (and replies): no UDP, no ICE-TCP, no TURN port.
  // The app server's port stays open for the callbacks, the far end's CLI is exempt.
  execFileSync('nft', ['-f', '-'], {
    input: `table inet sbtest {\n chain out {\n type filter hook output priority 0; policy accept;\n ct state established,related accept\n ip saddr 127.0.0.2 accept\n ip daddr 127.0.0.2 accept\n meta skuid ${FAR_UID} accept\n meta l4proto udp drop\n tcp dport != { ${listen}, ${appPort} } drop\n }\n}\n`,
  });
  try {
    // A certificate the browser trusts by flag (the test CA is no root of its).
    const local = await turnCall('turn-tls', 'gina', 'all', { ...tls, ca: certs.ca, pageArgs: ['--ignore-certificate-errors'] });
    assert.deepEqual([local.candidateType, local.relayProtocol], ['relay', 'tls'], JSON.stringify(local));
  } finally {
    udp(true);
  }
});
