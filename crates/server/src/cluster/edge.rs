//! The edge's side: a client session on this node whose calls or rooms may live on
//! other nodes. Its messages go to the owner of what they are about (found from the
//! frames it was sent, the room placement, or the database), and the owners' frames
//! come back to it here.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::{ClientMessage, DisconnectReason, ErrorCode, ServerMessage};
use tokio::sync::mpsc;

use super::bus::Remote;
use super::bus::{BusMsg, ClientId};
use super::directory;
use super::routes::{target, Route, Routes, Target};
use super::{Cluster, Relayed, ENDED, TO_OWNER};
use crate::core::{Input, SessionAuth};
use crate::handles::{CoreCmd, Frame};
use crate::ids::SessionId;

/// How long a `resume` whose owner died waits for another node to take the call over
/// (its registry entry expires 3 s after its last beat, and the next beat claims).
const TAKEOVER_WAIT: Duration = Duration::from_secs(15);

/// Where a client message went.
pub(crate) enum Routed {
    /// To this node's core.
    Here(ClientMessage),
    /// To the node that owns what it is about.
    Sent,
    /// Nowhere: the client is answered with this.
    Refused(ServerMessage),
}

/// What other nodes have for a client session.
pub(crate) enum FromNodes {
    /// A frame for the client.
    Frame(Frame),
    /// Calls and rooms the client is in moved to another node: resume them there.
    Resume(Vec<String>),
}

/// One client session of this node, in the deployment.
pub(crate) struct Edge {
    cluster: Arc<Cluster>,
    session: u64,
    remote: Remote,
    routes: Routes,
    rx: mpsc::Receiver<Relayed>,
    /// Frames this node says on behalf of a node that died.
    ended: VecDeque<Frame>,
}

impl Edge {
    /// The session `session` of `remote` joins: frames from other nodes can reach it,
    /// and (signed in with a token) calls from other nodes ring it.
    pub async fn start(cluster: Arc<Cluster>, session: u64, remote: Remote) -> Edge {
        let rx = cluster.attach(session, remote.clone()).await;
        Edge { cluster, session, remote, routes: Routes::default(), rx, ended: VecDeque::new() }
    }

    /// What other nodes have for this session next: a frame (to be sent on at once: the
    /// owner waited for its own disk), or calls to resume for the client
    /// ([`Edge::resume_for_client`], not here: this future is dropped whenever the
    /// client speaks first); `None` when the session must end (a node let go of it, or
    /// this node did: the client did not read), and the client come back.
    pub async fn relayed(&mut self) -> Option<FromNodes> {
        loop {
            if let Some(frame) = self.ended.pop_front() {
                return Some(FromNodes::Frame(frame));
            }
            match self.rx.recv().await? {
                Relayed::Frame { from, text, overtakes } => {
                    self.routes.learn(&text, Some(&from));
                    self.owner(&from);
                    return Some(FromNodes::Frame(Frame { after: 0, text, overtakes }));
                }
                Relayed::Owner { from } => self.owner(&from),
                Relayed::OwnerGone { from, moved: true } => {
                    // Another node runs its calls and rooms now (the database says which).
                    let sids: Vec<String> =
                        self.routes.forget(&from).into_iter().filter(|s| self.routes.is_in(s)).collect();
                    if !sids.is_empty() {
                        tracing::info!(session = self.session, node = %from, "calls moved from a dead node");
                        return Some(FromNodes::Resume(sids));
                    }
                }
                Relayed::Moved { to, sids } => {
                    let sids: Vec<String> = sids.into_iter().filter(|s| self.routes.is_in(s)).collect();
                    for sid in &sids {
                        self.routes.set(sid, Route::Node(to.clone()));
                    }
                    if !sids.is_empty() {
                        return Some(FromNodes::Resume(sids));
                    }
                }
                Relayed::OwnerGone { from, moved: false } => {
                    // Its calls and rooms end as another node will record them (closed for
                    // a silent node): SERVER_INTERNAL_ERROR, by the cloud server.
                    for sid in self.routes.forget(&from) {
                        let ended = ServerMessage::Disconnected {
                            req: None,
                            sid: switchboard_protocol::Sid::new(sid.as_str()),
                            reason: DisconnectReason::ServerInternalError,
                            source: switchboard_protocol::DisconnectSource::CloudServer,
                            by_remote: false,
                            user_rel_code: None,
                        };
                        self.ended.push_back(Frame::new(&ended, 0));
                    }
                }
                Relayed::Dropped { from } => {
                    tracing::info!(session = self.session, %from, "a node let go of this session");
                    return None;
                }
            }
        }
    }

