// What the browser tests share: where the binaries are, a free port, polling with a
// deadline, the level of a page's received audio, a server of their own, an app server,
// and Chromium pages.

import path from 'node:path';
import net from 'node:net';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import dgram from 'node:dgram';
import { spawn, execFileSync } from 'node:child_process';

export const BIN = process.env.SWITCHBOARD_BIN ?? path.resolve('../../target/debug/switchboard');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

// Polls `fn` every 100 ms until it returns something truthy (returned), or throws after `ms`.
export const waitFor = async (what, fn, ms = 15000) => {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

// The loudest RMS level a WebAudio analyser sees over ~1.5 s on a page's received
// audio: `which` is 'peer' (a call's peer stream) or 'room' (the roomAudio element).
export const audioLevel = (page, which) => page.evaluate(async (which) => {
  const stream = which === 'room' ? window.roomAudio.srcObject : window.call.peerStream;
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let peak = 0;
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 50));
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    peak = Math.max(peak, Math.sqrt(sum / buf.length));
  }
  await ctx.close();
  return peak;
}, which);

/** A 48 kHz mono WAV of a `hz` tone, a whole number of cycles long so it loops cleanly. */
export function toneWav(file, hz, secs = 2) {
  const rate = 48000; const n = rate * secs;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0); buf.writeUInt32LE(36 + n * 2, 4); buf.write('WAVE', 8);
  buf.write('fmt ', 12); buf.writeUInt32LE(16, 16); buf.writeUInt16LE(1, 20); buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24); buf.writeUInt32LE(rate * 2, 28); buf.writeUInt16LE(2, 32); buf.writeUInt16LE(16, 34);
  buf.write('data', 36); buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 12000), 44 + 2 * i);
  fs.writeFileSync(file, buf);
  return file;
}

/** Chromium's flags for these tests. `media`: 'fake' (fake camera and microphone,
 * allowed), 'denied' (the user refuses access), 'none' (no camera or microphone). */
export function chromiumArgs(media = 'fake') {
  const mediaArgs = {
    fake: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
    denied: ['--use-fake-device-for-media-stream', '--deny-permission-prompts'],
    none: ['--use-fake-ui-for-media-stream'],
  }[media];
  return [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', ...mediaArgs,
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    // Screen share without a picker: the whole (virtual) screen.
    '--auto-select-desktop-capture-source=Entire screen',
  ];
}

const contexts = [];
const browsers = new Map();

/**
 * A page of its own (a fresh browser context: its own storage, permissions and network)
 * in a headless Chromium shared by every page with the same flags, opened at `url`; its
 * errors (and, with SB_LOG, its console) go to the test output. `args`: more Chromium
 * flags. Launching a Chromium costs 1.5-2 s and a context 0.5 s, so a file's pages
 * share one. `closeBrowsers()` closes every page and browser.
 */
export async function browserPage(dir, name, url, { media = 'fake', viewport, args = [] } = {}) {
  const flags = [...chromiumArgs(media), ...args];
  const key = JSON.stringify(flags);
  if (!browsers.has(key)) {
    const launching = import('playwright-core').then(({ chromium }) => chromium.launch({ executablePath: CHROMIUM, headless: true, args: flags }));
    // A failed launch is not cached: the next page tries again.
    launching.catch(() => browsers.delete(key));
    browsers.set(key, launching);
  }
  const ctx = await (await browsers.get(key)).newContext({ viewport });
  contexts.push(ctx);
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.error(`[${name}] page error`, e));
  page.on('console', (m) => { if (process.env.SB_LOG) console.error(`[${name}] ${m.text()}`); });
  await page.goto(url);
  return page;
}

export async function closeBrowsers() {
  for (const c of contexts.splice(0).reverse()) await c.close().catch(() => {});
  const open = [...browsers.values()];
  browsers.clear();
  for (const b of open) await b.then((b) => b.close()).catch(() => {});
}

/**
 * A page with the SDK loaded as `window.sb`, `window.events` filled by
 * `window.delegate` (every delegate event, its argument as JSON), and `<audio>` /
 * `<video>` elements in `window.media`.
 */
