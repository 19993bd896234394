// Types of the Switchboard browser SDK (switchboard.js).

export type MediaType = 'audio' | 'video';
export type DisconnectSourceName = 'callee' | 'caller' | 'participant' | 'cloud_server' | 'app_server';

/** Every disconnect reason's name as WebPlanetKit reports it (docs/reasons.md). */
export type KitDisconnectReasonName =
  | 'NORMAL' | 'DECLINE' | 'CELL_CALL' | 'INTERNAL_ERROR' | 'USER_ERROR' | 'INTERNAL_KIT_ERROR'
  | 'AUDIO_TX_NO_SRC' | 'CANCEL' | 'BUSY' | 'NOANSWER' | 'ALREADY_GOT_A_CALL' | 'MULTIDEV_IN_USE'
  | 'MULTIDEV_ANSWER' | 'MULTIDEV_DECLINE' | 'MAX_CALL_TIME_EXCEEDED' | 'NETWORK_UNSTABLE'
  | 'PUSH_ERROR' | 'AUTH_ERROR' | 'RELEASED_CALL' | 'SERVER_INTERNAL_ERROR' | 'UNAVAILABLE_NETWORK'
  | 'APP_DESTROY' | 'SYSTEM_SLEEP' | 'SYSTEM_LOGOFF' | 'MTU_EXCEEDED' | 'APP_SERVER_DATA_ERROR'
  | 'DESKTOP_SCREEN_LOCKED' | 'ROOM_IS_FULL' | 'ALONE_KICK_OUT' | 'ROOM_NOT_FOUND'
  | 'ANOTHER_INSTANCE_TRY_TO_JOIN' | 'SERVICE_ACCESS_TOKEN_ERROR' | 'SERVICE_INVALID_ID'
  | 'SERVICE_MAINTENANCE' | 'SERVICE_BUSY' | 'SERVICE_INTERNAL_ERROR' | 'SERVICE_HTTP_ERROR'
  | 'SERVICE_HTTP_CONNECTION_TIME_OUT' | 'SERVICE_HTTP_INVALID_PEER_CERT'
  | 'SERVICE_HTTP_CONNECT_FAIL' | 'SERVICE_HTTP_INVALID_URL' | 'SERVICE_INCOMPATIBLE_PLANETKIT_VER'
  | 'SERVICE_TOO_MANY_REQUESTS' | 'WEB_RTC_ABORT_ERROR' | 'WEB_RTC_NOT_ALLOWED_ERROR'
  | 'WEB_RTC_NOT_FOUND_ERROR' | 'WEB_RTC_NOT_READABLE_ERROR' | 'WEB_RTC_OVERCONSTRAINED_ERROR'
  | 'WEB_RTC_SECURITY_ERROR' | 'WEB_RTC_TYPE_ERROR' | 'WEB_NO_MEDIA_PACKET'
  | 'WEB_CALL_CONNECT_FAIL_BY_SERVER' | 'WEB_CALL_CONNECT_FAIL_BY_CLIENT'
  | 'WEB_SIGNALING_UNEXPECTED_DISCONNECTED' | 'WEB_BROWSER_NOT_SUPPORTED';

/** A disconnect reason as `strCode`: `PLANETKIT_DISCONNECT_REASON_NORMAL`, … */
export type KitStrCode = `PLANETKIT_DISCONNECT_REASON_${KitDisconnectReasonName}`;

/** A disconnect reason: its number and WebPlanetKit's name for it. */
export interface DisconnectReasonParam {
  code: number;
  strCode: KitStrCode;
}

/** Every disconnect reason by name: its number (checked against the server's). */
export declare const KIT_DISCONNECT_REASON: Readonly<Record<KitDisconnectReasonName, number>>;
export declare const MEDIA_TYPE: Readonly<{ AUDIO: 'audio'; VIDEO: 'video' }>;
export declare const RESOLUTION: Readonly<{ QVGA: 'qvga'; VGA: 'vga'; HD: 'hd' }>;

