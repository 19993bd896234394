//! The contract's tables as users read them in `docs/reasons.md`, rendered from the
//! types of this crate (a test keeps the page equal to them): disconnect sources, and
//! every disconnect reason with when it is given, who may report it, and what the call
//! record carries for it.

use crate::reason::{DisconnectReason, DisconnectSource};

/// The sources table (markdown).
pub fn sources_table() -> String {
    let mut t = String::from("| source | `releaser_type` | who |\n|---|---|---|\n");
    for s in [
        DisconnectSource::Callee,
        DisconnectSource::Caller,
        DisconnectSource::Participant,
        DisconnectSource::CloudServer,
        DisconnectSource::AppServer,
    ] {
        let who = match s {
            DisconnectSource::Callee => "the 1-to-1 callee (any of its devices)",
            DisconnectSource::Caller => "the 1-to-1 caller",
            DisconnectSource::Participant => "a room participant (itself)",
            DisconnectSource::CloudServer => "the Switchboard server",
            DisconnectSource::AppServer => "your app server, through the REST API",
        };
        t += &format!("| `{}` | {} | {who} |\n", s.name(), s.code());
    }
    t
}

/// Who may give a reason: the server, a client in `end_call` / `leave_room`, or only a
/// client SDK about itself (never on the wire from the server).
fn reported_by(r: DisconnectReason) -> &'static str {
    match r.code() {
        1506..=1510 | 1601..=1612 => "client SDK",
        _ if r.is_client_reportable() => "client or server",
        _ => "server",
    }
}

/// The reasons table (markdown): code, name, when, who reports it, and the record's
/// `rel_code` and `terminate` (Q.850 when the call was never answered; 16 when it was).
pub fn reasons_table() -> String {
    let mut t = String::from(
        "| code | name | when | reported by | `rel_code` | `terminate` if unanswered |\n|---|---|---|---|---|---|\n",
    );
    for r in DisconnectReason::ALL {
        let rel = r.rel_code();
        t += &format!(
            "| {} | `{}` | {} | {} | {} `{}` | {} |\n",
            r.code(),
            r.name(),
            r.when(),
            reported_by(*r),
            rel.code,
            rel.name,
            r.q850_unconnected()
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/reasons.md` holds exactly these tables between its markers. With
    /// `SWITCHBOARD_WRITE_DOCS=1` the test writes them there instead.
    #[test]
    fn docs_reasons_md_is_rendered_from_the_types() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reasons.md");
        let text = std::fs::read_to_string(&path).expect("docs/reasons.md");
        let mut want = text.clone();
        for (name, table) in [("sources", sources_table()), ("reasons", reasons_table())] {
            let begin = format!("<!-- {name}: generated from crates/protocol -->\n");
            let end = format!("<!-- end of {name} -->");
            let from = want.find(&begin).map(|i| i + begin.len()).expect("begin marker");
            let to = want[from..].find(&end).map(|i| i + from).expect("end marker");
            want.replace_range(from..to, &table);
        }
        if std::env::var_os("SWITCHBOARD_WRITE_DOCS").is_some() {
            std::fs::write(&path, &want).expect("write docs/reasons.md");
        }
        assert!(
            text == want,
            "docs/reasons.md is out of date: run SWITCHBOARD_WRITE_DOCS=1 cargo test -p switchboard-protocol"
        );
    }
}
