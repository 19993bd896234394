// Switchboard browser SDK: plain ES module, no build step. Served by the server at
// /sdk/switchboard.js. See switchboard.d.ts for the types and docs/protocol.md for
// the wire protocol underneath.

const PROTOCOL_VERSION = 1;

/** This SDK's version (the npm package's `version`). */
export const SDK_VERSION = '0.1.0';

/** Disconnect sources (docs/reasons.md), as the web SDK names them. */
export const DISCONNECT_SOURCE = Object.freeze({
  1: 'callee', 2: 'caller', 3: 'participant', 4: 'cloud_server', 5: 'app_server',
});

/** Start-fail reasons: why makeCall / verifyCall rejected before a call existed. */
export const START_FAIL_REASON = Object.freeze({
  INVALID_PARAM: 'invalid_param', ALREADY_EXIST: 'already_exist', DECODE_CALL_PARAM: 'decode_call_param', ID_CONFLICT: 'id_conflict',
  INVALID_USER_ID: 'invalid_user_id', INVALID_SERVICE_ID: 'invalid_service_id', INVALID_API_KEY: 'invalid_api_key',
  INVALID_ROOM_ID: 'invalid_room_id', TOO_LONG_APP_SERVER_DATA: 'too_long_app_server_data',
  BROWSER_NOT_SUPPORTED: 'browser_not_supported', INVALID_MEDIA_TYPE: 'invalid_media_type',
  INTERNAL_INITIALIZATION_ERROR: 'internal_initialization_error',
});

/** getUserMedia failures, as web-only disconnect reasons 1601-1607. */
const GUM_REASONS = {
  AbortError: 1601, NotAllowedError: 1602, NotFoundError: 1603, NotReadableError: 1604,
  OverconstrainedError: 1605, SecurityError: 1606, TypeError: 1607,
};

/**
 * Every disconnect reason (docs/reasons.md) by the name WebPlanetKit reports (`strCode` without
 * its `PLANETKIT_DISCONNECT_REASON_` prefix): its number. Checked against
 * `crates/protocol` by `tests/tests/sdk_constants.rs`.
 */
export const KIT_DISCONNECT_REASON = Object.freeze({
  NORMAL: 1001, DECLINE: 1002, CELL_CALL: 1003, INTERNAL_ERROR: 1109, USER_ERROR: 1110,
  INTERNAL_KIT_ERROR: 1111, AUDIO_TX_NO_SRC: 1112, CANCEL: 1201, BUSY: 1202, NOANSWER: 1203,
  ALREADY_GOT_A_CALL: 1204, MULTIDEV_IN_USE: 1205, MULTIDEV_ANSWER: 1206, MULTIDEV_DECLINE: 1207,
  MAX_CALL_TIME_EXCEEDED: 1208, NETWORK_UNSTABLE: 1301, PUSH_ERROR: 1302, AUTH_ERROR: 1303,
  RELEASED_CALL: 1304, SERVER_INTERNAL_ERROR: 1305, UNAVAILABLE_NETWORK: 1308, APP_DESTROY: 1309,
  SYSTEM_SLEEP: 1310, SYSTEM_LOGOFF: 1311, MTU_EXCEEDED: 1312, APP_SERVER_DATA_ERROR: 1313,
  DESKTOP_SCREEN_LOCKED: 1314, ROOM_IS_FULL: 1401, ALONE_KICK_OUT: 1402, ROOM_NOT_FOUND: 1404,
  ANOTHER_INSTANCE_TRY_TO_JOIN: 1405, SERVICE_ACCESS_TOKEN_ERROR: 1501, SERVICE_INVALID_ID: 1502,
  SERVICE_MAINTENANCE: 1503, SERVICE_BUSY: 1504, SERVICE_INTERNAL_ERROR: 1505,
  SERVICE_HTTP_ERROR: 1506, SERVICE_HTTP_CONNECTION_TIME_OUT: 1507,
  SERVICE_HTTP_INVALID_PEER_CERT: 1508, SERVICE_HTTP_CONNECT_FAIL: 1509,
  SERVICE_HTTP_INVALID_URL: 1510, SERVICE_INCOMPATIBLE_PLANETKIT_VER: 1511,
  SERVICE_TOO_MANY_REQUESTS: 1512, WEB_RTC_ABORT_ERROR: 1601, WEB_RTC_NOT_ALLOWED_ERROR: 1602,
  WEB_RTC_NOT_FOUND_ERROR: 1603, WEB_RTC_NOT_READABLE_ERROR: 1604,
  WEB_RTC_OVERCONSTRAINED_ERROR: 1605, WEB_RTC_SECURITY_ERROR: 1606, WEB_RTC_TYPE_ERROR: 1607,
  WEB_NO_MEDIA_PACKET: 1608, WEB_CALL_CONNECT_FAIL_BY_SERVER: 1609,
  WEB_CALL_CONNECT_FAIL_BY_CLIENT: 1610, WEB_SIGNALING_UNEXPECTED_DISCONNECTED: 1611,
  WEB_BROWSER_NOT_SUPPORTED: 1612,
});

/** Media types. */
export const MEDIA_TYPE = Object.freeze({ AUDIO: 'audio', VIDEO: 'video' });

/** Video sizes a receiver may ask for (requestPeerVideo). */
export const RESOLUTION = Object.freeze({ QVGA: 'qvga', VGA: 'vga', HD: 'hd' });

/** Reason number → the name in KIT_DISCONNECT_REASON. */
const KIT_NAME = Object.fromEntries(Object.entries(KIT_DISCONNECT_REASON).map(([name, code]) => [code, name]));

/**
 * A disconnect reason as WebPlanetKit names it: `PLANETKIT_DISCONNECT_REASON_` and the
 * contract name (`…_NORMAL`), or WebPlanetKit's own name for the web-only ones.
 */
const strCode = (code, name) => `PLANETKIT_DISCONNECT_REASON_${KIT_NAME[code] ?? name}`;

/**
 * What every rejection of the SDK is: an `Error` with `reason` (a start-fail reason such
 * as `invalid_user_id`, or a disconnect reason's name such as `ROOM_IS_FULL`), `code`
 * (the contract number, when there is one), `strCode` (WebPlanetKit's name, when there is
 * one) and `message` (words).
 */
export class SwitchboardError extends Error {
  constructor(reason, message, code, strCode) {
    super(message ?? reason);
    this.name = 'SwitchboardError';
    this.reason = reason;
    if (code != null) this.code = code;
    if (strCode != null) this.strCode = strCode;
  }
}

const sbError = (reason, message, code, strCode) => new SwitchboardError(reason, message, code, strCode);

/**
 * A refusal from the server (`error` or `start_failed` frame) as a rejection, in our
 * terms: rate limits are SERVICE_TOO_MANY_REQUESTS (1512), malformed requests and
 * refused parameters `invalid_param`, start failures their own reason.
 */
function refusal(m) {
  if (m.type === 'start_failed') return sbError(m.reason ?? 'internal_initialization_error', m.message);
  if (m.type === 'disconnected') return sbError(m.reason.name, m.reason.name, m.reason.code, strCode(m.reason.code, m.reason.name));
  const code = m.reason?.code;
  const byError = {
    rate_limited: 'SERVICE_TOO_MANY_REQUESTS', malformed: 'invalid_param', invalid_param: 'invalid_param',
    not_found: 'invalid_param', wrong_state: 'invalid_param', unknown_type: 'invalid_param',
  };
  // A refusal that names a disconnect reason (a bad or expired token, an unknown
  // service, a full server) rejects with that reason's name: SERVICE_ACCESS_TOKEN_ERROR,
  // AUTH_ERROR, SERVICE_INVALID_ID, SERVICE_BUSY, ...
  const reason = m.reason?.name ?? byError[m.error] ?? 'internal_initialization_error';
  return sbError(reason, m.message ?? m.error, code ?? (m.error === 'rate_limited' ? 1512 : undefined), m.reason?.name && strCode(m.reason.code, m.reason.name));
}

/** A getUserMedia failure as a rejection: reason plus the web-only code 1601-1607. */
function gumError(e) {
  const code = GUM_REASONS[e?.name] ?? 1607;
  return sbError('internal_initialization_error', String(e?.message ?? e), code, strCode(code));
}

/** mid → { kind, dir } of each m-section of an SDP. */
function sdpLines(sdp) {
  const out = new Map();
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const kind = section.split(' ')[0];
    const mid = /\na=mid:(\S+)/.exec(section)?.[1];
    const dir = /\na=(sendrecv|sendonly|recvonly|inactive)/.exec(section)?.[1] ?? 'sendrecv';
    if (mid != null) out.set(mid, { kind, dir });
  }
  return out;
}

function signalUrl(serverUrl) {
  const u = new URL(serverUrl, globalThis.location?.href);
  u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'wss:' : 'ws:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/signal';
  return u.toString();
}

/** One signaling session: hello, heartbeats, request/answer matching. */
class Session {
  constructor(serverUrl, hello, onMessage, onClose) {
    this.url = signalUrl(serverUrl);
    this.hello = hello;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.nextReq = 1;
    this.pending = new Map();
  }

