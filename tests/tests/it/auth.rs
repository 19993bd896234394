//! Credentials at the door: access tokens, cc_params, services and protocol versions.

use switchboard_client::{
    Client, ClientError, Credentials, DisconnectReason as R, MakeCall, StartFailReason,
};
use switchboard_tests::*;

async fn refused(h: &Harness, creds: Credentials) -> R {
    match Client::connect(&h.url(), creds).await {
        Err(ClientError::Refused { reason, .. }) => reason,
        Err(e) => panic!("expected a refusal, got {e:?}"),
        Ok(_) => panic!("expected a refusal, got a session"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_their_reason() {
    let h = Harness::start().await;
    let good = h.token("acme", "alice");
    // Forged: signed with another secret.
    let forged = switchboard_server::auth::mint_token(
        OTHER_SECRET,
        &switchboard_server::auth::peek_claims(&good).unwrap(),
    );
    assert_eq!(refused(&h, Credentials::token("acme", "alice", forged)).await, R::ServiceAccessTokenError);
    assert_eq!(
        refused(&h, Credentials::token("acme", "alice", "not.a.jwt")).await,
        R::ServiceAccessTokenError
    );
    assert_eq!(refused(&h, Credentials::token("acme", "alice", "")).await, R::ServiceAccessTokenError);
    // Expired.
    let expired = h.token_with("acme", "alice", -120);
    assert_eq!(refused(&h, Credentials::token("acme", "alice", expired)).await, R::AuthError);
    // Someone else's token.
    assert_eq!(refused(&h, Credentials::token("acme", "mallory", good.clone())).await, R::AuthError);
    // A user of another service claiming to be in acme.
    let other = h.token("other", "alice");
    assert_eq!(refused(&h, Credentials::token("acme", "alice", other)).await, R::AuthError);
    // A service this server does not have.
    let ghost = switchboard_server::auth::mint_token(
        ACME_SECRET,
        &switchboard_server::auth::Claims {
            sub: "ghost".into(),
            ..switchboard_server::auth::peek_claims(&good).unwrap()
        },
    );
    assert_eq!(refused(&h, Credentials::token("ghost", "alice", ghost)).await, R::ServiceInvalidId);
    // A forged cc_param.
    assert_eq!(refused(&h, Credentials::CcParam("AAAA".into())).await, R::AuthError);

    // The server is still fine.
    let (alice, _ev) = h.user("alice").await;
    assert!(alice.make_call(MakeCall::audio("bob")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_protocol_version_is_refused() {
    let h = Harness::start().await;
    let mut raw = RawSession::open(&h).await;
    raw.send(&format!(r#"{{"type":"hello","v":0,"token":"{}"}}"#, h.token("acme", "alice"))).await;
    let e = raw.wait_for("error").await;
    assert_eq!(e["error"], "auth");
    assert_eq!(e["reason"]["code"], 1511);
    assert_eq!(e["reason"]["name"], "SERVICE_INCOMPATIBLE_PLANETKIT_VER");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_param_is_bound_to_its_callee_and_service() {
    let h = Harness::start().await;
    let (alice, _a) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let cc = h.app.notify_for("bob").await.query["param"].clone();
    // Mallory intercepts bob's push and tries it with her own session.
    let (mallory, _m) = h.user("mallory").await;
    match mallory.verify_call(&cc).await {
        Err(ClientError::StartFailed { reason: StartFailReason::InvalidUserId, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A bob of another service cannot use it either.
    let (other_bob, _o) = h.user_of("other", "bob").await;
    match other_bob.verify_call(&cc).await {
        Err(ClientError::StartFailed { reason: StartFailReason::InvalidServiceId, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A tampered cc_param.
    let mut bytes = cc.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let (bob, _b) = h.user("bob").await;
    match bob.verify_call(&tampered).await {
        Err(ClientError::StartFailed { reason: StartFailReason::DecodeCallParam, .. }) => {}
        other => panic!("{other:?}"),
    }
    // The real bob with the real one is fine.
    assert_eq!(bob.verify_call(&cc).await.unwrap().sid, sid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refresh_without_dropping() {
    let h = Harness::start().await;
    let short = h.token_with("acme", "alice", 30);
    let (alice, mut ev) =
        Client::connect(&h.url(), Credentials::token("acme", "alice", short)).await.unwrap();
    // 30 s left is inside the warning window: the server says so at once.
    let expires_at = wait_event(&mut ev, |e| match e {
        switchboard_client::Event::TokenExpiring { expires_at } => Some(*expires_at),
        _ => None,
    })
    .await;
    let fresh = h.token("acme", "alice");
    // The TURN credentials come again with the token, good from the refresh on (a second
    // later, so that their expiry moves).
    let turn_expiry = |c: &Client| -> u64 {
        let servers = c.ice_servers();
        servers[0].username.split(':').next().and_then(|e| e.parse().ok()).expect("expiry:service:user")
    };
    let first = turn_expiry(&alice);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new_exp = alice.refresh_token(&fresh).await.unwrap();
    assert!(new_exp > expires_at);
    assert!(turn_expiry(&alice) > first, "fresh TURN credentials with the refreshed token");
    let err = alice.refresh_token(&h.token("acme", "bob")).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { reason: Some(R::AuthError), .. }), "{err:?}");
    assert!(alice.make_call(MakeCall::audio("bob")).await.is_ok());
}