export interface DisconnectedParam {
  /** The contract reason: code (e.g. 1001) and strCode (e.g. PLANETKIT_DISCONNECT_REASON_NORMAL). */
  reason: DisconnectReasonParam;
  /** Who ended the call. */
  source: DisconnectSourceName;
  /** Whether the source is the remote party. */
  byRemote: boolean;
  /** App-defined release code (with USER_ERROR). */
  userRelCode: string | null;
}

/** Delegate events of calls and rooms alike. */
export interface SessionDelegate {
  /** The signaling connection dropped; the SDK is reconnecting (media goes on). */
  evtReconnecting?(): void;
  /** Back: resumed on a new connection (and ICE restarted if needed). */
  evtReconnected?(): void;
  /** The access token expires within 60 s: hand a fresh one to `refreshToken`. */
  evtTokenExpiring?(p: { expiresAt: number }): void;
  /** The browser's autoplay policy blocked the received audio: call `startAudio()` from a click. */
  evtAutoplayBlocked?(): void;
  /** A microphone or camera in use went away; `now` is the default one that took over (or null). */
  evtMediaDeviceChanged?(p: { kind: 'audio' | 'video'; lost: string; now: string | null }): void;
  /** The user ended my screen share from the browser's own control; the camera is back. */
  evtMyScreenShareStopped?(): void;
  /** A device was plugged in or out: the new lists. */
  evtMediaDevicesChanged?(devices: { audioInput: MediaDeviceInfoLite[]; videoInput: MediaDeviceInfoLite[]; audioOutput: MediaDeviceInfoLite[] }): void;
}

export interface CallDelegate extends SessionDelegate {
  evtWaitConnected?(): void;
  evtVerified?(p: { peerId: string; peerServiceId: string; mediaType: MediaType; appServerData?: string }): void;
  evtConnected?(): void;
  evtDisconnected?(p: DisconnectedParam): void;
  evtPeerMicMuted?(): void;
  evtPeerMicUnmuted?(): void;
  evtVideoEnabledByPeer?(): void;
  evtVideoDisabledByPeer?(): void;
}

export interface MediaHtmlElement {
  my?: { video?: HTMLVideoElement };
  peer?: { audio?: HTMLAudioElement; video?: HTMLVideoElement };
}

export interface MakeCallParams {
  /** With a shared engine, the engine's. */
  myId?: string;
  myServiceId?: string;
  peerId: string;
  peerServiceId?: string;
  /** Not needed on a shared engine. */
  accessToken?: string;
  mediaType: MediaType;
  appServerData?: string;
  mediaHtmlElement?: MediaHtmlElement;
  /** The devices to start with (from getMediaDevices()); the defaults if absent. */
  mediaDeviceId?: MediaDeviceId;
  /** Start with the microphone muted (default true: on). */
  micOn?: boolean;
  delegate?: CallDelegate;
}

/** Which microphone and camera to use (`deviceId`s of getMediaDevices()). */
export interface MediaDeviceId {
  inputAudio?: string;
  inputVideo?: string;
}

/** One device as getMediaDevices() lists it (labels once the user allowed media). */
export interface MediaDeviceInfoLite {
  deviceId: string;
  label: string;
  groupId: string;
}

/** The page's microphones, cameras and speakers. */
export declare function getMediaDevices(): Promise<{
  audioInput: MediaDeviceInfoLite[];
  videoInput: MediaDeviceInfoLite[];
  audioOutput: MediaDeviceInfoLite[];
}>;

export interface VerifyCallParams {
  myId?: string;
  myServiceId?: string;
  /** The cc_param from the push (or listenForCalls). */
  ccParam: string;
  /** Optional: with a token the callee's session is a full user session. */
  accessToken?: string;
  mediaType?: MediaType;
  mediaHtmlElement?: MediaHtmlElement;
  /** The devices to answer with; the defaults if absent. */
  mediaDeviceId?: MediaDeviceId;
  /** Answer with the microphone muted (default true: on). */
  micOn?: boolean;
  delegate?: CallDelegate;
}

