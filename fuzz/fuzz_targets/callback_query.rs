//! The callback query encoder: whatever the field values, an app server decoding the
//! query (as any form decoder does) gets exactly the names and values back, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::record::encode_query;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('\u{1}')
        .map(|p| match p.split_once('\u{2}') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => ("f".to_string(), p.to_string()),
        })
        .collect();
    let refs: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let query = encode_query(&refs);
    // Only unreserved characters, '%' escapes and the separators.
    assert!(query.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=&".contains(&b)), "{query}");
    let back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    assert_eq!(back, pairs);
});
