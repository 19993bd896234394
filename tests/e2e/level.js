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