  open() {
    return new Promise((resolve, reject) => {
      let ws;
      try { ws = new WebSocket(this.url); } catch (e) { reject(sbError('internal_initialization_error', String(e))); return; }
      this.ws = ws;
      let welcomed = false;
      ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: PROTOCOL_VERSION, ...this.hello }));
      ws.onmessage = (ev) => {
        let m;
        try { m = JSON.parse(ev.data); } catch { return; }
        if (!welcomed) {
          if (m.type === 'welcome') {
            welcomed = true;
            this.welcome = m;
            this.heartbeat = setInterval(() => this.send({ type: 'ping' }), Math.max(1, m.heartbeat_secs) * 1000);
            resolve(m);
          } else if (m.type === 'error') {
            reject(refusal(m));
          }
          return;
        }
        if (m.req != null && this.pending.has(m.req)) {
          const { resolve: ok } = this.pending.get(m.req);
          this.pending.delete(m.req);
          ok(m);
        }
        this.onMessage(m);
      };
      ws.onerror = () => { if (!welcomed) reject(sbError('internal_initialization_error', 'cannot reach the server', 1611)); };
      ws.onclose = () => {
        clearInterval(this.heartbeat);
        for (const { resolve: ok } of this.pending.values()) ok({ type: 'error', error: 'internal', message: 'connection closed' });
        this.pending.clear();
        if (!welcomed) reject(sbError('internal_initialization_error', 'the server closed the connection', 1611));
        // Lost: the app did not close it (the network, a proxy, the server went away).
        if (welcomed) this.onClose(!this.closing);
      };
    });
  }

  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  request(msg) {
    const req = this.nextReq++;
    if (this.ws?.readyState !== WebSocket.OPEN) return Promise.resolve({ type: 'error', error: 'internal', message: 'not connected' });
    return new Promise((resolve) => {
      this.pending.set(req, { resolve });
      this.send({ ...msg, req });
    });
  }

  close() {
    this.closing = true;
    clearInterval(this.heartbeat);
    try { this.ws?.close(); } catch { /* already closed */ }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls and rooms live on this page: told APP_DESTROY (1309) when the page goes away. */
const LIVE = new Set();
// A device plugged in or out: every live call and room hears the new list.
globalThis.navigator?.mediaDevices?.addEventListener?.('devicechange', async () => {
  if (!LIVE.size) return;
  const devices = await getMediaDevices();
  for (const o of LIVE) call(o.delegate?.evtMediaDevicesChanged, devices);
});
globalThis.addEventListener?.('pagehide', (ev) => {
  // Kept in the back/forward cache, the page may come back: its calls go on.
  if (ev.persisted) return;
  for (const o of LIVE) o.session?.send({ type: 'end_call', sid: o.sid, reason: 1309 });
});

/**
 * Ends a live Call or Conference for a reason this client found (1608 no media, 1609
 * media negotiation failed, 1610 peer connection down 30 s): the server ends it for
 * everyone with that reason, and the app hears it as evtDisconnected. Without a
 * server to tell, it ends here.
 */
function fail(owner, code, name) {
  if (owner.ended || owner._failing) return;
  owner._failing = true;
  console.warn(`switchboard: ending ${owner.sid} with ${code} ${name}`);
  const here = () => owner._ended({ reason: { code, name }, source: { name: owner.role ?? 'participant' }, by_remote: false });
  if (owner.session?.isReconnecting === false && owner.sid) {
    owner.session.request({ type: 'end_call', sid: owner.sid, reason: code }).then((m) => {
      if (m.type === 'disconnected') owner._ended(m); else here();
    });
  } else {
    here();
  }
}

/**
 * Watches the media of a live Call or Conference once its connection to the relay is
 * up: ICE not connected for 30 s ends it with 1610; connected but no media packet
 * received for 20 s ends it with 1608. Returns a function that stops watching.
 */
function watchMedia(owner, pc) {
  let downSince = Date.now();
  let silentSince = null;
  let lastBytes = 0;
  const timer = setInterval(async () => {
    if (owner.ended) { clearInterval(timer); return; }
    const up = ['connected', 'completed'].includes(pc.iceConnectionState);
    if (up) downSince = null; else downSince ??= Date.now();
    if (downSince && Date.now() - downSince >= 30000) { fail(owner, 1610, 'WEB_PEER_CONNECTION_DISCONNECTED'); return; }
    if (!up) { silentSince = null; return; }
    let bytes = 0;
    try { (await pc.getStats()).forEach((st) => { if (st.type === 'inbound-rtp') bytes += st.bytesReceived ?? 0; }); } catch { return; }
    if (bytes > lastBytes) { lastBytes = bytes; silentSince = null; return; }
    silentSince ??= Date.now();
    if (Date.now() - silentSince >= 20000) fail(owner, 1608, 'WEB_NO_MEDIA_PACKETS');
  }, 2000);
  return () => clearInterval(timer);
}

/**
 * Plays a media element; if the browser's autoplay policy blocks it, remembers it and
 * tells the app once (`evtAutoplayBlocked`): the app calls `startAudio()` from a click.
 */
function play(owner, el) {
  el.play?.()?.catch((e) => {
    if (e?.name !== 'NotAllowedError') return;
    (owner._blocked ??= new Set()).add(el);
    if (!owner._toldBlocked) { owner._toldBlocked = true; call(owner.delegate?.evtAutoplayBlocked); }
  });
}

/** getUserMedia constraints for `kind` on the device `deviceId` (the default if none). */
const constraint = (deviceId) => (deviceId ? { deviceId: { exact: deviceId } } : true);

/** The local media a Call or Conference starts with, on the devices it was given. */
async function openLocal(owner, video) {
  const ids = owner.params.mediaDeviceId ?? {};
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: constraint(ids.inputAudio), video: video && constraint(ids.inputVideo) });
  } catch (e) {
    throw gumError(e);
  }
}

/** One new track of `kind` ('audio' or 'video') from `deviceId`. */
async function openTrack(kind, deviceId) {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraint(deviceId) });
    return stream.getTracks()[0];
  } catch (e) {
    throw gumError(e);
  }
}

/**
 * Sends `track` instead of what a Call or Conference sent of its kind (`null`: nothing,
 * and the old device is released), on the same line: no renegotiation.
 */
async function swapTrack(owner, kind, track) {
  const old = owner.localStream?.getTracks().filter((t) => t.kind === kind) ?? [];
  for (const t of old) { owner.localStream.removeTrack(t); t.stop(); }
  if (track) {
    owner.localStream.addTrack(track);
    track.addEventListener('ended', () => deviceLost(owner, kind, track));
  }
  await owner._senders?.[kind]?.replaceTrack(track);
}

/**
 * A device gone (unplugged, taken by another app): the default one of its kind takes
 * over if there is one, and the app hears `evtMediaDeviceChanged` either way.
 */
async function deviceLost(owner, kind, track) {
  if (owner.ended || !owner.localStream?.getTracks().includes(track)) return;
  let replacement = null;
  try { replacement = await openTrack(kind); } catch { /* none left */ }
  if (replacement && kind === 'audio') replacement.enabled = !owner._muted;
  await swapTrack(owner, kind, replacement);
  call(owner.delegate?.evtMediaDeviceChanged, { kind, lost: track.label, now: replacement?.label ?? null });
}

/**
 * Switches the microphone or camera of a Call or Conference to `deviceId`: the new
 * device goes on the same line (a muted microphone stays muted); a camera that is off
 * stays off and is used when it goes on.
 */
async function changeInput(owner, kind, deviceId) {
  owner.params.mediaDeviceId = { ...owner.params.mediaDeviceId, [kind === 'audio' ? 'inputAudio' : 'inputVideo']: deviceId };
  if (kind === 'video' && !owner.localStream?.getVideoTracks().length) return;
  const track = await openTrack(kind, deviceId);
  if (kind === 'audio') track.enabled = !owner._muted;
  await swapTrack(owner, kind, track);
}

/** Plays the received media on the speaker `deviceId` (where the browser has setSinkId). */
async function setSink(els, deviceId) {
  const targets = els.filter(Boolean);
  if (targets.some((el) => typeof el.setSinkId !== 'function')) {
    throw sbError('invalid_param', 'this browser cannot choose the audio output device (no setSinkId)');
  }
  for (const el of targets) await el.setSinkId(deviceId);
}

/**
 * Shares the screen instead of the camera, on the video line a Call or Conference already
 * sends on: the camera stays open (not sent) and comes back with stopScreenShare. When
 * the user ends the share from the browser's own control, the camera comes back too and
 * the app hears `evtMyScreenShareStopped`.
 */
async function startScreenShare(owner) {
  if (owner._screen) return;
  if (!owner._senders?.video) throw sbError('invalid_param', 'no video line to share the screen on: turn video on first (a video call or room)');
  let display;
  try {
    display = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (e) {
    throw gumError(e);
  }
  const screen = display.getVideoTracks()[0];
  const camera = owner.localStream?.getVideoTracks()[0] ?? null;
  owner._screen = { screen, camera };
  if (camera) camera.enabled = false;
  await owner._senders.video.replaceTrack(screen);
  screen.addEventListener('ended', () => {
    stopScreenShare(owner).then(() => call(owner.delegate?.evtMyScreenShareStopped));
  });
  owner.session?.send({ type: 'media_state', sid: owner.sid, video_enabled: true });
}

/** Back to the camera after startScreenShare (the screen capture is released). */
async function stopScreenShare(owner) {
  const sharing = owner._screen;
  if (!sharing) return;
  owner._screen = null;
  sharing.screen.stop();
  if (sharing.camera) sharing.camera.enabled = true;
  await owner._senders?.video?.replaceTrack(sharing.camera);
  if (!sharing.camera) owner.session?.send({ type: 'media_state', sid: owner.sid, video_enabled: false });
}

/** The page's devices, for a device picker (labels once the user allowed media). */
export async function getMediaDevices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  const of = (kind) => all.filter((d) => d.kind === kind).map((d) => ({ deviceId: d.deviceId, label: d.label, groupId: d.groupId }));
  return { audioInput: of('audioinput'), videoInput: of('videoinput'), audioOutput: of('audiooutput') };
}

/** Starts what the autoplay policy held back; call it from a user gesture (a click). */
async function startAudio(owner) {
  await owner.mix?.ctx.resume?.();
  for (const el of owner._blocked ?? []) await el.play();
  owner._blocked?.clear();
  owner._toldBlocked = false;
}

/**
 * After a reconnect, what `resume` (or a ringing callee's `verify_call`) answered for a
 * Call or Conference: back (evtReconnected; ICE restarts if the network changed
 * under the signaling too), or ended meanwhile.
 */
function resumed(owner, m) {
  if (owner.ended) return;
  if (m.type === 'resumed' || m.type === 'verified') {
    call(owner.delegate.evtReconnected);
    const ice = owner.pc?.iceConnectionState;
    if (m.new_media) owner._negotiate(() => newMedia(owner));
    else if (ice === 'failed' || ice === 'disconnected') owner._negotiate(() => owner._restartIce());
  } else if (m.type === 'disconnected') {
    owner._ended(m);
  } else {
    owner._lost();
  }
}

/**
 * The call or room moved to another node (`resumed.new_media`: the node that ran it died,
 * or drained and handed it over): the relay there has no connection of ours, so a new
 * peer connection (new ICE, new DTLS) with the same local tracks replaces the old one.
 * The old one is closed once the new one is up (a draining node's relay still carries
 * the media meanwhile), or after 5 s.
 */
async function newMedia(owner) {
  if (owner.ended || !owner.pc) return;
  const old = owner.pc;
  owner._unwatchIce?.();
  owner._unwatchMedia?.();
  try {
    await owner._firstOffer();
  } finally {
    const pc = owner.pc;
    const close = () => { clearTimeout(timer); pc.removeEventListener('connectionstatechange', up); old.close(); };
    const up = () => { if (pc === old || ['connected', 'failed', 'closed'].includes(pc.connectionState)) close(); };
    const timer = setTimeout(close, 5000);
    pc.addEventListener('connectionstatechange', up);
    up();
  }
}