/**
 * What every rejection of the SDK is: an Error with `reason` (a START_FAIL_REASON string
 * such as `invalid_user_id`, or a disconnect reason's name such as `ROOM_IS_FULL` or
 * `SERVICE_TOO_MANY_REQUESTS`), the contract's `code` where one applies (1512, 1601-1612, …)
 * and WebPlanetKit's `strCode` where one applies.
 */
export declare class SwitchboardError extends Error {
  readonly name: 'SwitchboardError';
  readonly reason: string;
  readonly code?: number;
  readonly strCode?: string;
}

/** How a promise rejects before a call exists. */
export type StartFailError = SwitchboardError;

export declare const START_FAIL_REASON: Readonly<Record<string, string>>;
export declare const DISCONNECT_SOURCE: Readonly<Record<number, DisconnectSourceName>>;

export interface CallOptions {
  /** Where to open a private session (without `engine`). */
  serverUrl?: string;
  /** Run the call on this shared session (then no token is needed per call). */
  engine?: Engine;
  /**
   * Video codecs to offer, most preferred first (`'VP8'`, `'H264'`, `'VP9'`, `'AV1'`);
   * others are left out. Default: the browser's own list. The relay forwards a codec
   * only to parties that offered it too.
   */
  videoCodecs?: string[];
  /**
   * `'relay'`: media only through the server's TURN (for a network known to let
   * nothing else through, or to test it); default `'all'`: UDP, ICE-TCP, then TURN.
   */
  iceTransportPolicy?: RTCIceTransportPolicy;
}

/**
 * What a call and a room both offer about my own media and the session: mute, camera,
 * screen share, devices, stats, tokens, autoplay. `Call` and `Conference` have all of it.
 */
export interface MediaSession {
  muteMyAudio(mute: boolean): Promise<void>;
  /**
   * Turns my camera on (the others get evtVideoEnabledByPeer / evtPeersVideoUpdated). In
   * an audio call or room this opens the camera and the relay adds a line to send video
   * on. Rejects with `{ reason, code: 1601-1607, strCode }` when the camera cannot be opened.
   */
  enableVideo(): Promise<void>;
  /** Turns my camera off and releases it. */
  disableVideo(): Promise<void>;
  /** Pauses my video for a moment, the camera staying open (the others are told). */
  pauseMyVideo(): Promise<void>;
  resumeMyVideo(): Promise<void>;
  /** Shares my screen instead of my camera, on the same video line. */
  startMyScreenShare(): Promise<void>;
  /** Back to my camera. */
  stopMyScreenShare(): Promise<void>;
  /** Switches the microphone, on the same line (no renegotiation). */
  changeAudioInputDevice(deviceId: string): Promise<void>;
  /** Switches the camera. */
  changeVideoInputDevice(deviceId: string): Promise<void>;
  /** Plays what I receive on this speaker; rejects where the browser has no setSinkId. */
  setAudioOutputDevice(deviceId: string): Promise<void>;
  getStats(): Promise<RTCStatsReport | Map<string, unknown>>;
  /** Hands over a fresh access token (after evtTokenExpiring); the session goes on. */
  updateAccessToken(accessToken: string): Promise<void>;
  /** The same as updateAccessToken. */
  refreshToken(accessToken: string): Promise<void>;
  /** Plays what the autoplay policy blocked (after evtAutoplayBlocked); call it from a user gesture. */
  startAudio(): Promise<void>;
}

/** Making, answering and ending a 1-to-1 call: on a {@link Call}, and on {@link PlanetKit} for its current call. */
export interface CallControl {
  makeCall(params: MakeCallParams): Promise<void>;
  verifyCall(params: VerifyCallParams): Promise<void>;
  acceptCall(): Promise<void>;
  endCall(reasonCode?: number, userRelCode?: string): Promise<void>;
}

export interface Call extends MediaSession, CallControl {}
/** A 1-to-1 call; with every {@link MediaSession} and {@link CallControl} method. */
export declare class Call {
  constructor(opts: CallOptions);
  readonly sid: string | null;
  readonly peerStream: MediaStream | null;
}

