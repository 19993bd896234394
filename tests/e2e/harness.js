// What the browser tests share: where the binaries are, a free port, polling with a
// deadline, and the level of a page's received audio.

import path from 'node:path';
import net from 'node:net';

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