/**
 * An ICE restart of a Call's or Conference's connection to the relay: new ICE
 * credentials on the same DTLS association, which the relay takes up on the same
 * connection (its keys and lines go on). Resolves true once applied.
 */
/**
 * An RTCPeerConnection's configuration: the server's own TURN servers from `welcome`
 * (short-lived credentials), so that a network that lets only TURN through still
 * connects, and the app's `iceTransportPolicy` ('relay': TURN only).
 */
function pcConfig(owner) {
  const iceServers = (owner.session?.welcome?.ice_servers ?? []).map(({ urls, username, credential }) => ({ urls, username, credential }));
  return { iceServers, iceTransportPolicy: owner.iceTransportPolicy ?? 'all', bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
}

async function restartIce(owner) {
  const pc = owner.pc;
  if (!pc || owner.ended || pc.signalingState === 'closed') return false;
  await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
  await gathered(pc);
  const m = await owner.session.request({ type: 'media_offer', sid: owner.sid, sdp: pc.localDescription.sdp });
  if (m.type !== 'media_answer') throw new Error(m.message ?? 'media refused');
  await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
  return true;
}

/** `promise`, or a rejection after `ms`. */
function within(promise, ms, what) {
  return Promise.race([promise, sleep(ms).then(() => { throw sbError('internal_initialization_error', `${what} took over ${ms} ms`, 1611); })]);
}

/**
 * Watches a peer connection to the relay: when ICE fails (the network changed: Wi-Fi to
 * cellular, a new address) or stays disconnected for 3 s, `restart()` runs (a new-ICE
 * offer, which the relay applies to the same connection: DTLS goes on), at most once per
 * 5 s. Returns a function that stops watching.
 */
/**
 * Puts RED (RFC 2198: each Opus packet also carries the previous frame) first on the
 * audio lines, which is how a browser is asked to send it. Where the relay takes it, a
 * lost packet is filled from the next one without a resend.
 */
function preferRedAudio(pc) {
  const caps = RTCRtpReceiver.getCapabilities?.('audio')?.codecs ?? [];
  const isRed = (c) => c.mimeType.toLowerCase() === 'audio/red';
  if (!caps.some(isRed)) return;
  const order = [...caps.filter(isRed), ...caps.filter((c) => !isRed(c))];
  for (const t of pc.getTransceivers()) {
    if (t.receiver.track?.kind === 'audio' && !t.stopped) {
      try { t.setCodecPreferences(order); } catch (e) { console.warn('switchboard: audio codec preferences refused', e); }
    }
  }
}

function watchIce(pc, restart) {
  let timer = null;
  let last = 0;
  const go = () => {
    if (Date.now() - last < 5000 || pc.signalingState === 'closed') return;
    last = Date.now();
    restart();
  };
  const onChange = () => {
    clearTimeout(timer);
    if (pc.iceConnectionState === 'failed') go();
    else if (pc.iceConnectionState === 'disconnected') timer = setTimeout(go, 3000);
  };
  pc.addEventListener('iceconnectionstatechange', onChange);
  return () => { clearTimeout(timer); pc.removeEventListener('iceconnectionstatechange', onChange); };
}

/** The relay is ICE-lite without trickle: an offer goes out with every host candidate. */
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
    setTimeout(resolve, 3000);
  });
}

/**
 * One signaling session, shared: the page's WebSocket to the server, on which any
 * number of `Call`s and `Conference`s run at once (each by its `sid`), and on which
 * calls offered to this user arrive (`onIncomingCall`). A `Call` or `Conference`
 * created without an engine opens a private one for itself.
 */
export class Engine {
  /**
   * Connects and signs in. `onIncomingCall({ ccParam, sid, peerId, peerServiceId,
   * mediaType, appServerData })` runs for each call offered to this user; answer it with
   * `new Call({ engine }).verifyCall({ ccParam, … })` on this same engine.
   */
  static async connect({ serverUrl, myId, myServiceId, accessToken, onIncomingCall, onCallEnded, onClosed, onReconnecting, onReconnected, onTokenExpiring }) {
    const engine = new Engine(serverUrl, { token: accessToken, service_id: myServiceId, user_id: myId, ue_type: 'BROWSER' });
    Object.assign(engine, { onIncomingCall, onCallEnded, onClosed, onReconnecting, onReconnected, onTokenExpiring });
    await engine.open();
    return engine;
  }

  constructor(serverUrl, hello) {
    this.serverUrl = serverUrl;
    /** What the next connection signs in with (a refreshed token, a resume_param). */
    this.hello = hello;
    /** sid → the Call or Conference it belongs to */
    this.routes = new Map();
    /** Gets what no sid claims (a private engine's one owner). */
    this.fallback = null;
    /** Messages sent while reconnecting, sent once back. */
    this.queued = [];
    this.session = this._session();
  }

  _session() { return new Session(this.serverUrl, this.hello, (m) => this._route(m), (lost) => this._closed(lost)); }

  async open() { this.welcome = await this.session.open(); return this.welcome; }

  /** My user ID and service, as the server authenticated them. */
  get userId() { return this.welcome?.user_id; }
  get serviceId() { return this.welcome?.service_id; }

  /** Whether the engine is getting its connection back (evtReconnecting was told). */
  get isReconnecting() { return !!this.reconnecting; }

  async request(msg) {
    if (this.reconnecting) await this.reconnecting;
    return this.session.request(msg);
  }

  send(msg) {
    if (this.reconnecting) this.queued.push(msg); else this.session.send(msg);
  }

  /**
   * Hands over a fresh access token (after `onTokenExpiring` / `evtTokenExpiring`): the
   * session goes on, and a reconnect signs in with it. Rejects with an Error if the
   * server refuses it.
   */
  async updateAccessToken(accessToken) {
    this.hello = { ...this.hello, token: accessToken };
    const m = await this.request({ type: 'refresh_token', token: accessToken });
    if (m.type !== 'token_refreshed') throw refusal(m);
    // Fresh TURN credentials: new connections, and live ones at their next allocation
    // (an ICE restart), use them; a call can outlast the first ones.
    if (m.ice_servers?.length && this.welcome) {
      this.welcome = { ...this.welcome, ice_servers: m.ice_servers };
      for (const owner of this._owners()) {
        try { owner.pc?.setConfiguration(pcConfig(owner)); } catch { /* a closed connection */ }
      }
    }
  }

  attach(sid, owner) { this.routes.set(sid, owner); }
  detach(owner) { for (const [sid, o] of this.routes) if (o === owner) this.routes.delete(sid); }

  _route(m) {
    if (m.type === 'call_event') { call(this.onCallEvent, m); return; }
    // The token expired without a refresh: the server closes; coming back needs a new one.
    if (m.type === 'error' && m.req == null && m.error === 'auth') { this.expired = true; call(this.onSigExpired); }
    if (m.type === 'token_expiring') {
      call(this.onTokenExpiring, { expiresAt: m.expires_at });
      for (const o of this._owners()) call(o.delegate?.evtTokenExpiring, { expiresAt: m.expires_at });
      return;
    }
    const owner = (m.sid && this.routes.get(m.sid)) ?? this.fallback;
    if (owner) { owner._onMessage(m); return; }
    if (m.type === 'incoming_call') {
      call(this.onIncomingCall, { ccParam: m.cc_param, sid: m.sid, peerId: m.from_user_id, peerServiceId: m.from_service_id, mediaType: m.media_type, appServerData: m.app_data });
    } else if (m.type === 'disconnected' && m.req == null) {
      call(this.onCallEnded, { sid: m.sid, reason: { code: m.reason.code, strCode: strCode(m.reason.code, m.reason.name) }, source: m.source.name });
    }
  }

  _owners() { return new Set([...this.routes.values(), this.fallback].filter(Boolean)); }

  _closed(lost) {
    if (lost && !this.closedByApp && !this.expired) { this._reconnect(); return; }
    this._giveUp();
  }

  _giveUp() {
    for (const owner of this._owners()) owner._lost();
    this.routes.clear();
    call(this.onClosed);
  }

  /**
   * The connection was lost: connect again (backing off from 200 ms to 3 s) and
   * `resume` every call and room on it, within the server's reconnect grace (its
   * `welcome` says how long; 15 s by default). Calls, rooms and incoming-call
   * listening go on; media is not interrupted unless the network changed (then ICE
   * restarts). Past the grace everything ends with 1611.
   */
  async _reconnect() {
    let done;
    this.reconnecting = new Promise((r) => { done = r; });
    for (const o of this._owners()) o._reconnecting?.();
    call(this.onReconnecting);
    const until = Date.now() + (this.welcome?.reconnect_grace_ms ?? 15000);
    let wait = 200;
    while (!this.closedByApp && Date.now() < until) {
      await sleep(Math.min(wait, Math.max(0, until - Date.now())));
      wait = Math.min(wait * 2, 3000);
      const session = this._session();
      try {
        this.welcome = { ...this.welcome, ...await within(session.open(), 5000, 'reconnecting') };
      } catch {
        session.close();
        continue;
      }
      this.session = session;
      const resumed = [];
      for (const [sid, owner] of [...this.routes]) resumed.push([owner, await owner._resume(session, sid)]);
      this.reconnecting = null;
      done();
      for (const m of this.queued.splice(0)) session.send(m);
      for (const [owner, m] of resumed) owner._resumed(m);
      call(this.onReconnected);
      return;
    }
    this.reconnecting = null;
    done();
    this._giveUp();
  }

  /** Closes the WebSocket: every Call and Conference on it ends (1611 to the app). */
  close() { this.closedByApp = true; this.session.close(); }
}

function call(fn, ...args) {
  try { fn?.(...args); } catch (e) { console.error('switchboard delegate threw', e); }
}

/**
 * A 1-to-1 call. One object per call: makeCall() as the caller, or verifyCall() as
 * the callee, then acceptCall() / endCall().
 */
export class Call {
  constructor({ serverUrl, videoCodecs, engine, iceTransportPolicy } = {}) {
    if (!serverUrl && !engine) throw new TypeError('serverUrl or engine is required');
    this.engine = engine ?? null;
    this.videoCodecs = videoCodecs;
    this.iceTransportPolicy = iceTransportPolicy;
    if (typeof RTCPeerConnection === 'undefined' || !navigator.mediaDevices?.getUserMedia) {
      this.unsupported = true;
    }
    this.serverUrl = serverUrl ?? engine.serverUrl;
    this.sid = null;
    this.ended = false;
  }