    /// Resumes the calls and rooms `sids`, which moved to another node, for the client:
    /// their `resumed` (with `new_media`) reaches it as if it had sent `resume`, and its
    /// SDK opens new media. False when the client must do it itself, on a new session: one
    /// signed in with a `cc_param` proves its device only with its `resume_param`.
    pub async fn resume_for_client(&mut self, sids: Vec<String>) -> bool {
        if self.remote.auth != SessionAuth::Token {
            return sids.is_empty();
        }
        for sid in sids {
            let resume =
                ClientMessage::Resume { req: None, sid: switchboard_protocol::Sid::new(sid.as_str()) };
            let text = resume.to_json();
            match self.route(resume, &text).await {
                Routed::Sent => {}
                Routed::Here(msg) => {
                    let input = Input::Message { session: SessionId(self.session), msg };
                    if self.cluster.core.send(CoreCmd::Input(input)).await.is_err() {
                        return false;
                    }
                }
                // Its new owner cannot be reached now: the client comes back and resumes
                // itself (a resume waits for a takeover).
                Routed::Refused(_) => return false,
            }
        }
        true
    }

    /// `node` holds a proxy of this session: it hears when the session ends, and this
    /// node watches it.
    fn owner(&mut self, node: &str) {
        if self.routes.opened(node) {
            self.cluster.watch_owner(node, self.session);
        }
    }

    /// A frame of this node's core for the session: the sids it names live here.
    pub fn learn(&mut self, frame: &Frame) {
        self.routes.learn(&frame.text, None);
    }

    /// Sends `msg` (the client's `text`) where it must go.
    pub async fn route(&mut self, msg: ClientMessage, text: &str) -> Routed {
        let req = msg.req();
        let owner = match target(&msg, &self.remote.party) {
            Target::Here => return Routed::Here(msg),
            // A draining node's clients start their calls on another node, which rings.
            Target::Ring(users) => match self.cluster.draining() {
                false => {
                    return match self.cluster.adopt_devices(&users).await {
                        Ok(()) => Routed::Here(msg),
                        Err(e) => Routed::Refused(busy(req, &e.to_string())),
                    };
                }
                true => match directory::pick(&self.cluster.link).await {
                    Ok(Some(node)) => node,
                    // No node takes calls: this one refuses (SERVICE_MAINTENANCE).
                    Ok(None) => return Routed::Here(msg),
                    Err(e) => return Routed::Refused(busy(req, &e.to_string())),
                },
            },
            Target::Room { service_id, room_id } => {
                // What the core refuses anyway is refused here, placed nowhere (a
                // cc_param session may not join rooms).
                if self.remote.auth != SessionAuth::Token
                    || !switchboard_protocol::ids::is_valid_room_id(&room_id)
                    || !switchboard_protocol::ids::is_valid_service_id(&service_id)
                {
                    return Routed::Here(msg);
                }
                // A new room of a draining node's client is placed on another node.
                let link = &self.cluster.link;
                let candidate = match self.cluster.draining() {
                    true => directory::pick(link).await.ok().flatten().unwrap_or_else(|| link.me.to_string()),
                    false => link.me.to_string(),
                };
                match directory::place_room(link, &service_id, &room_id, &candidate).await {
                    Ok(node) => node,
                    Err(e) => return Routed::Refused(busy(req, &e.to_string())),
                }
            }
            Target::CallParam(cc) => {
                let Some(claims) = self.cluster.cc_key.open(&cc) else { return Routed::Here(msg) };
                match self.owner_of(claims.sid.as_str()).await {
                    Ok(node) => node,
                    Err(e) => return Routed::Refused(busy(req, &e)),
                }
            }
            Target::Sid(sid) => match self.owner_of(&sid).await {
                Ok(node) => node,
                Err(e) => return Routed::Refused(busy(req, &e)),
            },
        };
        if owner == self.cluster.node() {
            // An invitation into a group call that lives here rings devices everywhere
            // (the only message routed by its sid that rings).
            if matches!(msg, ClientMessage::InviteUser { .. }) {
                let users = super::routes::ringees(&msg, &self.remote.party);
                if let Err(e) = self.cluster.adopt_devices(&users).await {
                    return Routed::Refused(busy(req, &e.to_string()));
                }
            }
            return Routed::Here(msg);
        }
        // The message says who the client is: the owner opens a proxy of it if it has
        // none (its first message there, or the owner lost it).
        self.owner(&owner);
        let bus = BusMsg::Msg { client: self.client(), remote: self.remote.clone(), text: text.to_string() };
        if self.cluster.link.send(&owner, &bus, TO_OWNER).await {
            return Routed::Sent;
        }
        // Its owner may have died under it (the client was on that node too, and came
        // back here): the resume waits while a node takes the call over.
        if let ClientMessage::Resume { sid, .. } = &msg {
            let sid = sid.as_str().to_string();
            if let Some(routed) = self.resume_moved(&sid, &owner, msg, text).await {
                return routed;
            }
        }
        Routed::Refused(busy(req, "the bus between nodes is down"))
    }

