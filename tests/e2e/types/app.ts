// A small TypeScript app against the packed SDK: every method and event, compiled with
// `tsc --strict` by types.test.js. It is type-checked, not run.
import PlanetKit, {
  Call, Conference, Engine, listenForCalls, getMediaDevices, SwitchboardError,
  KIT_DISCONNECT_REASON, DISCONNECT_SOURCE, START_FAIL_REASON, MEDIA_TYPE, RESOLUTION, SDK_VERSION,
  CallEngine, CALL_MEDIA_TYPE, CALL_ROLE, CALL_END_REASON, CALL_EVENTS, CALL_EVENT,
  type DisconnectedParam, type ConferenceDisconnectedParam, type PeerInfo,
} from '@switchboard/web-sdk';

const serverUrl = 'https://calls.example.com';
const audio = document.createElement('audio');
const video = document.createElement('video');

export async function seedShape(accessToken: string, ccParam: string): Promise<void> {
  const planetKit = new PlanetKit({ serverUrl });
  await planetKit.makeCall({ myId: 'a', myServiceId: 's', peerId: 'b', accessToken, mediaType: 'audio' });
  await planetKit.endCall();
  await planetKit.verifyCall({ ccParam, mediaType: 'audio' });
  await planetKit.acceptCall();
  await planetKit.joinConference({ roomId: 'r', mediaType: 'audio', accessToken });
  await planetKit.leaveConference();
  console.log(planetKit.call?.sid, planetKit.conference?.sid, PlanetKit.SDK_VERSION, PlanetKit.KIT_DISCONNECT_REASON.NORMAL);
}

export async function oneToOne(accessToken: string): Promise<number> {
  const planetKit = new PlanetKit.Call({ serverUrl });
  const ended: DisconnectedParam[] = [];
  await planetKit.makeCall({
    myId: 'alice', myServiceId: 'acme', peerId: 'bob', peerServiceId: 'acme', accessToken, mediaType: 'video',
    appServerData: 'order=1', micOn: false, mediaDeviceId: { inputAudio: 'default' },
    mediaHtmlElement: { my: { video }, peer: { audio, video } },
    delegate: {
      evtWaitConnected: () => {}, evtConnected: () => {}, evtDisconnected: (p) => { ended.push(p); },
      evtPeerMicMuted: () => {}, evtPeerMicUnmuted: () => {}, evtVideoEnabledByPeer: () => {}, evtVideoDisabledByPeer: () => {},
      evtReconnecting: () => {}, evtReconnected: () => {}, evtTokenExpiring: ({ expiresAt }) => { void planetKit.updateAccessToken(String(expiresAt)); },
      evtAutoplayBlocked: () => { void planetKit.startAudio(); }, evtMediaDeviceChanged: ({ kind, now }) => { console.log(kind, now); }, evtMyScreenShareStopped: () => {}, evtMediaDevicesChanged: ({ audioInput }) => console.log(audioInput.length),
    },
  });
  await planetKit.muteMyAudio(true);
  await planetKit.enableVideo();
  await planetKit.disableVideo();
  await planetKit.startMyScreenShare();
  await planetKit.stopMyScreenShare();
  await planetKit.pauseMyVideo();
  await planetKit.resumeMyVideo();
  const devices = await getMediaDevices();
  await planetKit.changeAudioInputDevice(devices.audioInput[0].deviceId);
  await planetKit.changeVideoInputDevice(devices.videoInput[0].deviceId);
  await planetKit.setAudioOutputDevice(devices.audioOutput[0].deviceId);
  const stats = await planetKit.getStats();
  const peer: MediaStream | null = planetKit.peerStream;
  await planetKit.endCall(KIT_DISCONNECT_REASON.USER_ERROR, 'bye');
  console.log(stats, peer, planetKit.sid, ended[0]?.reason.strCode, ended[0]?.byRemote);
  return KIT_DISCONNECT_REASON.NORMAL;
}

export async function callee(ccParam: string): Promise<void> {
  const call = new Call({ serverUrl, videoCodecs: ['VP8'] });
  try {
    await call.verifyCall({ ccParam, mediaType: 'audio', mediaHtmlElement: { peer: { audio } }, delegate: { evtVerified: ({ peerId }) => console.log(peerId) } });
    await call.acceptCall();
  } catch (e) {
    if (e instanceof SwitchboardError) console.log(e.reason, e.code, e.strCode, e.message);
  }
}

export async function withoutPush(accessToken: string): Promise<void> {
  const listening = await listenForCalls({
    serverUrl, myId: 'bob', myServiceId: 'acme', accessToken,
    onIncomingCall: ({ ccParam, peerId, mediaType }) => { console.log(peerId, mediaType); void new Call({ engine: listening.engine }).verifyCall({ ccParam }); },
    onCallEnded: ({ reason, source }) => console.log(reason.code, source),
    onReconnecting: () => {}, onReconnected: () => {}, onClosed: () => {}, onTokenExpiring: () => {},
  });
  const engine: Engine = listening.engine;
  console.log(engine.userId, engine.serviceId, engine.isReconnecting);
  await engine.updateAccessToken(accessToken);
  listening.close();
}