  _start(params) {
    if (this.unsupported) return Promise.reject(sbError('browser_not_supported', 'WebRTC is not available', 1612, strCode(1612)));
    if (this.session && !this.ended) return Promise.reject(sbError('invalid_param', 'this Call object is in a call'));
    // One Call object, one call at a time: after the last one ended it makes the next.
    if (this.ended) this._reset();
    this.params = params;
    this.delegate = params.delegate ?? {};
    this.mediaType = params.mediaType ?? 'audio';
    return null;
  }

  async _localMedia() {
    this.localStream = await openLocal(this, this.mediaType === 'video');
    this._muted = this.params.micOn === false;
    for (const t of this.localStream.getAudioTracks()) t.enabled = !this._muted;
    for (const t of this.localStream.getTracks()) t.addEventListener('ended', () => deviceLost(this, t.kind, t));
    const myVideo = this.params.mediaHtmlElement?.my?.video;
    if (myVideo && this.mediaType === 'video') { myVideo.srcObject = this.localStream; myVideo.muted = true; }
  }

  _reset() {
    for (const k of ['session', 'ownEngine', 'sid', 'role', 'pc', 'remoteStream', 'localStream', 'connected', '_endWanted', '_failing', '_negotiation', '_videoToSend', '_blocked', '_toldBlocked', '_senders', '_muted', '_screen']) delete this[k];
    this.sid = null;
    this.ended = false;
  }

  /** On the shared engine, or on a private one opened with `hello`. */
  async _connect(hello) {
    if (this.engine) { this.session = this.engine; return; }
    this.session = new Engine(this.serverUrl, hello);
    this.session.fallback = this;
    this.ownEngine = true;
    await this.session.open();
  }

  /** Calls `peerId`. Resolves once the server created the call (evtWaitConnected follows). */
  async makeCall(params) {
    const bad = this._start(params);
    if (bad) return bad;
    if (!['audio', 'video'].includes(this.mediaType)) throw sbError('invalid_media_type', 'mediaType must be audio or video');
    this.role = 'caller';
    await this._localMedia();
    await this._connect({ token: params.accessToken, service_id: params.myServiceId, user_id: params.myId, ue_type: 'BROWSER' });
    // A CallEngine's call starts with its own request (`calls`).
    const m = await this.session.request(params.startRequest ?? {
      type: 'make_call', to_user_id: params.peerId, to_service_id: params.peerServiceId ?? params.myServiceId,
      media_type: this.mediaType, app_data: params.appServerData,
    });
    if (m.type === 'call_created') {
      this.sid = m.sid;
      this.session.attach(m.sid, this);
      LIVE.add(this);
      // endCall() while the call was being created: cancel it now.
      if (this._endWanted) this.endCall(...this._endWanted);
      return;
    }
    this._teardown();
    throw refusal(m);
  }

  /** Takes up the call a cc_param names (from a push or listenForCalls). */
  async verifyCall(params) {
    const bad = this._start(params);
    if (bad) return bad;
    this.role = 'callee';
    const hello = params.accessToken
      ? { token: params.accessToken, service_id: params.myServiceId, user_id: params.myId, ue_type: 'BROWSER' }
      : { cc_param: params.ccParam, ue_type: 'BROWSER' };
    try {
      await this._connect(hello);
    } catch (e) {
      throw params.accessToken ? e : sbError('decode_call_param', e.message, e.code);
    }
    const m = await this.session.request({ type: 'verify_call', cc_param: params.ccParam });
    if (m.type === 'verified') {
      this.sid = m.sid;
      this.session.attach(m.sid, this);
      this.mediaType = m.media_type;
      call(this.delegate.evtVerified, { peerId: m.from_user_id, peerServiceId: m.from_service_id, mediaType: m.media_type, appServerData: m.app_data });
      return;
    }
    if (m.type === 'disconnected') { this.sid = m.sid; this._ended(m); return; }
    this._teardown();
    throw refusal(m);
  }

  /**
   * A CallEngine's `accept` of the call `callId` rung on its engine: verified and
   * answered in one request.
   */
  async _acceptRung(callId, params) {
    const bad = this._start(params);
    if (bad) return bad;
    this.role = 'callee';
    await this._connect();
    this.sid = callId;
    this.session.attach(callId, this);
    await this._localMedia();
    const m = await this.session.request({ type: 'accept', call_id: callId });
    if (m.type === 'connected') return;
    this._teardown();
    throw refusal(m);
  }

  /** Answers a verified call. */
  async acceptCall() {
    if (!this.sid || this.role !== 'callee') throw sbError('invalid_param', 'verifyCall first');
    await this._localMedia();
    const m = await this.session.request({ type: 'accept_call', sid: this.sid });
    if (m.type !== 'connected') throw refusal(m);
  }

  /** Ends the call: cancel, decline or hang up. */
  async endCall(reasonCode, userRelCode) {
    // Still being created (makeCall has not resolved): cancelled as soon as it exists.
    if (!this.sid && this.role === 'caller' && !this.ended) { this._endWanted = [reasonCode, userRelCode]; return; }
    if (!this.sid || this.ended) return;
    await this.session.request({ type: 'end_call', sid: this.sid, reason: reasonCode, user_rel_code: userRelCode });
  }

  /** Mutes or unmutes my microphone; the peer gets evtPeerMicMuted / evtPeerMicUnmuted. */
  async muteMyAudio(mute) {
    this._muted = !!mute;
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !mute;
    this.session?.send({ type: 'media_state', sid: this.sid, mic_muted: !!mute });
  }

  /**
   * Turns my camera on; the peer gets evtVideoEnabledByPeer. In an audio call this opens
   * the camera (rejecting with reasons 1601-1607 if it cannot) and asks the relay for a
   * line to send video on; the peer's page receives it on a line the relay adds.
   */
  async enableVideo() {
    if (this.localStream && this.localStream.getVideoTracks().length === 0 && this.sid && !this.ended) {
      // One camera even if called again while the first call waits for it.
      this._camera ??= this._openCamera().finally(() => { this._camera = null; });
      await this._camera;
    }
    this._video(true);
  }

  async _openCamera() {
    const track = await openTrack('video', this.params.mediaDeviceId?.inputVideo);
    // A line to send video on exists (a video call, or the camera was on before): the
    // camera goes back on it.
    if (this._senders?.video) {
      await swapTrack(this, 'video', track);
      return;
    }
    this.localStream.addTrack(track);
    track.addEventListener('ended', () => deviceLost(this, 'video', track));
    this._videoToSend = track;
    this.mediaType = 'video';
    const myVideo = this.params.mediaHtmlElement?.my?.video;
    if (myVideo) { myVideo.srcObject = this.localStream; myVideo.muted = true; }
    // After our first offer: the relay knows this connection only once it answered it.
    this._negotiate(() => this.session?.send({ type: 'add_media', sid: this.sid, kind: 'video' }));
  }

  /** Turns my camera off and releases it (its light goes off); the peer gets evtVideoDisabledByPeer. */
  async disableVideo() {
    await swapTrack(this, 'video', null);
    this._video(false);
  }

  _video(on) {
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = on;
    this.session?.send({ type: 'media_state', sid: this.sid, video_enabled: on });
  }

  /** Pauses my video for a moment (the camera stays open); the peer's picture freezes. */
  async pauseMyVideo() {
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = false;
    this.session?.send({ type: 'media_state', sid: this.sid, video_paused: true });
  }

  /** Resumes my paused video. */
  async resumeMyVideo() {
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = true;
    this.session?.send({ type: 'media_state', sid: this.sid, video_paused: false });
  }

  /** Shares my screen instead of my camera (a video call); the peer sees it on the same line. */
  startMyScreenShare() { return startScreenShare(this); }

  /** Back to my camera. */
  stopMyScreenShare() { return stopScreenShare(this); }

  /** Switches the microphone mid-call (a `deviceId` of getMediaDevices().audioInput). */
  changeAudioInputDevice(deviceId) { return changeInput(this, 'audio', deviceId); }

  /** Switches the camera mid-call (a `deviceId` of getMediaDevices().videoInput). */
  changeVideoInputDevice(deviceId) { return changeInput(this, 'video', deviceId); }

  /** Plays the peer on the speaker `deviceId` (where the browser has setSinkId). */
  setAudioOutputDevice(deviceId) {
    const peer = this.params.mediaHtmlElement?.peer ?? {};
    return setSink([peer.audio, peer.video], deviceId);
  }

  /** WebRTC statistics of the connection to the server's relay. */
  async getStats() { return this.pc ? this.pc.getStats() : new Map(); }

  /** Hands over a fresh access token (after evtTokenExpiring). */
  updateAccessToken(accessToken) { return this.session.updateAccessToken(accessToken); }

  /** The same as updateAccessToken (the onUserSigExpired flow of the call-engine face). */
  refreshToken(accessToken) { return this.updateAccessToken(accessToken); }

  /** Plays what the browser's autoplay policy blocked (evtAutoplayBlocked): call it from a click. */
  startAudio() { return startAudio(this); }

  /** The remote media, once connected. */
  get peerStream() { return this.remoteStream ?? null; }

  _onMessage(m) {
    if (m.sid && this.sid && m.sid !== this.sid) return;
    switch (m.type) {
      case 'wait_connected': call(this.delegate.evtWaitConnected); break;
      case 'connected':
        // A callee that answered from a cc_param session comes back with this.
        if (m.resume_param && this.ownEngine && this.session.hello.cc_param) this.session.hello = { cc_param: m.resume_param, ue_type: 'BROWSER' };
        this.connected = true;
        // Started with the microphone off: the peer shows it muted from the start.
        if (this._muted) this.session.send({ type: 'media_state', sid: this.sid, mic_muted: true });
        // A ringing device closing is not the end of the call (other devices ring on);
        // an answered call's page closing is.
        LIVE.add(this);
        this._media().then(() => {
          // The relay's answer never came or was refused: no media, the call is no use.
          if (!this.ended && (!this.pc || !this.pc.remoteDescription)) fail(this, 1609, 'WEB_CONNECT_FAILED_BY_SERVER');
        });
        call(this.delegate.evtConnected);
        break;
      case 'disconnected': if (m.req == null || m.sid === this.sid) this._ended(m); break;
      case 'media_offer': this._negotiate(() => this._relayOffer(m.offer_id, m.sdp)); break;
      // Resumed for us by our node: the call moved to another node (no reconnect).
      case 'resumed': if (m.req == null && m.new_media) this._negotiate(() => newMedia(this)); break;
      case 'peer_media_state':
        if (m.mic_muted === true) call(this.delegate.evtPeerMicMuted);
        if (m.mic_muted === false) call(this.delegate.evtPeerMicUnmuted);
        if (m.video_enabled === true) call(this.delegate.evtVideoEnabledByPeer);
        if (m.video_enabled === false) call(this.delegate.evtVideoDisabledByPeer);
        break;
      default: break;
    }
  }

