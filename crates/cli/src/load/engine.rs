//! `switchboard load --engine N`: N call-engine group calls of 4 (a caller and three
//! invitees), all invited at once, through the Rust SDK against the spawned server.
//! Each invitee's engine accepts as soon as it is rung. Measured: the time from `calls`
//! to the caller's `onCallBegin`, and to the caller's `onUserJoin` of all three; p50,
//! p99 and max; the server's CPU over the phase. Signaling only (no media): what the
//! invitation machinery costs.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use switchboard_client::{Calls, Client, EngineEvent, Entered, Event, Events};

use super::measure::{cpu_ticks, ms, percentile};
use super::peers::{token, wait_for};

/// Invitees per call.
const INVITEES: usize = 3;

async fn engine_client(server: &str, user: &str) -> Result<(Client, Events)> {
    Client::connect_engine(server, "load", user, &token(user), true).await.map_err(|e| anyhow!("{user}: {e}"))
}

/// An invitee: accepts the first call that rings; once the caller left, leaves too (a
/// call lasts while two are in it).
async fn invitee(client: Client, mut events: Events, caller: String) -> Result<()> {
    let call_id = wait_for(&mut events, |e| match e {
        Event::Call { call_id: Some(id), call_event: EngineEvent::CallReceived { .. } } => Some(id.clone()),
        _ => None,
    })
    .await?;
    client.accept(&call_id).await?;
    let ended = wait_for(&mut events, |e| match e {
        Event::Call { call_event: EngineEvent::CallEnd { .. }, .. } => Some(true),
        Event::Call { call_event: EngineEvent::UserLeave { user_id }, .. } if *user_id == caller => {
            Some(false)
        }
        _ => None,
    })
    .await?;
    if !ended {
        // The last two may both hang up at once: the call is over for one of them.
        let _ = client.hangup(&call_id).await;
    }
    Ok(())
}

/// A caller: calls its three, times the begin and the joins, hangs up.
async fn caller(client: Client, mut events: Events, users: Vec<String>) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let entered = client.calls(Calls::audio(users)).await?;
    let Entered::Group(room) = entered else { return Err(anyhow!("a group call was expected")) };
    let mut begin = None;
    let mut joined = 0;
    while joined < INVITEES {
        match wait_for(&mut events, |e| match e {
            Event::Call { call_event, .. } => Some(call_event.clone()),
            _ => None,
        })
        .await?
        {
            EngineEvent::CallBegin { .. } => begin = Some(t0.elapsed()),
            EngineEvent::UserJoin { .. } => joined += 1,
            _ => {}
        }
    }
    let all = t0.elapsed();
    client.hangup(&room.sid).await?;
    Ok((begin.unwrap_or(all), all))
}

/// Runs the phase and prints its figures.
pub(crate) async fn engine_phase(server: &str, pid: u32, calls: usize) -> Result<()> {
    println!(
        "connecting {} engine clients ({calls} callers, {} invitees) ...",
        calls * (INVITEES + 1),
        calls * INVITEES
    );
    let mut callers = Vec::with_capacity(calls);
    let mut invitees = Vec::with_capacity(calls * INVITEES);
    for i in 0..calls {
        let users: Vec<String> = (0..INVITEES).map(|j| format!("inv{i}x{j}")).collect();
        for u in &users {
            let (c, ev) = engine_client(server, u).await?;
            invitees.push(tokio::spawn(invitee(c, ev, format!("caller{i}"))));
        }
        callers.push((engine_client(server, &format!("caller{i}")).await?, users));
    }
    let ticks = cpu_ticks(pid)?;
    let started = Instant::now();
    let tasks: Vec<_> =
        callers.into_iter().map(|((c, ev), users)| tokio::spawn(caller(c, ev, users))).collect();
    let (mut begins, mut joins) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
    for t in tasks {
        let (b, j) = t.await.map_err(|e| anyhow!("caller task: {e}"))??;
        begins.push(b);
        joins.push(j);
    }
    for t in invitees {
        t.await.map_err(|e| anyhow!("invitee task: {e}"))??;
    }
    let wall = started.elapsed();
    let cpu_secs = cpu_ticks(pid)?.saturating_sub(ticks) as f64 / 100.0;
    begins.sort();
    joins.sort();
    let line = |what: &str, d: &[Duration]| {
        println!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(d, 0.5)),
            ms(percentile(d, 0.99)),
            ms(percentile(d, 1.0))
        )
    };
    println!("{calls} group calls of {} set up at once, done in {:.2} s", INVITEES + 1, wall.as_secs_f64());
    line("calls -> onCallBegin (first accept)  ", &begins);
    line("calls -> onUserJoin of all three     ", &joins);
    println!(
        "server CPU: {cpu_secs:.2} s over {:.2} s ({:.0} % of one core), {:.2} ms per group call",
        wall.as_secs_f64(),
        100.0 * cpu_secs / wall.as_secs_f64(),
        1000.0 * cpu_secs / calls as f64
    );
    Ok(())
}