export async function room(accessToken: string): Promise<PeerInfo[]> {
  const conf = new Conference({ serverUrl });
  const ends: ConferenceDisconnectedParam[] = [];
  await conf.joinConference({
    myId: 'alice', myServiceId: 'acme', roomId: 'standup', roomServiceId: 'acme', accessToken, mediaType: MEDIA_TYPE.VIDEO === 'video' ? 'video' : 'audio',
    displayName: 'Alice', appServerData: 'x', micOn: true, cameraOn: false, simulcast: true, mediaDeviceId: { inputVideo: 'cam' },
    mediaHtmlElement: { myVideo: video, roomAudio: audio },
    delegate: {
      evtConnected: ({ roomId, hostId }) => console.log(roomId, hostId), evtDisconnected: (p) => { ends.push(p); },
      evtPeerListUpdated: ({ addedPeers, removedPeers, totalPeersCount }) => console.log(addedPeers, removedPeers, totalPeersCount),
      evtPeersMicMuted: (peers) => console.log(peers), evtPeersMicUnmuted: (peers) => console.log(peers),
      evtPeersVideoUpdated: (peers) => console.log(peers), evtPeersVideoPaused: (peers) => console.log(peers), evtPeersVideoResumed: (peers) => console.log(peers),
      evtPeersTalkingStatusUpdated: ({ active, inactive }) => console.log(active, inactive),
      evtPeersAudioLevel: (levels) => console.log(levels), evtPeersNetworkQuality: (q) => console.log(q),
      evtShortDataReceived: ({ peerId, type, data }) => console.log(peerId, type, data), evtAppControlMessageReceived: ({ data }) => console.log(data),
      evtReconnecting: () => {}, evtReconnected: () => {}, evtTokenExpiring: () => {}, evtAutoplayBlocked: () => {}, evtMediaDeviceChanged: () => {},
    },
  });
  await conf.muteMyAudio(false);
  await conf.enableVideo();
  await conf.disableVideo();
  await conf.startMyScreenShare();
  await conf.stopMyScreenShare();
  await conf.pauseMyVideo();
  await conf.resumeMyVideo();
  await conf.requestPeerVideo({ userId: 'bob', resolution: RESOLUTION.VGA === 'vga' ? 'vga' : 'hd', videoViewElement: video });
  await conf.removePeerVideo({ userId: 'bob' });
  await conf.sendShortData({ type: 'chat', data: 'hi', targets: ['bob'] });
  await conf.changeAudioInputDevice('mic');
  await conf.changeVideoInputDevice('cam');
  await conf.setAudioOutputDevice('default');
  await conf.updateAccessToken(accessToken);
  await conf.refreshToken(accessToken);
  await conf.startAudio();
  console.log(await conf.getStats(), conf.sid, DISCONNECT_SOURCE[1], START_FAIL_REASON.INVALID_PARAM, SDK_VERSION, ends);
  const peers = conf.getPeersInfo();
  await conf.leaveConference();
  return peers;
}

// The call-engine face: every TUICallEvent with its payload type.
export async function callEngine(serverUrl: string, accessToken: string, roomAudio: HTMLAudioElement, video: HTMLVideoElement) {
  const engine = await CallEngine.login({ serverUrl, userId: 'alice', accessToken });
  engine.on('onCallReceived', ({ callId, callerId, calleeIdList, groupId, callMediaType, userData }) =>
    console.log(callId, callerId, calleeIdList.join(), groupId, callMediaType === CALL_MEDIA_TYPE.VIDEO, userData));
  engine.on('onCallBegin', ({ roomID, callMediaType, callRole }) => console.log(roomID + 1, callMediaType, callRole === CALL_ROLE.CALLER));
  engine.on('onCallEnd', ({ totalTime, reason }) => console.log(totalTime.toFixed(1), reason === CALL_END_REASON.HANGUP));
  engine.on('onUserVoiceVolumeChanged', ({ volumeMap }) => console.log(Object.entries(volumeMap)));
  engine.on('onUserNetworkQualityChanged', ({ networkQualityList }) => console.log(networkQualityList.map((q) => q.quality)));
  engine.on('onUserVideoAvailable', ({ userId, isVideoAvailable }) => console.log(userId, isVideoAvailable));
  engine.on('onCallNotConnected', ({ reason, userId }) => console.log(reason, userId));
  const callId: string = await engine.calls({ userIdList: ['bob', 'carol'], callMediaType: CALL_MEDIA_TYPE.VIDEO, timeout: 30, mediaHtmlElement: { roomAudio } });
  await engine.inviteUser({ userIdList: ['dan'] });
  await engine.startRemoteView({ userId: 'bob', videoElement: video, resolution: 'vga' });
  await engine.closeMicrophone();
  await engine.switchCallMediaType(CALL_MEDIA_TYPE.AUDIO);
  engine.on('onCallMediaTypeChanged', ({ oldCallMediaType, newCallMediaType }) => console.log(oldCallMediaType < newCallMediaType));
  await engine.hangup();
  await engine.join({ callId, callMediaType: CALL_MEDIA_TYPE.AUDIO });
  console.log(CALL_EVENTS.length, engine.userId);
  engine.logout();
  const tui = CallEngine.createInstance({ serverUrl });
  tui.enableMultiDeviceAbility(true);
  await tui.login({ userId: 'alice', userSig: accessToken });
  tui.addEventListener(CALL_EVENT.ON_USER_JOIN, (p) => console.log(p.callId));
  await tui.startRemoteView('bob', video);
  await tui.stopRemoteView('bob');
  await tui.openCamera(video);
  console.log(await tui.getDevices());
  await tui.switchDevice('audio', 'mic');
  await tui.setSelfInfo('Alice', 'https://example.com/a.png');
  await tui.setSelfInfo({ nickname: 'Alice' });
  tui.on('onCallReceived', ({ callerNickname, callerAvatarUrl }) => console.log(callerNickname ?? '', callerAvatarUrl ?? ''));
  const recent = await tui.queryRecentCalls({ result: 'MISSED', limit: 10 });
  console.log(recent.map((r) => `${r.callId} ${r.scene} ${r.inviteList.join()} ${r.totalTime}`));
}