  /** Runs media negotiations one after another (the relay may offer during our first). */
  _negotiate(step) {
    this._negotiation = (this._negotiation ?? Promise.resolve()).then(step).catch((e) => console.error('switchboard negotiation failed', e));
    return this._negotiation;
  }

  /** The relay adds lines: other parties' media, or the line we asked to send video on. */
  async _relayOffer(offerId, sdp) {
    const pc = this.pc;
    if (!pc || this.ended) return;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const lines = sdpLines(sdp);
    for (const t of pc.getTransceivers()) {
      const line = lines.get(t.mid);
      if (this._videoToSend && line?.kind === 'video' && line.dir === 'sendrecv' && !t.sender.track) {
        await t.sender.replaceTrack(this._videoToSend);
        (this._senders ??= {}).video = t.sender;
        t.sender.setStreams?.(this.localStream);
        t.direction = 'sendrecv';
        this._videoToSend = null;
      }
    }
    this._preferCodecs();
    await pc.setLocalDescription(await pc.createAnswer());
    this.session.send({ type: 'media_answer', sid: this.sid, offer_id: offerId, sdp: pc.localDescription.sdp });
  }

  /** RED first on the audio lines; `videoCodecs` on the video lines (repair formats rtx/red/fec stay). */
  _preferCodecs() {
    if (this.pc) preferRedAudio(this.pc);
    if (!this.videoCodecs?.length || !this.pc) return;
    const caps = RTCRtpReceiver.getCapabilities?.('video')?.codecs ?? [];
    const name = (c) => c.mimeType.split('/')[1].toUpperCase();
    const wanted = this.videoCodecs.map((c) => c.toUpperCase());
    const chosen = wanted.flatMap((w) => caps.filter((c) => name(c) === w));
    const repair = caps.filter((c) => ['RTX', 'RED', 'ULPFEC'].includes(name(c)));
    if (!chosen.length) return;
    for (const t of this.pc.getTransceivers()) {
      if (t.receiver.track?.kind === 'video' && !t.stopped) {
        try { t.setCodecPreferences([...chosen, ...repair]); } catch (e) { console.warn('switchboard: codec preferences refused', e); }
      }
    }
  }

  _media() { return this._negotiate(() => this._firstOffer()); }

