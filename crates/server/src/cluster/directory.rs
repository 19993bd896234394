//! What the nodes keep in Redis, read and written: the registry of nodes, the placement
//! of rooms, and users' presence (their sessions on every node).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::bus::ClientId;
use super::bus::Remote;
use super::Link;
use crate::clock::now_ms;
use crate::ids::Party;

type Res<T> = Result<T, redis::RedisError>;

/// How long a node's registry entry holds without being written again.
pub(crate) const ALIVE_FOR_MS: u64 = 3_000;
/// How long a room stays placed on its node after its last join.
const PLACEMENT_MS: u64 = 24 * 3600 * 1000;
/// How long a user's presence entries outlive their last write (a node that dies
/// leaves its entries; they are skipped, and cleaned when found).
const PRESENCE_SECS: u64 = 24 * 3600;
/// The set of every node's name (each has a registry entry while it is up).
const NODES: &str = "sb:nodes";
/// What signatures of registry entries and presence are for (a value signed for one is
/// no good as the other).
const REGISTRY: &str = "registry";
const PRESENCE: &str = "presence";

/// A node's registry entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The node's process.
    pub boot: u64,
    /// It takes no new calls or rooms.
    #[serde(default)]
    pub draining: bool,
    /// Its client sessions (its load).
    #[serde(default)]
    pub sessions: u64,
}

/// Writes this node's registry entry; whether the last one was still there (it is not
/// when Redis restarted empty, or this node could not write it for a while).
pub(crate) async fn write_entry(link: &Link, entry: Entry) -> Res<bool> {
    let mut value = serde_json::to_value(entry).unwrap_or_default();
    value["ts"] = now_ms().into();
    let value = link.key.sign(REGISTRY, &value.to_string());
    let (before, _): (Option<String>, i64) = redis::pipe()
        .cmd("SET")
        .arg(format!("sb:node:{}", link.me))
        .arg(value)
        .arg("PX")
        .arg(ALIVE_FOR_MS)
        .arg("GET")
        .cmd("SADD")
        .arg(NODES)
        .arg(&*link.me)
        .query_async(&mut link.conn.clone())
        .await?;
    Ok(before.is_some())
}

/// The registry entries of those of `nodes` that are up.
pub(crate) async fn entries(link: &Link, nodes: &[String]) -> Res<HashMap<String, Entry>> {
    let mut up = HashMap::new();
    for node in nodes.iter().collect::<HashSet<_>>() {
        let value: Option<String> =
            redis::cmd("GET").arg(format!("sb:node:{node}")).query_async(&mut link.conn.clone()).await?;
        let entry = value.and_then(|v| serde_json::from_str::<Entry>(link.key.verify(REGISTRY, &v)?).ok());
        if let Some(entry) = entry {
            up.insert(node.clone(), entry);
        }
    }
    Ok(up)
}

/// Every node's name (the live and the dead not yet taken over).
pub(crate) async fn nodes(link: &Link) -> Res<Vec<String>> {
    redis::cmd("SMEMBERS").arg(NODES).query_async(&mut link.conn.clone()).await
}

/// `node` died and what it owned was taken over: it is listed no more (it lists itself
/// again if it comes back).
pub(crate) async fn forget_node(link: &Link, node: &str) {
    let removed: Res<i64> = redis::cmd("SREM").arg(NODES).arg(node).query_async(&mut link.conn.clone()).await;
    if let Err(e) = removed {
        tracing::debug!(node, error = %e, "cannot unlist a dead node");
    }
}

/// The least loaded other node that takes new calls, if any.
pub(crate) async fn pick(link: &Link) -> Res<Option<String>> {
    let names: Vec<String> = nodes(link).await?.into_iter().filter(|n| *n != *link.me).collect();
    let up = entries(link, &names).await?;
    Ok(up
        .into_iter()
        .filter(|(_, e)| !e.draining)
        .min_by_key(|(n, e)| (e.sessions, n.clone()))
        .map(|(n, _)| n))
}

