// Types of the Switchboard browser SDK (switchboard.js).

export type MediaType = 'audio' | 'video';
export type DisconnectSourceName = 'callee' | 'caller' | 'participant' | 'cloud_server' | 'app_server';

export interface DisconnectedParam {
  /** The contract reason: code (e.g. 1001) and name (e.g. "NORMAL"). */
  reason: { code: number; strCode: string };
  /** Who ended the call. */
  source: DisconnectSourceName;
  /** Whether the source is the remote party. */
  byRemote: boolean;
  /** App-defined release code (with USER_ERROR). */
  userRelCode: string | null;
}

export interface CallDelegate {
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
  myId: string;
  myServiceId: string;
  peerId: string;
  peerServiceId?: string;
  accessToken: string;
  mediaType: MediaType;
  appServerData?: string;
  mediaHtmlElement?: MediaHtmlElement;
  delegate?: CallDelegate;
}

export interface VerifyCallParams {
  myId?: string;
  myServiceId?: string;
  /** The cc_param from the push (or listenForCalls). */
  ccParam: string;
  /** Optional: with a token the callee's session is a full user session. */
  accessToken?: string;
  mediaType?: MediaType;
  mediaHtmlElement?: MediaHtmlElement;
  delegate?: CallDelegate;
}

/** How a promise rejects before a call exists. */
export interface StartFailError {
  /** A START_FAIL_REASON string. */
  reason: string;
  /** Web-only reason code where one applies (1601-1612). */
  code?: number;
  message: string;
}

export declare const START_FAIL_REASON: Readonly<Record<string, string>>;
export declare const DISCONNECT_SOURCE: Readonly<Record<number, DisconnectSourceName>>;

export interface CallOptions {
  serverUrl: string;
  /**
   * Video codecs to offer, most preferred first (`'VP8'`, `'H264'`, `'VP9'`, `'AV1'`);
   * others are left out. Default: the browser's own list. The relay forwards a codec
   * only to parties that offered it too.
   */
  videoCodecs?: string[];
}

export declare class Call {
  constructor(opts: CallOptions);
  readonly sid: string | null;
  readonly peerStream: MediaStream | null;
  makeCall(params: MakeCallParams): Promise<void>;
  verifyCall(params: VerifyCallParams): Promise<void>;
  acceptCall(): Promise<void>;
  endCall(reasonCode?: number, userRelCode?: string): Promise<void>;
  muteMyAudio(mute: boolean): Promise<void>;
  /**
   * Turns my camera on (the peer gets evtVideoEnabledByPeer). In an audio call this opens
   * the camera and upgrades the call: the relay adds a line to send video on and one to
   * the peer's connection. Rejects with `{ reason, code: 1601-1607, strCode }` when the
   * camera cannot be opened.
   */
  enableVideo(): Promise<void>;
  disableVideo(): Promise<void>;
  getStats(): Promise<RTCStatsReport | Map<string, unknown>>;
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
  onCallEnded?(p: { sid: string; reason: { code: number; strCode: string }; source: DisconnectSourceName }): void;
}): Promise<{ close(): void }>;