  async _firstOffer() {
    const pc = new RTCPeerConnection(pcConfig(this));
    this.pc = pc;
    this._unwatchIce = watchIce(pc, () => this._negotiate(() => this._restartIce()));
    this._unwatchMedia = watchMedia(this, pc);
    this.remoteStream = new MediaStream();
    this._senders = {};
    for (const t of this.localStream.getTracks()) {
      this._senders[t.kind] = pc.addTransceiver(t, { direction: 'sendrecv', streams: [this.localStream] }).sender;
    }
    this._preferCodecs();
    pc.ontrack = (ev) => {
      this.remoteStream.addTrack(ev.track);
      const peer = this.params.mediaHtmlElement?.peer ?? {};
      const el = ev.track.kind === 'video' ? peer.video : peer.audio;
      if (el) { el.srcObject = null; el.srcObject = this.remoteStream; play(this, el); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const m = await this.session.request({ type: 'media_offer', sid: this.sid, sdp: pc.localDescription.sdp });
    if (m.type !== 'media_answer') throw new Error(m.message ?? 'media refused');
    await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
  }

  _ended(m) {
    if (this.ended) return;
    this.ended = true;
    LIVE.delete(this);
    this._teardown();
    call(this.delegate.evtDisconnected, {
      reason: { code: m.reason.code, strCode: strCode(m.reason.code, m.reason.name) },
      source: m.source.name,
      byRemote: m.by_remote,
      userRelCode: m.user_rel_code ?? null,
    });
  }

  _lost() {
    this._ended({ reason: { code: 1611, name: 'WEB_SIGNALING_UNEXPECTED_DISCONNECTED' }, source: { name: this.role ?? 'caller' }, by_remote: false });
  }

  _reconnecting() { if (!this.ended) call(this.delegate.evtReconnecting); }

  /** After a reconnect: takes the call back (a ringing callee verifies again). */
  _resume(session, sid) {
    if (this.role === 'callee' && !this.connected) return session.request({ type: 'verify_call', cc_param: this.params.ccParam });
    return session.request({ type: 'resume', sid });
  }

  _resumed(m) { resumed(this, m); }

  _restartIce() { return restartIce(this); }

  _teardown() {
    this._unwatchIce?.();
    this._unwatchMedia?.();
    this._screen?.screen.stop();
    try { this.pc?.close(); } catch { /* closed */ }
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    closeOrDetach(this);
  }
}

/**
 * Lets go of the engine a Call or Conference used. Its own engine (makeCall /
 * verifyCall / joinConference with a serverUrl) is closed after the owner is taken off
 * it: a start the server refused rejects its promise and fires nothing else (the
 * closing connection must not come back as a 1611 evtDisconnected). A shared engine
 * only forgets the owner.
 */
function closeOrDetach(owner) {
  const session = owner.session;
  if (!session) return;
  session.detach(owner);
  if (!owner.ownEngine) return;
  if (session.fallback === owner) session.fallback = null;
  session.close();
}

/**
 * Listens for calls the server offers directly to this user (no push service
 * needed). `onIncomingCall({ ccParam, sid, peerId, peerServiceId, mediaType,
 * appServerData })` runs for each; answer with `new Call(...).verifyCall({ ccParam,
 * ... })`. Resolves to an object with `close()`.
 */
export async function listenForCalls({ serverUrl, myId, myServiceId, accessToken, onIncomingCall, onCallEnded, onClosed, onReconnecting, onReconnected, onTokenExpiring }) {
  const engine = await Engine.connect({ serverUrl, myId, myServiceId, accessToken, onIncomingCall, onCallEnded, onClosed, onReconnecting, onReconnected, onTokenExpiring });
  return { close: () => engine.close(), engine };
}

/** A room participant as the delegate events give it. */
function peerInfo(p) {
  return {
    userId: p.user_id, serviceId: p.service_id, displayName: p.display_name ?? null, ueType: p.ue_type,
    micMuted: p.mic_muted, videoEnabled: p.video_enabled, joinedAt: p.joined_ms,
  };
}

/** A disconnect as WebPlanetKit reports it. */
function disconnectOf(m) {
  return {
    source: m.source.name,
    reason: { code: m.reason.code, strCode: strCode(m.reason.code, m.reason.name) },
    userRelCode: m.user_rel_code ?? null,
  };
}

/** A rejection of joinConference: a SwitchboardError. */
const joinError = (reason, message, code, strCode) => sbError(reason, message, code, strCode);

/**
 * A group call (room), in WebPlanetKit's conference shape: `joinConference`, then
 * `leaveConference`. Everyone's audio plays through the one `roomAudio` element; a
 * peer's video arrives only after `requestPeerVideo`.
 */
export class Conference {
  constructor({ serverUrl, engine, iceTransportPolicy } = {}) {
    if (!serverUrl && !engine) throw new TypeError('serverUrl or engine is required');
    this.engine = engine ?? null;
    this.iceTransportPolicy = iceTransportPolicy;
    this.serverUrl = serverUrl ?? engine.serverUrl;
    this.unsupported = typeof RTCPeerConnection === 'undefined' || !navigator.mediaDevices?.getUserMedia;
    this.sid = null;
    this.ended = false;
    /** user ID → peer info */
    this.peers = new Map();
    /** mid → user ID, from the server's media_lines */
    this.lineOwners = new Map();
    /** user ID → the <video> a requestPeerVideo named */
    this.videoViews = new Map();
  }

  /**
   * Joins (or creates) the room `roomId` of `roomServiceId` (default: mine). Resolves
   * once in the room (evtConnected fires first); rejects with an Error carrying
   * `reason` (a start-fail reason, or the disconnect reason's name, e.g. ROOM_IS_FULL)
   * and `code`.
   */
  async joinConference(params) {
    if (this.unsupported) throw joinError('browser_not_supported', 'WebRTC is not available', 1612);
    if (this.session) throw joinError('invalid_param', 'this Conference object is already in use');
    this.params = params;
    this.delegate = params.delegate ?? {};
    this.mediaType = params.mediaType ?? 'audio';
    if (!['audio', 'video'].includes(this.mediaType)) throw joinError('invalid_media_type', 'mediaType must be audio or video');
    const micOn = params.micOn ?? true;
    const cameraOn = params.cameraOn ?? true;
    this.localStream = await openLocal(this, this.mediaType === 'video');
    this._muted = !micOn;
    for (const t of this.localStream.getTracks()) t.addEventListener('ended', () => deviceLost(this, t.kind, t));
    for (const t of this.localStream.getAudioTracks()) t.enabled = micOn;
    for (const t of this.localStream.getVideoTracks()) t.enabled = cameraOn;
    const myVideo = params.mediaHtmlElement?.myVideo;
    if (myVideo && this.mediaType === 'video') { myVideo.srcObject = this.localStream; myVideo.muted = true; }
    if (this.engine) {
      this.session = this.engine;
    } else {
      this.session = new Engine(this.serverUrl, { token: params.accessToken, service_id: params.myServiceId, user_id: params.myId, ue_type: 'BROWSER' });
      this.session.fallback = this;
      this.ownEngine = true;
      try {
        await this.session.open();
      } catch (e) {
        this._teardown();
        throw joinError(e.reason ?? 'internal_initialization_error', e.message, e.code);
      }
    }
    // A CallEngine's group call is entered with its own request (`calls`, `accept`, `join_call`).
    const m = await this.session.request(params.startRequest ?? {
      type: 'join_room', room_id: params.roomId, room_service_id: params.roomServiceId ?? params.myServiceId,
      media_type: this.mediaType, display_name: params.displayName, app_data: params.appServerData,
      mic_muted: !micOn, video_enabled: this.mediaType === 'video' && cameraOn,
    });
    if (m.type !== 'room_joined') {
      this._teardown();
      throw refusal(m);
    }
    this.sid = m.sid;
    this.session.attach(m.sid, this);
    LIVE.add(this);
    this.roomInfo = { roomId: m.room_id, roomServiceId: m.room_service_id, hostId: m.host_id, mediaType: m.media_type, setupTime: m.setup_time };
    for (const p of m.peers) this.peers.set(p.user_id, peerInfo(p));
    this._negotiate(() => this._firstOffer()).then(() => {
      // A room whose media could not be negotiated is no use: 1609.
      if (!this.ended && (!this.pc || !this.pc.remoteDescription)) fail(this, 1609, 'WEB_CONNECT_FAILED_BY_SERVER');
    });
    call(this.delegate.evtConnected, this.roomInfo);
    if (m.peers.length) {
      call(this.delegate.evtPeerListUpdated, { addedPeers: [...this.peers.values()], removedPeers: [], totalPeersCount: this.peers.size });
    }
  }

  /** Leaves the room; evtDisconnected follows (NORMAL, source participant). */
  async leaveConference() {
    if (!this.sid || this.ended) return;
    const m = await this.session.request({ type: 'leave_room', sid: this.sid });
    if (m.type === 'disconnected') this._ended(m);
  }

  /** Mutes or unmutes my microphone; the others get evtPeersMicMuted / evtPeersMicUnmuted. */
  async muteMyAudio(mute) {
    this._muted = !!mute;
    for (const t of this.localStream?.getAudioTracks() ?? []) t.enabled = !mute;
    this.session?.send({ type: 'media_state', sid: this.sid, mic_muted: !!mute });
  }

  /** Turns my camera (back) on in a video room; the others get evtPeersVideoUpdated. */
  async enableVideo() {
    if (this._senders?.video && !this.localStream?.getVideoTracks().length) {
      await swapTrack(this, 'video', await openTrack('video', this.params.mediaDeviceId?.inputVideo));
    }
    this._video(true);
  }

  /** Turns my camera off and releases it; the others get evtPeersVideoUpdated. */
  async disableVideo() {
    await swapTrack(this, 'video', null);
    this._video(false);
  }

  /** Shares my screen instead of my camera (a video room); the others see it on my video line. */
  startMyScreenShare() { return startScreenShare(this); }

  /** Back to my camera. */
  stopMyScreenShare() { return stopScreenShare(this); }

  /** Switches the microphone (a `deviceId` of getMediaDevices().audioInput). */
  changeAudioInputDevice(deviceId) { return changeInput(this, 'audio', deviceId); }

  /** Switches the camera (a `deviceId` of getMediaDevices().videoInput). */
  changeVideoInputDevice(deviceId) { return changeInput(this, 'video', deviceId); }

  /** Plays the room (and the peers' videos) on the speaker `deviceId` (where the browser has setSinkId). */
  setAudioOutputDevice(deviceId) {
    return setSink([this.params.mediaHtmlElement?.roomAudio, ...this.videoViews.values()], deviceId);
  }

  /** Pauses my video for a moment (the line stays); the others get evtPeersVideoPaused. */
  async pauseMyVideo() { this._pause(true); }

  /** Resumes my paused video; the others get evtPeersVideoResumed. */
  async resumeMyVideo() { this._pause(false); }

  _pause(paused) {
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = !paused;
    this.session?.send({ type: 'media_state', sid: this.sid, video_paused: paused });
  }

  _video(on) {
    for (const t of this.localStream?.getVideoTracks() ?? []) t.enabled = on;
    this.session?.send({ type: 'media_state', sid: this.sid, video_enabled: on });
  }

  /**
   * Starts receiving `userId`'s video into `videoViewElement`. The relay forwards it only
   * from now on and asks the sender for a keyframe, so it shows at once. `resolution`:
   * `qvga`, `vga` or `hd`.
   */
  async requestPeerVideo({ userId, resolution, videoViewElement }) {
    if (!this.sid || this.ended) throw joinError('invalid_param', 'not in a room');
    if (videoViewElement) this.videoViews.set(userId, videoViewElement);
    const m = await this.session.request({ type: 'request_peer_video', sid: this.sid, user_id: userId, resolution });
    if (m.type !== 'peer_video') { this.videoViews.delete(userId); throw joinError('invalid_param', m.message); }
    this._attachViews();
  }

  /** Stops receiving `userId`'s video. */
  async removePeerVideo({ userId }) {
    const el = this.videoViews.get(userId);
    this.videoViews.delete(userId);
    if (el) el.srcObject = null;
    if (this.sid && !this.ended) await this.session.request({ type: 'remove_peer_video', sid: this.sid, user_id: userId });
  }

  /** Everyone else in the room. */
  getPeersInfo() { return [...this.peers.values()]; }

  /** Hands over a fresh access token (after evtTokenExpiring). */
  updateAccessToken(accessToken) { return this.session.updateAccessToken(accessToken); }

  /** The same as updateAccessToken (the onUserSigExpired flow of the call-engine face). */
  refreshToken(accessToken) { return this.updateAccessToken(accessToken); }

  /** Plays what the browser's autoplay policy blocked (evtAutoplayBlocked): call it from a click. */
  startAudio() { return startAudio(this); }

  /** Short data to the others (or `targets`): `type` ≤ 100 bytes, `data` ≤ 800 bytes. */
  async sendShortData({ type, data, targets }) {
    if (!this.sid || this.ended) throw joinError('invalid_param', 'not in a room');
    this.session.send({ type: 'short_data', sid: this.sid, data_type: type, data, targets });
  }

  /** WebRTC statistics of the connection to the server's relay. */
  async getStats() { return this.pc ? this.pc.getStats() : new Map(); }

  _onMessage(m) {
    if (m.sid && this.sid && m.sid !== this.sid) return;
    switch (m.type) {
      case 'peer_list': {
        const added = m.added.map(peerInfo);
        for (const p of added) this.peers.set(p.userId, p);
        const removed = m.removed.map((u) => this.peers.get(u) ?? { userId: u });
        for (const u of m.removed) {
          this.peers.delete(u);
          const el = this.videoViews.get(u);
          if (el) el.srcObject = null;
          this.videoViews.delete(u);
        }
        call(this.delegate.evtPeerListUpdated, { addedPeers: added, removedPeers: removed, totalPeersCount: m.total });
        break;
      }
      case 'peer_media_state': {
        const p = this.peers.get(m.user_id);
        if (!p) break;
        if (m.mic_muted != null) {
          p.micMuted = m.mic_muted;
          call(m.mic_muted ? this.delegate.evtPeersMicMuted : this.delegate.evtPeersMicUnmuted, [p]);
        }
        if (m.video_enabled != null) {
          p.videoEnabled = m.video_enabled;
          call(this.delegate.evtPeersVideoUpdated, [p]);
        }
        if (m.video_paused != null) {
          p.videoPaused = m.video_paused;
          call(m.video_paused ? this.delegate.evtPeersVideoPaused : this.delegate.evtPeersVideoResumed, [p]);
        }
        break;
      }
      case 'media_lines':
        for (const l of m.lines) this.lineOwners.set(l.mid, l.user_id);
        this._attachViews();
        break;
      case 'media_offer': this._negotiate(() => this._relayOffer(m.offer_id, m.sdp)); break;
      // Resumed for us by our node: the call moved to another node (no reconnect).
      case 'resumed': if (m.req == null && m.new_media) this._negotiate(() => newMedia(this)); break;
      case 'peer_audio_levels': {
        // The CallEngine's volumes include my own (seed 004's volumeMap is everyone's).
        call(this.delegate.allLevels, { ...m.levels });
        const levels = { ...m.levels };
        delete levels[this.params.myId ?? this.session.userId];
        call(this.delegate.evtPeersAudioLevel, levels);
        break;
      }
      case 'peers_network_quality': {
        call(this.delegate.allQuality, { ...m.quality });
        const quality = { ...m.quality };
        delete quality[this.params.myId ?? this.session.userId];
        call(this.delegate.evtPeersNetworkQuality, quality);
        break;
      }
      case 'peers_talking': call(this.delegate.evtPeersTalkingStatusUpdated, { active: m.active, inactive: m.inactive }); break;
      case 'short_data': call(this.delegate.evtShortDataReceived, { peerId: m.from_user_id, type: m.data_type, data: m.data }); break;
      case 'app_control_message': call(this.delegate.evtAppControlMessageReceived, { data: m.data }); break;
      case 'disconnected': if (m.req == null) this._ended(m); break;
      default: break;
    }
  }

  /** Shows each requested peer's video in its element, once its line is known. */
  _attachViews() {
    if (!this.pc) return;
    for (const t of this.pc.getTransceivers()) {
      const user = this.lineOwners.get(t.mid);
      const el = user && this.videoViews.get(user);
      if (!el || t.receiver.track.kind !== 'video') continue;
      if (el.srcObject?.getVideoTracks()[0] === t.receiver.track) continue;
      el.srcObject = new MediaStream([t.receiver.track]);
      play(this, el);
    }
  }

  /** Plays every peer's audio through the one roomAudio element (mixed in WebAudio). */
  _roomAudio(track) {
    if (!this.mix) {
      const ctx = new AudioContext();
      this.mix = { ctx, dest: ctx.createMediaStreamDestination(), keep: [] };
      ctx.resume?.().catch(() => {});
      const el = this.params.mediaHtmlElement?.roomAudio;
      if (el) { el.srcObject = this.mix.dest.stream; play(this, el); }
    }
    const stream = new MediaStream([track]);
    // Chromium feeds a remote track to WebAudio only while a media element plays it.
    const sink = new Audio();
    sink.muted = true;
    sink.srcObject = stream;
    sink.play?.().catch(() => {});
    this.mix.keep.push(sink);
    this.mix.ctx.createMediaStreamSource(stream).connect(this.mix.dest);
  }

  _negotiate(step) {
    this._negotiation = (this._negotiation ?? Promise.resolve()).then(step).catch((e) => console.error('switchboard negotiation failed', e));
    return this._negotiation;
  }

  async _firstOffer() {
    const pc = new RTCPeerConnection(pcConfig(this));
    this.pc = pc;
    this._unwatchIce = watchIce(pc, () => this._negotiate(() => this._restartIce()));
    this._unwatchMedia = watchMedia(this, pc);
    for (const t of this.localStream.getTracks()) {
      const init = { direction: 'sendrecv', streams: [this.localStream] };
      // Simulcast: a small and a full-size layer; the server forwards each receiver the
      // one that fits the size it asked for.
      if (t.kind === 'video' && this.params.simulcast) {
        init.sendEncodings = [{ rid: 'q', scaleResolutionDownBy: 2, maxBitrate: 200_000 }, { rid: 'f', maxBitrate: 1_200_000 }];
      }
      (this._senders ??= {})[t.kind] = pc.addTransceiver(t, init).sender;
    }
    preferRedAudio(pc);
    pc.ontrack = (ev) => {
      if (ev.track.kind === 'audio') this._roomAudio(ev.track);
      else this._attachViews();
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const m = await this.session.request({ type: 'media_offer', sid: this.sid, sdp: pc.localDescription.sdp });
    if (m.type !== 'media_answer') throw new Error(m.message ?? 'media refused');
    await pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
  }

  async _relayOffer(offerId, sdp) {
    const pc = this.pc;
    if (!pc || this.ended) return;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    this.session.send({ type: 'media_answer', sid: this.sid, offer_id: offerId, sdp: pc.localDescription.sdp });
    this._attachViews();
  }

  _ended(m) {
    if (this.ended) return;
    this.ended = true;
    LIVE.delete(this);
    this._teardown();
    call(this.delegate.evtDisconnected, disconnectOf(m));
  }

  _lost() {
    this._ended({ reason: { code: 1611, name: 'WEB_SIGNALING_UNEXPECTED_DISCONNECTED' }, source: { name: 'participant' } });
  }

  _reconnecting() { if (!this.ended) call(this.delegate.evtReconnecting); }

  _resume(session, sid) { return session.request({ type: 'resume', sid }); }

  _resumed(m) { resumed(this, m); }

  async _restartIce() { if (await restartIce(this)) this._attachViews(); }

  _teardown() {
    this._unwatchIce?.();
    this._unwatchMedia?.();
    this._screen?.screen.stop();
    try { this.pc?.close(); } catch { /* closed */ }
    for (const t of this.localStream?.getTracks() ?? []) t.stop();
    this.mix?.ctx.close().catch(() => {});
    closeOrDetach(this);
  }
}

/** `callMediaType` numbers of the call-engine face (seed 004). */
export const CALL_MEDIA_TYPE = Object.freeze({ UNKNOWN: 0, AUDIO: 1, VIDEO: 2 });
/** `callRole` numbers. */
export const CALL_ROLE = Object.freeze({ NONE: 0, CALLER: 1, CALLED: 2 });
/** `reason` numbers of `onCallEnd` and `onCallNotConnected`. */
export const CALL_END_REASON = Object.freeze({
  UNKNOWN: 0, HANGUP: 1, REJECT: 2, NO_RESPONSE: 3, OFFLINE: 4, LINE_BUSY: 5, CANCELED: 6,
  OTHER_DEVICE_ACCEPTED: 7, OTHER_DEVICE_REJECT: 8, END_BY_SERVER: 9,
});
/** Every event name of seed 004 (TUICallEvent), and the newer engine's two. */
export const CALL_EVENTS = Object.freeze([
  'onError', 'onCallReceived', 'onCallCancelled', 'onCallBegin', 'onCallEnd', 'onCallMediaTypeChanged',
  'onUserReject', 'onUserNoResponse', 'onUserLineBusy', 'onUserJoin', 'onUserLeave', 'onUserVideoAvailable',
  'onUserAudioAvailable', 'onUserVoiceVolumeChanged', 'onUserNetworkQualityChanged', 'onKickedOffline',
  'onUserSigExpired', 'onUserInviting', 'onCallNotConnected',
]);

/** The event names as constants: `CALL_EVENT.ON_USER_JOIN` is `'onUserJoin'`. */
export const CALL_EVENT = Object.freeze(Object.fromEntries(CALL_EVENTS.map((n) => [n.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase(), n])));

const mediaName = (type) => (type === CALL_MEDIA_TYPE.VIDEO || type === 'video' ? 'video' : 'audio');
// A group call's ID is its room's sid (32 hex digits); a 1-to-1 call's is a UUID.
const isGroupId = (id) => /^[0-9a-f]{32}$/.test(id);

/**
 * The call-engine face (seed 004, TUICallEngine) for apps written the Tencent way:
 * `calls` one or several users, `accept` / `reject` / `ignore` / `hangup`,
 * `inviteUser`, `join`, and every TUICallEvent through `on(name, fn)`, with seed 004's
 * payloads (plus `callId`). One call at a time per engine.
 *
 * ```js
 * const engine = await CallEngine.login({ serverUrl, userId: 'alice', accessToken });
 * engine.on('onCallReceived', ({ callId, callerId }) => engine.accept({ mediaHtmlElement }));
 * await engine.calls({ userIdList: ['bob', 'carol'], callMediaType: CALL_MEDIA_TYPE.VIDEO });
 * ```
 */
export class CallEngine {
  /**
   * Signs in (an engine session: it is rung by group calls and hears the events).
   * `serviceId` defaults to the token's. `multiDevice` (TUICallEngine's
   * `enableMultiDeviceAbility`, default false): without it this login signs the user's
   * other engine instances out (they get `onKickedOffline`); with it every device rings
   * and the first to answer takes the call.
   */
  static async login({ serverUrl, userId, serviceId, accessToken, multiDevice = false }) {
    const e = CallEngine.createInstance({ serverUrl });
    e.enableMultiDeviceAbility(multiDevice);
    await e.login({ userId, serviceId, userSig: accessToken });
    return e;
  }

  /** An engine for `serverUrl`, not signed in yet (TUICallEngine.createInstance). */
  static createInstance({ serverUrl }) { return new CallEngine(serverUrl); }

  constructor(serverUrl) {
    this.serverUrl = serverUrl;
    this.listeners = new Map();
    /** The call in progress: `{ id, group, owner }` (owner: a Call or a Conference). */
    this.current = null;
    /** The last call rung on this engine, waiting for accept / reject. */
    this.rung = null;
    this.multiDevice = false;
    // One instance: its reconnects are not a second login that would sign it out.
    this.instance = globalThis.crypto?.randomUUID?.() ?? `${Date.now()}-${Math.random()}`;
  }

  /**
   * TUICallEngine's multi-device switch, before `login` (default false): without it a
   * login signs the user's other instances out (`onKickedOffline`); with it every
   * device rings and the first to answer takes the call.
   */
  enableMultiDeviceAbility(enable) { this.multiDevice = !!enable; }

  /** Signs in with an access token (`userSig`), or again after `onUserSigExpired`. */
  async login({ userId, serviceId, userSig }) {
    this.signedOut = false;
    const engine = new Engine(this.serverUrl, {
      token: userSig, service_id: serviceId, user_id: userId, ue_type: 'BROWSER', engine: true, multi_device: this.multiDevice, instance: this.instance,
    });
    engine.onCallEvent = (m) => this._serverEvent(m);
    engine.onSigExpired = () => this._emit('onUserSigExpired', {});
    engine.onClosed = () => { if (!this.signedOut && !engine.expired) this._emit('onError', { code: 1611, msg: 'the connection to the server is gone' }); };
    await engine.open();
    this.engine = engine;
  }

  /** Listens for a TUICallEvent (the same as `on`). */
  addEventListener(name, fn) { this.on(name, fn); }

  /** Stops listening (the same as `off`). */
  removeEventListener(name, fn) { this.off(name, fn); }

  /** My user ID, as the server authenticated it. */
  get userId() { return this.engine.userId; }

  /** Listens for a TUICallEvent (`CALL_EVENT.ON_USER_JOIN`, or its name). */
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
  }

  /** Stops listening. */
  off(name, fn) { this.listeners.get(name)?.delete(fn); }

  _emit(name, payload) { for (const fn of this.listeners.get(name) ?? []) call(fn, payload); }

  _serverEvent(m) {
    const { name, ...fields } = m.event;
    if (name === 'onKickedOffline') {
      // Signed in elsewhere (without multi-device): this instance is out for good.
      this.signedOut = true;
      this._emit(name, {});
      this.engine.close();
      return;
    }
    if (name === 'onCallReceived') this.rung = { id: m.call_id, mediaType: mediaName(fields.callMediaType), callerId: fields.callerId };
    if (['onCallCancelled', 'onCallNotConnected'].includes(name) && this.rung?.id === m.call_id) this.rung = null;
    // The camera follows the call's media type, whoever switched it.
    if (name === 'onCallMediaTypeChanged' && this.current?.owner && !this.current.owner.ended) {
      const owner = this.current.owner;
      const change = fields.newCallMediaType === CALL_MEDIA_TYPE.VIDEO ? owner.enableVideo() : owner.disableVideo();
      change.catch((e) => this._emit('onError', { code: e.code ?? 0, msg: e.message, callId: m.call_id }));
    }
    // Over for me (the server's own frame, `disconnected`, tears the media down).
    if (['onCallEnd', 'onCallNotConnected'].includes(name) && (this.current?.id ?? this.current?.owner.sid) === m.call_id) this.current = null;
    this._emit(name, { ...fields, callId: m.call_id });
  }

  /**
   * Calls `userIdList` (one user: a 1-to-1 call; several: a group call). Resolves with
   * the call ID once the server took it. `callMediaType`: 1 audio, 2 video. `timeout`
   * (s, default 30), `userData`, `roomId` (a number), `groupId`. `mediaHtmlElement`:
   * `{ peer: { audio, video }, my: { video } }` for a 1-to-1 call, `{ roomAudio, myVideo }`
   * for a group call.
   */
  async calls({ userIdList, callMediaType = CALL_MEDIA_TYPE.AUDIO, timeout, userData, roomId, groupId, mediaHtmlElement, delegate }) {
    if (this.current) throw sbError('invalid_param', 'already in a call');
    const request = {
      type: 'calls', user_ids: userIdList, media_type: mediaName(callMediaType), timeout_secs: timeout,
      user_data: userData, room_id: roomId, group_id: groupId,
    };
    const group = userIdList.length !== 1 || roomId != null || groupId != null;
    const params = { mediaType: request.media_type, mediaHtmlElement, delegate: this._delegate(group, delegate), startRequest: request };
    return this._enter(group, params, userIdList[0]);
  }

  /** Accepts the call that rang (`onCallReceived`). */
  async accept({ mediaHtmlElement, delegate } = {}) {
    const rung = this.rung;
    if (!rung) throw sbError('invalid_param', 'no call rings');
    this.rung = null;
    const group = isGroupId(rung.id);
    const params = { mediaType: rung.mediaType, mediaHtmlElement, delegate: this._delegate(group, delegate) };
    if (group) return this._enter(true, { ...params, startRequest: { type: 'accept', call_id: rung.id } });
    const owner = new Call({ engine: this.engine });
    this.current = { id: rung.id, group: false, owner, peerId: rung.callerId };
    try {
      await owner._acceptRung(rung.id, params);
    } catch (e) {
      this.current = null;
      throw e;
    }
    return rung.id;
  }

  /** Rejects the call that rang (the caller hears onUserReject). */
  async reject() { return this._decline('reject'); }

  /** Lets the call that rang go as busy (the caller hears onUserLineBusy). */
  async ignore() { return this._decline('ignore'); }

  async _decline(type) {
    const rung = this.rung;
    if (!rung) throw sbError('invalid_param', 'no call rings');
    this.rung = null;
    const m = await this.engine.request({ type, call_id: rung.id });
    if (m.type === 'error') throw refusal(m);
  }

  /** Leaves the call (the caller before anyone answered cancels it); a rung call is rejected. */
  async hangup() {
    if (!this.current) return this.rung ? this.reject() : undefined;
    const { id, owner } = this.current;
    const m = await this.engine.request({ type: 'hangup', call_id: id ?? owner.sid });
    if (m.type === 'error') throw refusal(m);
    // Left (the answer is the room's or call's `disconnected`): its media goes now.
    if (m.type === 'disconnected' && !owner.ended) owner._ended(m);
  }

  /**
   * This user's nickname and avatar (TUICallEngine's `setSelfInfo`): its invitees see
   * them in `onCallReceived` (`callerNickname`, `callerAvatarUrl`), group call records
   * and the others' room views keep the nickname. `setSelfInfo(nickname, avatarUrl)` or
   * `setSelfInfo({ nickname, avatarUrl })`.
   */
  async setSelfInfo(nickname, avatarUrl) {
    const o = typeof nickname === 'object' && nickname !== null ? nickname : { nickname, avatarUrl };
    const m = await this.engine.request({ type: 'set_self_info', nickname: o.nickname, avatar_url: o.avatarUrl });
    if (m.type !== 'done') throw refusal(m);
  }

  /** Invites more users into the group call in progress. */
  async inviteUser({ userIdList, timeout }) {
    if (!this.current?.group) throw sbError('invalid_param', 'not in a group call');
    const m = await this.engine.request({ type: 'invite_user', call_id: this.current.id, user_ids: userIdList, timeout_secs: timeout });
    if (m.type !== 'done') throw refusal(m);
  }

  /** Joins a live group call this user was invited to. */
  async join({ callId, callMediaType = CALL_MEDIA_TYPE.AUDIO, mediaHtmlElement, delegate }) {
    const params = { mediaType: mediaName(callMediaType), mediaHtmlElement, delegate: this._delegate(true, delegate), startRequest: { type: 'join_call', call_id: callId } };
    return this._enter(true, params);
  }

  /**
   * Switches the call's media type (`callMediaType` 1 audio, 2 video): video to audio in
   * any call, audio to video in a 1-to-1 call. Everyone hears onCallMediaTypeChanged,
   * and cameras follow.
   */
  async switchCallMediaType(callMediaType) {
    if (!this.current) throw sbError('invalid_param', 'not in a call');
    const m = await this.engine.request({ type: 'switch_call_media', call_id: this.current.id ?? this.current.owner.sid, media_type: mediaName(callMediaType) });
    if (m.type !== 'done') throw refusal(m);
  }

  /**
   * Shows a participant's video in `videoElement`: `startRemoteView(userId, element)`
   * (TUICallEngine's form) or `startRemoteView({ userId, videoElement, resolution })`.
   * In a 1-to-1 call the peer's video plays in the element given at `calls` / `accept`
   * (`mediaHtmlElement.peer.video`), or in this one.
   */
  async startRemoteView(userId, element) {
    const { userId: user, videoElement, resolution } = typeof userId === 'object' ? userId : { userId, videoElement: element };
    const owner = this.current?.owner;
    if (owner instanceof Conference) await owner.requestPeerVideo({ userId: user, resolution, videoViewElement: videoElement });
    else if (owner?.remoteStream && videoElement) { videoElement.srcObject = owner.remoteStream; videoElement.play?.().catch(() => {}); }
  }

  /** Stops showing (and receiving) a participant's video. */
  async stopRemoteView(userId) {
    const owner = this.current?.owner;
    if (owner instanceof Conference) await owner.removePeerVideo({ userId: typeof userId === 'object' ? userId.userId : userId });
  }

  async openMicrophone() { await this.current?.owner.muteMyAudio(false); }
  async closeMicrophone() { await this.current?.owner.muteMyAudio(true); }

  /** Turns my camera on (into the call), its preview in `element` if given. */
  async openCamera(element) {
    const owner = this.current?.owner;
    if (!owner) return;
    await owner.enableVideo();
    if (element && owner.localStream) { element.srcObject = owner.localStream; element.muted = true; }
  }

  async closeCamera() { await this.current?.owner.disableVideo(); }

  /** The cameras, microphones and speakers (`getMediaDevices`). */
  getDevices() { return getMediaDevices(); }

  /** Switches the microphone or camera (`kind`: 'audio' / 'video') of the call in progress. */
  async switchDevice(kind, deviceId) {
    const owner = this.current?.owner;
    if (!owner) return;
    await (kind === 'video' ? owner.changeVideoInputDevice(deviceId) : owner.changeAudioInputDevice(deviceId));
  }

  /** The call in progress: its RTCPeerConnection stats. */
  async getStats() { return this.current?.owner.getStats() ?? new Map(); }

  /**
   * This user's own recent calls, 1-to-1 and group, newest first (TUICallEngine's
   * `queryRecentCalls`): `begin` / `end` (epoch ms), `result` (`MISSED`, `INCOMING`,
   * `OUTGOING`), `limit` (1-100, default 20). Each: `{ callId, scene, inviter,
   * inviteList, mediaType, role, result, beginTime, totalTime }`.
   */
  async queryRecentCalls({ begin, end, result, limit } = {}) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ begin, end, result, limit })) if (v != null) q.set(k, String(v));
    const url = new URL(`/v1/me/calls?${q}`, this.serverUrl.replace(/^ws/, 'http'));
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${this.engine.hello.token}` } });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw sbError(resp.status === 401 ? 'auth_error' : 'invalid_param', body.message ?? `HTTP ${resp.status}`);
    return body.calls;
  }

  /** Signs out: the connection closes, and with it any call. */
  logout() { this.signedOut = true; this.engine?.close(); }

  async _enter(group, params, peerId) {
    const owner = group ? new Conference({ engine: this.engine }) : new Call({ engine: this.engine });
    this.current = { id: null, group, owner, peerId };
    try {
      if (group) await owner.joinConference(params); else await owner.makeCall(params);
    } catch (e) {
      if (this.current?.owner === owner) this.current = null;
      throw e;
    }
    // (A call may be over before its start resolved: all invitees busy, say.)
    if (this.current?.owner === owner) this.current.id = owner.sid;
    return owner.sid;
  }

  /**
   * The delegate of the Call or Conference: the events an SDK sees itself, by seed 004's
   * names; then the app's own `delegate` (PlanetKit's events of the same Call or
   * Conference, for an app that draws a room view), if it gave one.
   */
  _delegate(group, extra) {
    const ours = this._ownDelegate(group);
    if (!extra) return ours;
    return new Proxy({}, {
      get: (_, name) => (arg) => { call(ours[name], arg); call(extra[name], arg); },
    });
  }

  _ownDelegate(group) {
    const peer = () => this.current?.peerId;
    const audio = (userId, on) => this._emit('onUserAudioAvailable', { userId, isAudioAvailable: on, callId: this.current?.id });
    const video = (userId, on) => this._emit('onUserVideoAvailable', { userId, isVideoAvailable: on, callId: this.current?.id });
    const done = () => { if (this.current?.owner && this.current.owner.ended) this.current = null; };
    if (!group) {
      return {
        evtConnected: () => audio(peer(), true),
        evtPeerMicMuted: () => audio(peer(), false),
        evtPeerMicUnmuted: () => audio(peer(), true),
        evtVideoEnabledByPeer: () => video(peer(), true),
        evtVideoDisabledByPeer: () => video(peer(), false),
        evtDisconnected: done,
      };
    }
    return {
      evtPeerListUpdated: ({ addedPeers }) => {
        for (const p of addedPeers) { audio(p.userId, !p.micMuted); video(p.userId, !!p.videoEnabled); }
      },
      evtPeersMicMuted: (ps) => ps.forEach((p) => audio(p.userId, false)),
      evtPeersMicUnmuted: (ps) => ps.forEach((p) => audio(p.userId, true)),
      evtPeersVideoUpdated: (ps) => ps.forEach((p) => video(p.userId, !!p.videoEnabled)),
      allLevels: (levels) => this._emit('onUserVoiceVolumeChanged', { volumeMap: levels, callId: this.current?.id }),
      allQuality: (q) => this._emit('onUserNetworkQualityChanged', {
        networkQualityList: Object.entries(q).map(([userId, quality]) => ({ userId, quality })), callId: this.current?.id,
      }),
      evtDisconnected: done,
    };
  }
}

/**
 * WebPlanetKit's shape for code written against it: `new PlanetKit({ serverUrl })` is the
 * `planetKit` object of its samples: `makeCall` / `verifyCall` / `acceptCall` / `endCall`
 * for one call after another, `joinConference` / `leaveConference` for rooms, with the
 * seed's parameter objects unchanged. `new PlanetKit.Call(…)` and
 * `new PlanetKit.Conference(…)` give the call and room objects themselves. Also the
 * module's default export, and `globalThis.PlanetKit` in a page.
 */
export class PlanetKit {
  constructor({ serverUrl, engine } = {}) {
    this.options = { serverUrl, engine };
    this.call = null;
    this.conference = null;
  }

  /** The call in progress, or a new one once the last ended. */
  _call() {
    if (!this.call || this.call.ended) this.call = new Call(this.options);
    return this.call;
  }

  makeCall(params) { return this._call().makeCall(params); }
  verifyCall(params) { return this._call().verifyCall(params); }
  acceptCall() { return this.call ? this.call.acceptCall() : Promise.reject(sbError('invalid_param', 'verifyCall first')); }
  endCall(reasonCode, userRelCode) { return this.call ? this.call.endCall(reasonCode, userRelCode) : Promise.resolve(); }

  joinConference(params) {
    if (!this.conference || this.conference.ended) this.conference = new Conference(this.options);
    return this.conference.joinConference(params);
  }

  leaveConference() { return this.conference ? this.conference.leaveConference() : Promise.resolve(); }
}
Object.assign(PlanetKit, {
  Call, Conference, Engine, CallEngine, CALL_MEDIA_TYPE, CALL_ROLE, CALL_END_REASON, CALL_EVENTS, CALL_EVENT, listenForCalls, getMediaDevices, SwitchboardError, START_FAIL_REASON, DISCONNECT_SOURCE,
  KIT_DISCONNECT_REASON, MEDIA_TYPE, RESOLUTION, SDK_VERSION,
});
export default PlanetKit;
if (typeof window !== 'undefined' && !('PlanetKit' in globalThis)) globalThis.PlanetKit = PlanetKit;