/// The node the room `(service, room_id)` lives on: the one placed for it while that
/// node is up, else `candidate` (placed now).
pub(crate) async fn place_room(link: &Link, service_id: &str, room_id: &str, candidate: &str) -> Res<String> {
    const PLACE: &str = "local cur = redis.call('GET', KEYS[1]) \
        if cur and redis.call('EXISTS', 'sb:node:' .. cur) == 1 then \
          redis.call('PEXPIRE', KEYS[1], ARGV[2]) return cur end \
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return ARGV[1]";
    redis::cmd("EVAL")
        .arg(PLACE)
        .arg(1)
        .arg(format!("sb:room:{service_id}:{room_id}"))
        .arg(candidate)
        .arg(PLACEMENT_MS)
        .query_async(&mut link.conn.clone())
        .await
}

/// Places the room `(service, room_id)` on this node, whichever node held it (a
/// draining node handed it over).
pub(crate) async fn move_room(link: &Link, service_id: &str, room_id: &str) -> Res<()> {
    redis::cmd("SET")
        .arg(format!("sb:room:{service_id}:{room_id}"))
        .arg(&*link.me)
        .arg("PX")
        .arg(PLACEMENT_MS)
        .query_async(&mut link.conn.clone())
        .await
}

fn presence_key(party: &Party) -> String {
    format!("sb:presence:{}:{}", party.service_id, party.user_id)
}

/// A user's session as listed in Redis.
#[derive(Serialize, Deserialize)]
struct Presence {
    boot: u64,
    remote: Remote,
}

/// Lists `session` of this node as one of `remote.party`'s devices.
pub(crate) async fn present(link: &Link, session: u64, remote: &Remote) -> Res<()> {
    present_all(link, &[(session, remote.clone())]).await
}

/// Lists each of these sessions of this node, in one round trip.
pub(crate) async fn present_all(link: &Link, sessions: &[(u64, Remote)]) -> Res<()> {
    let mut pipe = redis::pipe();
    for (session, remote) in sessions {
        let key = presence_key(&remote.party);
        let value =
            serde_json::to_string(&Presence { boot: link.boot, remote: remote.clone() }).unwrap_or_default();
        pipe.cmd("HSET")
            .arg(&key)
            .arg(format!("{}/{session}", link.me))
            .arg(link.key.sign(PRESENCE, &value))
            .ignore();
        pipe.cmd("EXPIRE").arg(&key).arg(PRESENCE_SECS).ignore();
    }
    pipe.query_async::<()>(&mut link.conn.clone()).await
}

/// Takes `session` of this node off `party`'s devices.
pub(crate) async fn absent(link: &Link, session: u64, party: &Party) -> Res<()> {
    let field = format!("{}/{session}", link.me);
    redis::cmd("HDEL").arg(presence_key(party)).arg(field).query_async::<i64>(&mut link.conn.clone()).await?;
    Ok(())
}

/// The devices `users` have signed in on other nodes that are up (the entries of
/// processes that are gone are cleaned away).
pub(crate) async fn devices(link: &Link, users: &[Party]) -> Res<Vec<(String, ClientId, Remote)>> {
    let mut out = Vec::new();
    for party in users {
        let key = presence_key(party);
        let listed: HashMap<String, String> =
            redis::cmd("HGETALL").arg(&key).query_async(&mut link.conn.clone()).await?;
        let mut found = Vec::new();
        for (field, value) in &listed {
            let Some((node, session)) = field.rsplit_once('/') else { continue };
            // Only what a node of this deployment listed (signed) counts.
            let listed =
                link.key.verify(PRESENCE, value).and_then(|v| serde_json::from_str::<Presence>(v).ok());
            let (Ok(session), Some(p)) = (session.parse::<u64>(), listed) else {
                continue;
            };
            if node != &*link.me && p.remote.party == *party {
                found.push((node.to_string(), ClientId { boot: p.boot, session }, p.remote, field));
            }
        }
        let nodes: Vec<String> = found.iter().map(|d| d.0.clone()).collect();
        let up = entries(link, &nodes).await?;
        for (node, client, remote, field) in found {
            if up.get(&node).map(|e| e.boot) == Some(client.boot) {
                out.push((node, client, remote));
            } else {
                let _: Res<i64> =
                    redis::cmd("HDEL").arg(&key).arg(field).query_async(&mut link.conn.clone()).await;
            }
        }
    }
    Ok(out)
}
