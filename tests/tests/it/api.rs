//! The app server's REST API: each endpoint, each error status, isolation between
//! services, metrics and the OpenAPI document.

use std::time::Duration;

use serde_json::Value;
use switchboard_client::{DisconnectReason as R, DisconnectSource as S, MakeCall};
use switchboard_tests::*;

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(h: &Harness) -> Api {
        Api { http: reqwest::Client::new(), base: h.url() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        match auth {
            // A user's own route takes the user's token, which `self.base`'s harness mints.
            Some((_, token)) if path.starts_with("/v1/me/") => req = req.bearer_auth(token),
            Some((k, s)) => req = req.basic_auth(k, Some(s)),
            None => {}
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, auth).await
    }
}

const ACME: Option<(&str, &str)> = Some(("acme-key", ACME_SECRET));
const OTHER: Option<(&str, &str)> = Some(("other-key", OTHER_SECRET));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_live_and_ended_listing_and_isolation() {
    let h = Harness::start().await;
    let api = Api::new(&h);
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::video("bob").app_data("d1")).await.unwrap();

    let (st, v) = api.get(&format!("/v1/calls/{sid}"), ACME).await;
    assert_eq!((st, v["state"].as_str(), v["to_user_id"].as_str()), (200, Some("ringing"), Some("bob")));
    assert_eq!((v["type"].as_str(), v["app_svr_data"].as_str()), (Some("V"), Some("d1")));
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, sid);
    let (st, v) = api.get(&format!("/v1/calls/{sid}"), ACME).await;
    assert_eq!((st, v["state"].as_str()), (200, Some("connected")));
    assert!(v["start_time"].as_u64().unwrap() > 0);
    // Another service cannot see it.
    assert_eq!(api.get(&format!("/v1/calls/{sid}"), OTHER).await.0, 404);

    alice.end_call(&sid, None, None).await.unwrap();
    let record = h.app.record_for(&sid).await;
    let (st, v) = api.get(&format!("/v1/calls/{sid}"), ACME).await;
    assert_eq!((st, v["state"].as_str()), (200, Some("ended")));
    // The same field names and values as on_call_evt_cb.
    for (k, val) in &record.query {
        let got = match &v[k] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        assert_eq!(&got, val, "field {k}");
    }
    assert_eq!(api.get(&format!("/v1/calls/{sid}"), OTHER).await.0, 404);
    assert_eq!(api.get("/v1/calls/not-a-sid", ACME).await.0, 400);
    assert_eq!(api.get("/v1/calls/00000000-0000-0000-0000-000000000000", ACME).await.0, 404);

    // More calls for paging.
    let mut sids = vec![sid.clone()];
    for i in 0..4 {
        let s = alice.make_call(MakeCall::audio(format!("u{i}"))).await.unwrap();
        alice.end_call(&s, None, None).await.unwrap();
        h.app.record_for(&s).await;
        sids.push(s);
    }
    let (st, v) = api.get("/v1/calls?limit=2", ACME).await;
    assert_eq!(st, 200);
    let page1: Vec<String> =
        v["calls"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap().to_string()).collect();
    assert_eq!(page1.len(), 2);
    let cursor = v["next_cursor"].as_str().expect("a next page").to_string();
    let mut all = page1.clone();
    let mut cursor = Some(cursor);
    while let Some(c) = cursor {
        let (st, v) = api.get(&format!("/v1/calls?limit=2&cursor={c}"), ACME).await;
        assert_eq!(st, 200);
        all.extend(v["calls"].as_array().unwrap().iter().map(|c| c["sid"].as_str().unwrap().to_string()));
        cursor = v["next_cursor"].as_str().map(String::from);
    }
    let mut want = sids.clone();
    want.sort();
    let mut got = all.clone();
    got.sort();
    assert_eq!(got, want, "every call exactly once across pages");
    // Newest first.
    let times: Vec<u64> = {
        let (_, v) = api.get("/v1/calls?limit=500", ACME).await;
        v["calls"].as_array().unwrap().iter().map(|c| c["setup_time"].as_u64().unwrap()).collect()
    };
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    let (_, v) = api.get("/v1/calls?user_id=u2", ACME).await;
    assert_eq!(v["calls"].as_array().unwrap().len(), 1);
    let (_, v) = api.get("/v1/calls?from=1&to=2", ACME).await;
    assert_eq!(v["calls"].as_array().unwrap().len(), 0);
    let (_, v) = api.get("/v1/calls", OTHER).await;
    assert_eq!(v["calls"].as_array().unwrap().len(), 0, "other sees none of acme's calls");
    for bad in [
        "limit=0",
        "limit=501",
        "limit=x",
        "from=-1",
        "from=5&to=1",
        "cursor=nope",
        "user_id=a%20b",
        "bogus=1",
    ] {
        let (st, v) = api.get(&format!("/v1/calls?{bad}"), ACME).await;
        assert_eq!(st, 400, "{bad}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{bad}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_end_is_user_error_from_the_app_server() {
    let h = Harness::start().await;
    let api = Api::new(&h);
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, sid);

    assert_eq!(api.call(reqwest::Method::DELETE, &format!("/v1/calls/{sid}"), OTHER).await.0, 404);
    let long = "x".repeat(129);
    let (st, _) =
        api.call(reqwest::Method::DELETE, &format!("/v1/calls/{sid}?user_rel_code={long}"), ACME).await;
    assert_eq!(st, 400);
    let (st, v) =
        api.call(reqwest::Method::DELETE, &format!("/v1/calls/{sid}?user_rel_code=FRAUD-7"), ACME).await;
    assert_eq!((st, v["ended"].as_bool()), (200, Some(true)));
    for ev in [&mut alice_ev, &mut bob_ev] {
        let d = disconnected(ev).await;
        assert_eq!((d.reason, d.source, d.by_remote), (R::UserError, S::AppServer, false));
        assert_eq!(d.user_rel_code.as_deref(), Some("FRAUD-7"));
    }
    let r = h.app.record_for(&sid).await;
    assert_eq!((r.query["disconnect_reason"].as_str(), r.query["releaser_type"].as_str()), ("1110", "5"));
    assert_eq!(r.query["user_rel_code"], "FRAUD-7");
    assert_eq!(
        api.call(reqwest::Method::DELETE, &format!("/v1/calls/{sid}"), ACME).await.0,
        404,
        "already over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rate_limit_openapi_and_metrics() {
    let h = Harness::start_with(|c| {
        c.limits.api_per_service_per_sec = 1.0;
        c.limits.api_per_service_burst = 5.0;
    })
    .await;
    let api = Api::new(&h);
    assert_eq!(api.get("/v1/calls", None).await.0, 401);
    assert_eq!(api.get("/v1/calls", Some(("acme-key", OTHER_SECRET))).await.0, 401);
    assert_eq!(api.get("/v1/calls", Some(("nobody", ACME_SECRET))).await.0, 401);
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/calls", h.url()))
        .header("Authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let mut codes = Vec::new();
    for _ in 0..7 {
        codes.push(api.get("/v1/calls", ACME).await.0);
    }
    assert_eq!(&codes[..5], &[200; 5]);
    assert_eq!(codes[6], 429);
    // Another service has its own budget.
    assert_eq!(api.get("/v1/calls", OTHER).await.0, 200);

    let doc: Value =
        reqwest::get(format!("{}/v1/openapi.json", h.url())).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in [
        "/v1/calls",
        "/v1/calls/{sid}",
        "/v1/callbacks",
        "/v1/callbacks/{id}/retry",
        "/v1/rooms",
        "/v1/rooms/{room_id}",
        "/v1/rooms/{room_id}/kick",
        "/v1/rooms/{room_id}/messages",
        "/v1/me/calls",
    ] {
        assert!(doc["paths"][p].is_object(), "{p}");
    }
    // A user's own calls take the user's token, not the service's key.
    let me = &doc["paths"]["/v1/me/calls"]["get"];
    assert_eq!(me["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let (alice, _a) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("nobody")).await.unwrap();
    alice.end_call(&sid, None, None).await.unwrap();
    h.app.record_for(&sid).await;
    let text = reqwest::get(format!("{}/metrics", h.url())).await.unwrap().text().await.unwrap();
    for line in [
        "switchboard_calls_started_total 1",
        "switchboard_calls_ended_total{reason=\"CANCEL\",code=\"1201\"} 1",
        "switchboard_callbacks_queued_total 2",
        "switchboard_sessions 1",
        "switchboard_callback_delivery_seconds_count",
    ] {
        assert!(text.contains(line), "{line} missing in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_that_give_up_are_listed_and_can_be_retried() {
    // `other` calls back to a port where nothing listens yet.
    let spot = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = spot.local_addr().unwrap();
    drop(spot);
    let h = Harness::start_with(|c| {
        c.callbacks.retry_first_ms = 100;
        c.callbacks.retry_max_ms = 200;
        c.callbacks.give_up_secs = 1;
        c.services[1].notify_cb_url = None;
        c.services[1].on_call_evt_cb_url = Some(format!("http://{addr}/call_evt"));
    })
    .await;
    let api = Api::new(&h);
    let (carol, _c) = h.user_of("other", "carol").await;
    let (_dave, mut dave_ev) = h.user_of("other", "dave").await;
    let sid = carol.make_call(MakeCall::audio("dave")).await.unwrap();
    incoming(&mut dave_ev).await;
    carol.end_call(&sid, None, None).await.unwrap();

    let (st, v) = api.get("/v1/callbacks?state=pending", OTHER).await;
    assert_eq!(st, 200);
    let pending = v["callbacks"].as_array().unwrap();
    assert!(pending.iter().any(|c| c["cb_id"] == format!("call-{sid}")), "{v}");
    // It gives up after give_up_secs.
    let failed = loop {
        let (_, v) = api.get("/v1/callbacks?state=failed", OTHER).await;
        if let Some(c) = v["callbacks"].as_array().unwrap().first() {
            break c.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(failed["cb_id"], format!("call-{sid}"));
    assert!(failed["attempts"].as_u64().unwrap() >= 2);
    assert!(failed["last_error"].as_str().is_some());
    // acme sees none of other's callbacks, and cannot retry them.
    let (_, v) = api.get("/v1/callbacks?state=failed", ACME).await;
    assert!(v["callbacks"].as_array().unwrap().is_empty());
    let id = failed["id"].as_i64().unwrap();
    assert_eq!(api.call(reqwest::Method::POST, &format!("/v1/callbacks/{id}/retry"), ACME).await.0, 404);
    assert_eq!(api.get("/v1/callbacks?state=lost", OTHER).await.0, 400);
    assert_eq!(api.call(reqwest::Method::POST, "/v1/callbacks/xyz/retry", OTHER).await.0, 400);

    // The app server comes up; the operator retries; it is delivered once.
    let app = AppServer::start_on(addr).await;
    let (st, v) = api.call(reqwest::Method::POST, &format!("/v1/callbacks/{id}/retry"), OTHER).await;
    assert_eq!((st, v["callback"]["state"].as_str()), (202, Some("pending")));
    let r = app.record_for(&sid).await;
    assert_eq!(r.id, format!("call-{sid}"));
    assert!(verify_as_documented(
        OTHER_SECRET,
        &r.signature,
        &r.raw_query,
        r.query["end_time"].parse().unwrap(),
        300
    ));
    assert_eq!(
        api.call(reqwest::Method::POST, &format!("/v1/callbacks/{id}/retry"), OTHER).await.0,
        404,
        "not failed any more"
    );
    let delivered = loop {
        let (_, v) = api.get("/v1/callbacks?state=delivered", OTHER).await;
        if let Some(c) = v["callbacks"].as_array().unwrap().first() {
            break c.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(delivered["id"].as_i64(), Some(id));
}

/// The served OpenAPI document and the routes agree: every operation it documents is
/// served (without credentials: 401, never 404 or 405), and every REST route the
/// server serves is documented.
#[tokio::test]
async fn every_documented_operation_is_served_and_every_route_documented() {
    let h = Harness::start().await;
    let doc: Value =
        reqwest::get(format!("{}/v1/openapi.json", h.url())).await.unwrap().json().await.unwrap();
    let http = reqwest::Client::new();
    let mut documented = Vec::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().expect("operations").keys() {
            let concrete = path
                .replace("{sid}", "6364e8b3-bdac-436e-9631-0bce2498ce0c")
                .replace("{room_id}", "r1")
                .replace("{id}", "1");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let status =
                http.request(m, format!("{}{concrete}", h.url())).send().await.unwrap().status().as_u16();
            assert_eq!(status, 401, "{method} {path} answered {status}");
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let served = [
        "DELETE /v1/calls/{sid}",
        "DELETE /v1/rooms/{room_id}",
        "GET /v1/callbacks",
        "GET /v1/calls",
        "GET /v1/calls/{sid}",
        "GET /v1/me/calls",
        "GET /v1/rooms",
        "GET /v1/rooms/{room_id}",
        "POST /v1/callbacks/{id}/retry",
        "POST /v1/rooms/{room_id}/kick",
        "POST /v1/rooms/{room_id}/messages",
    ];
    assert_eq!(documented, served);
    // And a route that is not there is a 404, so the 401s above mean something.
    let status = http.get(format!("{}/v1/nothing", h.url())).send().await.unwrap().status().as_u16();
    assert_eq!(status, 404);

    // Every reference in the document resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = format!("/{}", &piece[..piece.find('"').expect("ref end")]);
        assert!(doc.pointer(&pointer).is_some(), "dangling $ref {pointer}");
    }
    // Every operation documents the answers every operation can give.
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for (method, op) in ops.as_object().expect("operations") {
            for status in ["200", "401", "429"] {
                let status = if path.ends_with("/retry") && status == "200" { "202" } else { status };
                assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
        }
    }
    // The query parameters agree too: each documented one is taken (never refused as
    // unknown), and one the document does not name is refused.
    let api = Api::new(&h);
    let alice = h.token("acme", "alice");
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        let auth = if path.starts_with("/v1/me/") { Some(("alice", alice.as_str())) } else { ACME };
        for (method, op) in ops.as_object().expect("operations") {
            let concrete = path
                .replace("{sid}", "6364e8b3-bdac-436e-9631-0bce2498ce0c")
                .replace("{room_id}", "r1")
                .replace("{id}", "1");
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in params.iter().filter(|p| p["in"] == "query") {
                let name = p["name"].as_str().expect("name");
                let sample = match p["schema"]["type"].as_str().or(p["schema"]["type"][0].as_str()) {
                    Some("integer") => "1".to_string(),
                    _ if p["schema"]["enum"].is_array() => {
                        p["schema"]["enum"][0].as_str().expect("enum").into()
                    }
                    _ => "x".to_string(),
                };
                let (status, body) = api.call(m.clone(), &format!("{concrete}?{name}={sample}"), auth).await;
                let words = body["message"].as_str().unwrap_or_default();
                assert!(
                    !words.contains("unknown parameter"),
                    "{method} {path} refused {name}: {status} {body}"
                );
                assert!(!words.contains("wrong type"), "{method} {path} refused {name}={sample}: {body}");
            }
            let (status, body) = api.call(m.clone(), &format!("{concrete}?undocumented=1"), auth).await;
            assert_eq!(status, 400, "{method} {path} took an undocumented parameter");
            assert!(body["message"].as_str().unwrap_or_default().contains("unknown parameter"), "{body}");
        }
    }
}