    /// A `resume` of `sid` whose owner `dead` did not answer: sent where the call lives
    /// once another node took it over (within [`TAKEOVER_WAIT`]); `None` if none did.
    async fn resume_moved(
        &mut self,
        sid: &str,
        dead: &str,
        msg: ClientMessage,
        text: &str,
    ) -> Option<Routed> {
        let until = tokio::time::Instant::now() + TAKEOVER_WAIT;
        while tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            self.routes.forget_sid(sid);
            let Ok(node) = self.owner_of(sid).await else { continue };
            if node == dead {
                continue;
            }
            if node == self.cluster.node() {
                return Some(Routed::Here(msg));
            }
            self.owner(&node);
            let bus =
                BusMsg::Msg { client: self.client(), remote: self.remote.clone(), text: text.to_string() };
            return self.cluster.link.send(&node, &bus, TO_OWNER).await.then_some(Routed::Sent);
        }
        None
    }

    /// The node that owns `sid`: as learned, else as the database says (this node when
    /// it is live nowhere: the core answers).
    async fn owner_of(&mut self, sid: &str) -> Result<String, String> {
        match self.routes.get(sid) {
            Some(Route::Here) => return Ok(self.cluster.node().to_string()),
            Some(Route::Node(n)) => return Ok(n.clone()),
            None => {}
        }
        let me = self.cluster.node().to_string();
        let node = self.cluster.store.owner(sid).await.map_err(|e| e.to_string())?;
        let node = node.filter(|n| !n.is_empty()).unwrap_or(me.clone());
        self.routes.set(sid, if node == me { Route::Here } else { Route::Node(node.clone()) });
        Ok(node)
    }

    /// The session as other nodes name it.
    fn client(&self) -> ClientId {
        ClientId { boot: self.cluster.link.boot, session: self.session }
    }

    /// The session ended: the nodes holding a proxy of it hear so.
    pub async fn end(self) {
        self.cluster.detach(self.session, &self.remote).await;
        self.cluster.unwatch(self.session, self.routes.owners().cloned());
        for owner in self.routes.owners() {
            self.cluster.link.send(owner, &BusMsg::Closed { client: self.client() }, ENDED).await;
        }
    }
}

/// Refuses a message that cannot reach its owner now (Redis or the database is down).
fn busy(req: Option<u64>, why: &str) -> ServerMessage {
    tracing::warn!(why, "a message refused: its node cannot be reached");
    ServerMessage::Error {
        req,
        error: ErrorCode::Internal,
        reason: Some(DisconnectReason::ServiceBusy),
        message: "the node that holds this call cannot be reached right now; try again shortly".into(),
    }
}