export async function sdkPage(dir, name, base, opts) {
  const page = await browserPage(dir, name, `${base}/`, opts);
  await page.evaluate(async () => {
    window.sb = await import('/sdk/switchboard.js');
    window.events = [];
    window.media = {};
    for (const kind of ['audio', 'video']) {
      const el = document.createElement(kind);
      el.autoplay = true;
      el.muted = kind === 'video';
      document.body.appendChild(el);
      window.media[kind] = el;
    }
    window.delegate = new Proxy({}, { get: (_, evt) => (arg) => window.events.push({ evt, arg: JSON.parse(JSON.stringify(arg ?? null)) }) });
  });
  return page;
}

const servers = [];

/**
 * A server of its own under `dir` (`name`.toml: a free port, its data dir, media on
 * 127.0.0.1, then `toml`), started and answering `/healthz`. `token(user)` mints a token
 * for `user` of service `web` (valid `ttl` seconds, default an hour). With `ca` (a CA's
 * PEM) it speaks https, checked against that CA. `stopServers()` kills every one.
 */
export async function startServer(dir, name, toml, { mediaBind = '127.0.0.1:0', ca } = {}) {
  const port = await freePort();
  const config = path.join(dir, `${name}.toml`);
  fs.writeFileSync(config, `listen = "127.0.0.1:${port}"
data_dir = "${path.join(dir, `${name}-data`)}"
media_bind = "${mediaBind}"
${toml}`);
  const proc = spawn(BIN, ['serve', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: process.env.SB_LOG ?? 'warn' } });
  proc.stderr.on('data', (d) => process.stderr.write(d));
  servers.push(proc);
  // With `ca`, the server serves TLS (its toml names the certificate that CA signed).
  const base = `${ca ? 'https' : 'http'}://127.0.0.1:${port}`;
  const healthy = () => new Promise((resolve) => {
    (ca ? https : http).get(`${base}/healthz`, { ca }, (r) => { r.resume(); resolve(r.statusCode === 200); }).on('error', () => resolve(false));
  });
  await waitFor('the server', healthy);
  const token = (user, service = 'web', ttl = 3600) => execFileSync(BIN, ['token', '--config', config, '--service', service, '--user', user, '--ttl', String(ttl)]).toString().trim();
  return { base, config, proc, token };
}

/**
 * A test CA and a server certificate it signed for localhost and 127.0.0.1
 * (scripts/test-certs.sh) in `dir`: `{ ca, cert, key }`, the paths, and `caPem`.
 */
export function testCerts(dir) {
  execFileSync('bash', [path.resolve(import.meta.dirname, '../../scripts/test-certs.sh'), dir]);
  const [ca, cert, key] = ['ca.pem', 'cert.pem', 'key.pem'].map((f) => path.join(dir, f));
  return { ca, cert, key, caPem: fs.readFileSync(ca) };
}

export function stopServers() {
  for (const s of servers.splice(0)) s.kill('SIGKILL');
}

/**
 * A real HTTP app server on 127.0.0.1: every callback's query, by path, in `hits`
 * (`hits['/call_evt']` …). `url` is its base.
 */