export interface IncomingCall {
  ccParam: string;
  sid: string;
  peerId: string;
  peerServiceId: string;
  mediaType: MediaType;
  appServerData?: string;
}

export declare function listenForCalls(opts: {
  serverUrl: string;
  myId: string;
  myServiceId: string;
  accessToken: string;
  onIncomingCall(call: IncomingCall): void;
  onCallEnded?(p: { sid: string; reason: DisconnectReasonParam; source: DisconnectSourceName }): void;
  /** Listening stopped for good (closed, or not back within the reconnect grace). */
  onClosed?(): void;
  /** The connection dropped; reconnecting (listening goes on once back). */
  onReconnecting?(): void;
  onReconnected?(): void;
  /** The access token expires within 60 s: call `engine.updateAccessToken`. */
  onTokenExpiring?(p: { expiresAt: number }): void;
}): Promise<{ close(): void; engine: Engine }>;

/** A room participant other than me. */
export interface PeerInfo {
  userId: string;
  serviceId: string;
  displayName: string | null;
  ueType: 'UE_TYPE_UNDEFINED' | 'ANDROID' | 'IOS' | 'DESKTOPMAC' | 'DESKTOPWIN' | 'BROWSER' | 'SIP_TERMINAL';
  micMuted: boolean;
  videoEnabled: boolean;
  /** When the peer joined, epoch milliseconds. */
  joinedAt: number;
}

/** How a room ended for me (WebPlanetKit's shape). */
export interface ConferenceDisconnectedParam {
  source: DisconnectSourceName;
  /** e.g. `{ code: 1402, strCode: 'PLANETKIT_DISCONNECT_REASON_ALONE_KICK_OUT' }` */
  reason: DisconnectReasonParam;
  /** The app server's code with USER_ERROR (kick-out). */
  userRelCode: string | null;
}

export interface ConferenceDelegate extends SessionDelegate {
  evtConnected?(room: { roomId: string; roomServiceId: string; hostId: string; mediaType: MediaType; setupTime: number }): void;
  evtDisconnected?(p: ConferenceDisconnectedParam): void;
  evtPeerListUpdated?(p: { addedPeers: PeerInfo[]; removedPeers: Array<Partial<PeerInfo> & { userId: string }>; totalPeersCount: number }): void;
  evtPeersMicMuted?(peers: PeerInfo[]): void;
  evtPeersMicUnmuted?(peers: PeerInfo[]): void;
  /** A peer paused its video (`pauseMyVideo`). */
  evtPeersVideoPaused?(peers: PeerInfo[]): void;
  /** A peer resumed its paused video. */
  evtPeersVideoResumed?(peers: PeerInfo[]): void;
  /** A peer turned its camera on or off (`videoEnabled`). */
  evtPeersVideoUpdated?(peers: PeerInfo[]): void;
  /** Who started and stopped talking (user IDs; the first one lists everyone talking). */
  evtPeersTalkingStatusUpdated?(p: { active: string[]; inactive: string[] }): void;
  /** Each peer's network quality every 2 s: 0 unknown, 1 excellent, 2 good, 3 poor, 4 bad, 5 very bad, 6 down. */
  evtPeersNetworkQuality?(quality: Record<string, number>): void;
  /** Each peer's audio level, 0-100, twice a second. */
  evtPeersAudioLevel?(levels: Record<string, number>): void;
  evtShortDataReceived?(p: { peerId: string; type: string; data: string }): void;
  evtAppControlMessageReceived?(p: { data: string }): void;
}

export type VideoResolution = 'qvga' | 'vga' | 'hd';

