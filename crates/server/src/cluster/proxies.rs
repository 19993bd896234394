//! The owner's side: a client connected to another node (its edge) takes part in a call
//! or room that lives here through a proxy session of this node's core. The core runs
//! it as any session; its frames go to the edge over the bus once this node's journal
//! has them. One task owns the table of proxies.

use std::collections::{HashMap, HashSet};

use switchboard_protocol::ClientMessage;
use tokio::sync::{mpsc, oneshot, watch};

use super::bus::{BusMsg, ClientId, Remote};
use super::{Link, ENDED};
use crate::core::{ClientInfo, Input};
use crate::handles::{CoreCmd, CoreHandle, Frame};
use crate::ids::{Party, SessionId};

/// Proxy sessions are numbered from here, apart from this node's own sessions.
pub(crate) const FIRST_PROXY: u64 = 1 << 62;

/// What the proxy table is told.
pub(crate) enum ProxyCmd {
    /// A message off the bus from `from`.
    Bus { from: String, msg: BusMsg },
    /// Open a proxy of `client` of `edge` before this node rings it (its user is called
    /// from here); `done` once the core has it.
    Adopt { edge: String, client: ClientId, remote: Remote, done: oneshot::Sender<()> },
    /// These nodes' processes (node, boot) are gone: their clients' proxies end.
    EdgesGone(Vec<(String, u64)>),
    /// The nodes' processes (node, boot) whose clients have proxies here.
    Edges(oneshot::Sender<Vec<(String, u64)>>),
    /// The core let go of a proxy (it did not read its frames).
    Released { key: (String, ClientId), proxy: SessionId },
    /// The calls and rooms `sids` of the proxy `proxy`'s client live on node `to` now:
    /// its edge hears so.
    Moved { proxy: SessionId, to: String, sids: Vec<String> },
}

/// One proxy: its session in the core, whose it is, and the task sending its frames.
struct Proxy {
    session: SessionId,
    party: Party,
    writer: tokio::task::AbortHandle,
}

/// The table of proxies, run by [`run`].
struct Proxies {
    core: CoreHandle,
    committed: watch::Receiver<u64>,
    link: Link,
    by_client: HashMap<(String, ClientId), Proxy>,
    /// The table's own way in (for the writers).
    me: mpsc::UnboundedSender<ProxyCmd>,
    next: u64,
}

/// Runs the proxy table until the core stops.
pub(crate) async fn run(
    me: mpsc::UnboundedSender<ProxyCmd>,
    mut rx: mpsc::UnboundedReceiver<ProxyCmd>,
    core: CoreHandle,
    committed: watch::Receiver<u64>,
    link: Link,
) {
    let mut p = Proxies { core, committed, link, by_client: HashMap::new(), me, next: FIRST_PROXY };
    while let Some(cmd) = rx.recv().await {
        let alive = match cmd {
            ProxyCmd::Bus { from, msg } => p.bus(from, msg).await,
            ProxyCmd::Adopt { edge, client, remote, done } => {
                let (alive, new) = p.open(edge.clone(), client, remote).await;
                let _ = done.send(());
                if new {
                    // The edge must tell this node when the session ends, though it may
                    // never be sent a frame from here.
                    let link = p.link.clone();
                    tokio::spawn(async move { link.send(&edge, &BusMsg::Adopted { client }, ENDED).await });
                }
                alive
            }
            ProxyCmd::EdgesGone(nodes) => {
                let gone: HashSet<(String, u64)> = nodes.into_iter().collect();
                let keys: Vec<_> = p
                    .by_client
                    .keys()
                    .filter(|(n, c)| gone.contains(&(n.clone(), c.boot)))
                    .cloned()
                    .collect();
                if !keys.is_empty() {
                    tracing::warn!(nodes = ?gone, proxies = keys.len(), "nodes gone: their clients leave");
                }
                let mut alive = true;
                for key in keys {
                    alive &= p.close(&key).await;
                }
                alive
            }
            ProxyCmd::Edges(reply) => {
                let nodes: HashSet<(String, u64)> =
                    p.by_client.keys().map(|(n, c)| (n.clone(), c.boot)).collect();
                let _ = reply.send(nodes.into_iter().collect());
                true
            }
            ProxyCmd::Moved { proxy, to, sids } => {
                let key = p.by_client.iter().find(|(_, x)| x.session == proxy).map(|(k, _)| k.clone());
                if let Some((edge, client)) = key {
                    let link = p.link.clone();
                    let moved = BusMsg::Moved { client, to, sids };
                    tokio::spawn(async move { link.send(&edge, &moved, super::TO_EDGE).await });
                }
                true
            }
            ProxyCmd::Released { key, proxy } => {
                if p.by_client.get(&key).is_some_and(|x| x.session == proxy) {
                    tracing::warn!(edge = %key.0, client = ?key.1, "a proxy's client read nothing: it must come back");
                    let alive = p.close(&key).await;
                    let (link, (edge, client)) = (p.link.clone(), key);
                    tokio::spawn(async move { link.send(&edge, &BusMsg::Dropped { client }, ENDED).await });
                    alive
                } else {
                    true
                }
            }
        };
        if !alive {
            return;
        }
    }
}