export async function appServer() {
  const hits = {};
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    (hits[u.pathname] ??= []).push(Object.fromEntries(u.searchParams));
    res.end('ok');
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}`, hits, close: () => srv.close() };
}

/**
 * A UDP path between clients and the relay on 127.0.0.1:`relayPort`: clients send to
 * `port` (advertise it with `media_advertise`), and each client gets an upstream socket
 * of its own, as behind a NAT. `shape(dir, msg)` decides each datagram's fate on the
 * way `'up'` (to the relay) or `'down'`: `null` drops it, a number delays it by that
 * many milliseconds (0: at once).
 */
export async function udpPath(relayPort, shape) {
  const front = dgram.createSocket('udp4');
  await new Promise((r) => front.bind(0, '127.0.0.1', r));
  const upstreams = new Map();
  const pass = (delay, send) => { if (delay === null) return; if (delay > 0) setTimeout(send, delay); else send(); };
  front.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let up = upstreams.get(key);
    if (!up) {
      up = dgram.createSocket('udp4');
      up.bind(0, '127.0.0.1');
      up.on('message', (back) => pass(shape('down', back), () => front.send(back, from.port, from.address)));
      upstreams.set(key, up);
    }
    pass(shape('up', msg), () => up.send(msg, relayPort, '127.0.0.1'));
  });
  return {
    port: front.address().port,
    close: () => { front.close(); for (const u of upstreams.values()) u.close(); },
  };
}

export const freeUdpPort = async () => {
  const s = dgram.createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
};

/**
 * Has `page` (an `sdkPage`) answer the calls offered to `myId` of service `web`: verify
 * and accept, the peer's media in `window.media`, the call in `window.call`.
 */
export const answerCalls = (page, myId, token) => page.evaluate(async ({ myId, token }) => {
  await window.sb.listenForCalls({
    serverUrl: location.origin, myId, myServiceId: 'web', accessToken: token,
    onIncomingCall: async (inc) => {
      window.call = new window.sb.Call({ serverUrl: location.origin });
      await window.call.verifyCall({ ccParam: inc.ccParam, mediaHtmlElement: { peer: { audio: window.media.audio, video: window.media.video } }, delegate: window.delegate });
      await window.call.acceptCall();
    },
  });
}, { myId, token });

/**
 * A Redis of its own on a free loopback port (Debian's `redis-server`, nothing written
 * to disk): `{ url, stop }`.
 */
export async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await waitFor('redis-server', () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  }));
  return { url: `redis://127.0.0.1:${port}/`, stop: () => proc.kill('SIGKILL') };
}

/**
 * A PostgreSQL cluster of its own under `dir` (Debian's binaries, as the `postgres` user
 * when run as root, trusting loopback connections) on a free port: `{ url, stop }`.
 */
export async function startPostgres(dir) {
  const root = '/usr/lib/postgresql';
  const bin = fs.readdirSync(root).sort().map((v) => path.join(root, v, 'bin')).filter((b) => fs.existsSync(path.join(b, 'postgres'))).pop();
  if (!bin) throw new Error('no PostgreSQL in /usr/lib/postgresql (apt-get install postgresql)');
  const data = path.join(dir, 'pg');
  fs.mkdirSync(data, { recursive: true });
  const as = {};
  if (process.getuid() === 0) {
    as.uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    as.gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    fs.chmodSync(dir, 0o755);
    fs.chownSync(data, as.uid, as.gid);
  }
  execFileSync(path.join(bin, 'initdb'), ['-D', data, '-U', 'switchboard', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'], { ...as, stdio: 'ignore' });
  const port = await freePort();
  const proc = spawn(path.join(bin, 'postgres'), ['-D', data, '-p', String(port), '-k', data, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'], { ...as, stdio: 'ignore' });
  await waitFor('postgres', () => {
    try {
      execFileSync(path.join(bin, 'pg_isready'), ['-q', '-h', '127.0.0.1', '-p', String(port)]);
      return true;
    } catch { return false; }
  }, 30000);
  return { url: `postgres://switchboard@127.0.0.1:${port}/postgres`, stop: () => proc.kill('SIGQUIT') };
}

/**
 * A TCP load balancer on a free loopback port: each connection goes to the first of
 * `ports` (on 127.0.0.1) that takes it, so when a node dies its clients come back to the
 * next. `{ url, close }`.
 */
export async function balancer(ports) {
  const sockets = new Set();
  const srv = net.createServer(async (client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.pause();
    for (const port of ports) {
      const upstream = await new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => resolve(s));
        s.on('error', () => resolve(null));
      });
      if (!upstream) continue;
      sockets.add(upstream);
      upstream.on('close', () => { sockets.delete(upstream); client.destroy(); });
      client.on('close', () => upstream.destroy());
      client.pipe(upstream); upstream.pipe(client);
      client.resume();
      return;
    }
    client.destroy();
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${srv.address().port}`, close: () => { srv.close(); for (const s of sockets) s.destroy(); } };
}