export interface JoinConferenceParams {
  /** With a shared engine, the engine's. */
  myId?: string;
  myServiceId?: string;
  roomId: string;
  /** Default: myServiceId (it must be mine). */
  roomServiceId?: string;
  mediaType: MediaType;
  /** Not needed on a shared engine. */
  accessToken?: string;
  displayName?: string;
  /** In on_gcall_evt_cb (≤ 4,096 bytes). */
  appServerData?: string;
  mediaHtmlElement?: {
    /** My camera. */
    myVideo?: HTMLVideoElement;
    /** One element that plays the whole room's audio. */
    roomAudio?: HTMLAudioElement;
  };
  /** Join with the microphone on (default true). */
  /** The devices to start with (from getMediaDevices()); the defaults if absent. */
  mediaDeviceId?: MediaDeviceId;
  micOn?: boolean;
  /** Join with the camera on (video rooms; default true). */
  cameraOn?: boolean;
  /**
   * Send my video as two layers (half and full size); each receiver gets the one that
   * fits the `resolution` it asked for (`qvga` the small one, `vga`/`hd` the full one
   * when it flows). Default false.
   */
  simulcast?: boolean;
  delegate?: ConferenceDelegate;
}

/** How joinConference rejects: a SwitchboardError (`reason` ROOM_IS_FULL, code 1401, …). */
export type ConferenceError = SwitchboardError;

export interface Conference extends MediaSession {}
/** A room (group call); with every {@link MediaSession} method. */
export declare class Conference {
  /** `serverUrl` for a private session, or `engine` to run on a shared one. */
  constructor(opts: { serverUrl?: string; engine?: Engine; iceTransportPolicy?: RTCIceTransportPolicy });
  readonly sid: string | null;
  joinConference(params: JoinConferenceParams): Promise<void>;
  leaveConference(): Promise<void>;
  /** Receive `userId`'s video in `videoViewElement` (nobody's video comes unasked). */
  requestPeerVideo(p: { userId: string; resolution?: VideoResolution; videoViewElement: HTMLVideoElement }): Promise<void>;
  removePeerVideo(p: { userId: string }): Promise<void>;
  getPeersInfo(): PeerInfo[];
  /** `type` ≤ 100 bytes, `data` ≤ 800 bytes; all others, or `targets`. */
  sendShortData(p: { type: string; data: string; targets?: string[] }): Promise<void>;
}

/**
 * One signaling session (the page's WebSocket), shared by any number of Calls and
 * Conferences, on which calls offered to this user arrive.
 */
export declare class Engine {
  static connect(opts: {
    serverUrl: string;
    myId: string;
    myServiceId: string;
    accessToken: string;
    onIncomingCall?(call: IncomingCall): void;
    onCallEnded?(p: { sid: string; reason: DisconnectReasonParam; source: DisconnectSourceName }): void;
    /** The WebSocket closed for good (closed by the app, or not back within the server's
     * reconnect grace): every Call and Conference on it has ended. */
    onClosed?(): void;
    /** The WebSocket dropped: reconnecting, with backoff, within the reconnect grace. */
    onReconnecting?(): void;
    /** Reconnected: calls and rooms resumed, incoming calls arrive again. */
    onReconnected?(): void;
    /** The access token expires within 60 s: call `updateAccessToken`. */
    onTokenExpiring?(p: { expiresAt: number }): void;
  }): Promise<Engine>;
  readonly userId: string | undefined;
  readonly serviceId: string | undefined;
  /** Whether the engine is getting its connection back. */
  readonly isReconnecting: boolean;
  /** Hands over a fresh access token: the session goes on; a reconnect signs in with it. */
  updateAccessToken(accessToken: string): Promise<void>;
  /** Closes the WebSocket; every Call and Conference on it ends. */
  close(): void;
}

/** This SDK's version (the npm package's `version`). */
export declare const SDK_VERSION: string;