impl Proxies {
    /// Handles a message of an edge; false once the core is gone.
    async fn bus(&mut self, from: String, msg: BusMsg) -> bool {
        match msg {
            BusMsg::Msg { client, remote, text } => {
                // The edge checked it; a message that does not parse here (another
                // version of the server) is dropped.
                let Ok(msg) = ClientMessage::parse(&text) else {
                    tracing::warn!(%from, ?client, "a relayed message that does not parse");
                    return true;
                };
                let party = remote.party.clone();
                // Its first message opens the proxy (again, if this node lost it).
                let (alive, _) = self.open(from.clone(), client, remote).await;
                if !alive {
                    return false;
                }
                let Some(proxy) = self.by_client.get(&(from, client)).map(|p| p.session) else { return true };
                // A call that rings (started here for a client of another node, whose
                // node drains, or an invitation into a group call that lives here): the
                // devices on other nodes must be reachable from here first.
                let users = super::routes::ringees(&msg, &party);
                if !users.is_empty() {
                    match super::directory::devices(&self.link, &users).await {
                        Ok(devices) => {
                            for (edge, client, remote) in devices {
                                if !self.open(edge, client, remote).await.0 {
                                    return false;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot find the callees' devices"),
                    }
                }
                self.core.send(CoreCmd::Input(Input::Message { session: proxy, msg })).await.is_ok()
            }
            BusMsg::Closed { client } | BusMsg::Gone { client } => self.close(&(from, client)).await,
            BusMsg::Frame { .. }
            | BusMsg::Adopted { .. }
            | BusMsg::Dropped { .. }
            | BusMsg::Handover { .. }
            | BusMsg::TookOver { .. }
            | BusMsg::Moved { .. } => true,
        }
    }

    /// Opens a proxy of `client` of `edge` unless there is one: (whether the core is
    /// still there, whether it is new).
    async fn open(&mut self, edge: String, client: ClientId, r: Remote) -> (bool, bool) {
        let key = (edge, client);
        if self.by_client.contains_key(&key) {
            return (true, false);
        }
        let proxy = SessionId(self.next);
        self.next += 1;
        let (tx, rx) = mpsc::channel::<Frame>(256);
        let writer = tokio::spawn(write(
            rx,
            self.committed.clone(),
            self.link.clone(),
            key.clone(),
            proxy,
            self.me.clone(),
        ));
        tracing::debug!(edge = %key.0, ?client, %proxy, user = %r.party.user_id, "proxy open");
        self.by_client
            .insert(key, Proxy { session: proxy, party: r.party.clone(), writer: writer.abort_handle() });
        self.link.metrics.proxies.inc();
        let open = CoreCmd::Open {
            session: proxy,
            party: r.party,
            auth: r.auth,
            ip: r.ip,
            client: ClientInfo { proxy: true, ..r.client },
            tx,
            welcome: None,
        };
        (self.core.send(open).await.is_ok(), true)
    }

    async fn close(&mut self, key: &(String, ClientId)) -> bool {
        let Some(proxy) = self.by_client.remove(key) else { return true };
        // Nobody is left to send its frames to.
        proxy.writer.abort();
        self.link.metrics.proxies.dec();
        tracing::debug!(edge = %key.0, client = ?key.1, proxy = %proxy.session, user = %proxy.party.user_id, "proxy closed");
        self.core.send(CoreCmd::Input(Input::Closed { session: proxy.session })).await.is_ok()
    }
}

/// Sends a proxy's frames to its edge, each once this node's journal has the step it
/// waits for (the edge sends it on at once), in order. When the core lets go of the
/// proxy (it read nothing), the table hears so.
async fn write(
    mut rx: mpsc::Receiver<Frame>,
    mut committed: watch::Receiver<u64>,
    link: Link,
    key: (String, ClientId),
    proxy: SessionId,
    table: mpsc::UnboundedSender<ProxyCmd>,
) {
    while let Some(frame) = rx.recv().await {
        if !frame.overtakes {
            while *committed.borrow_and_update() < frame.after {
                if committed.changed().await.is_err() {
                    break;
                }
            }
        }
        let msg = BusMsg::Frame { client: key.1, text: frame.text, overtakes: frame.overtakes };
        link.send(&key.0, &msg, super::TO_EDGE).await;
    }
    let _ = table.send(ProxyCmd::Released { key, proxy });
}