/** `callMediaType` (seed 004): 1 audio, 2 video. */
export declare const CALL_MEDIA_TYPE: { readonly UNKNOWN: 0; readonly AUDIO: 1; readonly VIDEO: 2 };
/** `callRole`: 1 caller, 2 callee. */
export declare const CALL_ROLE: { readonly NONE: 0; readonly CALLER: 1; readonly CALLED: 2 };
/** `reason` of `onCallEnd` / `onCallNotConnected`. */
export declare const CALL_END_REASON: {
  readonly UNKNOWN: 0; readonly HANGUP: 1; readonly REJECT: 2; readonly NO_RESPONSE: 3; readonly OFFLINE: 4;
  readonly LINE_BUSY: 5; readonly CANCELED: 6; readonly OTHER_DEVICE_ACCEPTED: 7; readonly OTHER_DEVICE_REJECT: 8;
  readonly END_BY_SERVER: 9;
};
export declare const CALL_EVENTS: readonly CallEventName[];
/** `CALL_EVENT.ON_USER_JOIN` is `'onUserJoin'`, and so on for every event. */
export declare const CALL_EVENT: { readonly [name: string]: CallEventName };

/** Every payload carries the call's ID besides seed 004's fields. */
interface WithCallId { callId: string }
/** The TUICallEvents (seed 004) and their payloads. */
export interface CallEventMap {
  onError: { code: number; msg: string } & WithCallId;
  onCallReceived: {
    callerId: string; calleeIdList: string[]; groupId: string; callMediaType: number; userData: string;
    /** The caller's `setSelfInfo`, if it set one. */
    callerNickname?: string; callerAvatarUrl?: string;
  } & WithCallId;
  onCallCancelled: { userId: string } & WithCallId;
  onCallBegin: { roomID: number; callMediaType: number; callRole: number } & WithCallId;
  onCallEnd: { roomID: number; callMediaType: number; callRole: number; totalTime: number; reason: number } & WithCallId;
  onCallMediaTypeChanged: { oldCallMediaType: number; newCallMediaType: number } & WithCallId;
  onUserReject: { userId: string } & WithCallId;
  onUserNoResponse: { userId: string } & WithCallId;
  onUserLineBusy: { userId: string } & WithCallId;
  onUserJoin: { userId: string } & WithCallId;
  onUserLeave: { userId: string } & WithCallId;
  onUserInviting: { userId: string } & WithCallId;
  onUserVideoAvailable: { userId: string; isVideoAvailable: boolean } & WithCallId;
  onUserAudioAvailable: { userId: string; isAudioAvailable: boolean } & WithCallId;
  onUserVoiceVolumeChanged: { volumeMap: Record<string, number> } & WithCallId;
  onUserNetworkQualityChanged: { networkQualityList: { userId: string; quality: number }[] } & WithCallId;
  onKickedOffline: WithCallId;
  onUserSigExpired: WithCallId;
  onCallNotConnected: { reason: number; userId: string } & WithCallId;
}
export type CallEventName = keyof CallEventMap;

/**
 * The call-engine face (seed 004, TUICallEngine): `calls` one or several users,
 * `accept` / `reject` / `ignore` / `hangup`, `inviteUser`, `join`, and every
 * TUICallEvent through `on`.
 */
export declare class CallEngine {
  /** `createInstance` + `enableMultiDeviceAbility` + `login` in one. */
  static login(opts: { serverUrl: string; userId?: string; serviceId?: string; accessToken: string; multiDevice?: boolean }): Promise<CallEngine>;
  static createInstance(opts: { serverUrl: string }): CallEngine;
  /** Before `login`; default false (a login signs the user's other instances out). */
  enableMultiDeviceAbility(enable: boolean): void;
  /** `userSig` is the access token your backend minted. */
  login(opts: { userId?: string; serviceId?: string; userSig: string }): Promise<void>;
  readonly userId: string | undefined;
  on<K extends CallEventName>(name: K, fn: (payload: CallEventMap[K]) => void): void;
  off<K extends CallEventName>(name: K, fn: (payload: CallEventMap[K]) => void): void;
  addEventListener<K extends CallEventName>(name: K, fn: (payload: CallEventMap[K]) => void): void;
  removeEventListener<K extends CallEventName>(name: K, fn: (payload: CallEventMap[K]) => void): void;
  /** Resolves with the call ID. One user: a 1-to-1 call; several: a group call. */
  calls(opts: {
    userIdList: string[]; callMediaType?: number; timeout?: number; userData?: string; roomId?: number; groupId?: string;
    mediaHtmlElement?: unknown;
  }): Promise<string>;
  accept(opts?: { mediaHtmlElement?: unknown }): Promise<string>;
  reject(): Promise<void>;
  ignore(): Promise<void>;
  hangup(): Promise<void>;
  inviteUser(opts: { userIdList: string[]; timeout?: number }): Promise<void>;
  /** Nickname and avatar, seen by invitees (`onCallReceived`) and in group call records. */
  setSelfInfo(nickname: string, avatarUrl?: string): Promise<void>;
  setSelfInfo(opts: { nickname?: string; avatarUrl?: string }): Promise<void>;
  /** 1 audio, 2 video: video to audio in any call, audio to video in a 1-to-1 call. */
  switchCallMediaType(callMediaType: number): Promise<void>;
  join(opts: { callId: string; callMediaType?: number; mediaHtmlElement?: unknown }): Promise<string>;
  startRemoteView(opts: { userId: string; videoElement: HTMLVideoElement; resolution?: VideoResolution }): Promise<void>;
  startRemoteView(userId: string, videoElement: HTMLVideoElement): Promise<void>;
  stopRemoteView(userId: string): Promise<void>;
  openMicrophone(): Promise<void>;
  closeMicrophone(): Promise<void>;
  openCamera(previewElement?: HTMLVideoElement): Promise<void>;
  getDevices(): ReturnType<typeof getMediaDevices>;
  switchDevice(kind: 'audio' | 'video', deviceId: string): Promise<void>;
  closeCamera(): Promise<void>;
  getStats(): Promise<RTCStatsReport | Map<string, unknown>>;
  /** This user's own recent calls, newest first. */
  queryRecentCalls(opts?: { begin?: number; end?: number; result?: 'MISSED' | 'INCOMING' | 'OUTGOING'; limit?: number }): Promise<RecentCall[]>;
  logout(): void;
}

/** One of this user's calls, as `queryRecentCalls` gives it. */
export interface RecentCall {
  callId: string;
  scene: 'SINGLE_CALL' | 'GROUP_CALL';
  inviter: string;
  inviteList: string[];
  mediaType: number;
  role: number;
  result: 'MISSED' | 'INCOMING' | 'OUTGOING';
  beginTime: number;
  totalTime: number;
}

export interface PlanetKit extends CallControl {}
/**
 * WebPlanetKit's shape: `const planetKit = new PlanetKit({ serverUrl })`, then
 * `planetKit.makeCall(…)` / `verifyCall` / `acceptCall` / `endCall` (one call after
 * another) and `joinConference` / `leaveConference`, with the seed's parameter objects.
 * `PlanetKit.Call` and `PlanetKit.Conference` are the call and room classes. Also the
 * default export and `globalThis.PlanetKit` in a page.
 */
export declare class PlanetKit {
  constructor(opts: { serverUrl?: string; engine?: Engine });
  /** The current (or last) call, once one was made or verified. */
  readonly call: Call | null;
  /** The current (or last) room, once one was joined. */
  readonly conference: Conference | null;
  joinConference(params: JoinConferenceParams): Promise<void>;
  leaveConference(): Promise<void>;
  static readonly Call: typeof Call;
  static readonly Conference: typeof Conference;
  static readonly Engine: typeof Engine;
  static readonly CallEngine: typeof CallEngine;
  static readonly listenForCalls: typeof listenForCalls;
  static readonly getMediaDevices: typeof getMediaDevices;
  static readonly SwitchboardError: typeof SwitchboardError;
  static readonly START_FAIL_REASON: typeof START_FAIL_REASON;
  static readonly DISCONNECT_SOURCE: typeof DISCONNECT_SOURCE;
  static readonly KIT_DISCONNECT_REASON: typeof KIT_DISCONNECT_REASON;
  static readonly MEDIA_TYPE: typeof MEDIA_TYPE;
  static readonly RESOLUTION: typeof RESOLUTION;
  static readonly SDK_VERSION: string;
}
export default PlanetKit;
