//! The shape of the house, checked: no import cycle between the modules of a crate, and
//! no source file too long to read (the core's under 600 lines, every crate's under
//! 1,000). See docs/architecture.md.
//!
//! How cycles are found: every `use` and every `crate::…` / `super::…` path of a
//! module's file (its tests left out) names a module of the same crate, the deepest one
//! that exists. A reference between two modules that are not ancestor and descendant
//! is an edge between their branches under their lowest common ancestor (`core::call`
//! → `core::room` is `call → room` under `core`; `api` → `core::room` is `api → core`
//! under the crate root). Each parent's edges must form no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates")
}

/// Every `.rs` file below `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

type Module = Vec<String>;

/// The module a file of `src/` is: `a/b.rs` and `a/b/mod.rs` are `a::b`.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut m: Module = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if m.last().is_some_and(|l| l == "mod" || l == "lib" || l == "main") {
        m.pop();
    }
    m
}

/// `a::{b, c::{d}}` as `a::b`, `a::c::d`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else { return vec![path.to_string()] };
    let (head, rest) = path.split_at(open);
    let inner = &rest[1..rest.rfind('}').unwrap_or(rest.len())];
    let (mut items, mut depth, mut cur) = (Vec::new(), 0, String::new());
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    items.push(cur);
    items
        .into_iter()
        .map(|i| i.trim().to_string())
        .filter(|i| !i.is_empty())
        .flat_map(|i| {
            if i == "self" {
                vec![head.trim_end_matches(':').to_string()]
            } else {
                expand(&format!("{head}{i}"))
            }
        })
        .collect()
}

/// The paths a module's source names: its `use`s and its `crate::`/`super::` paths.
fn references(text: &str) -> Vec<String> {
    let code: String =
        text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    for stmt in code.split(';') {
        if let Some(i) = stmt.find("use ") {
            let before = &stmt[..i];
            if before.trim().is_empty()
                || before.trim_end().ends_with("pub")
                || before.trim_end().ends_with(')')
            {
                let path: String =
                    stmt[i + 4..].split(" as ").next().unwrap_or("").split_whitespace().collect();
                out.extend(expand(&path));
            }
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(start) {
            let at = from + pos;
            let prev = code[..at].chars().last();
            if !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                let path: String = bytes[at..]
                    .iter()
                    .take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':')
                    .collect();
                out.push(path.trim_end_matches(':').to_string());
            }
            from = at + start.len();
        }
    }
    out
}

/// Resolves a path named in module `from` to the deepest existing module.
fn target(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let comps: Vec<&str> = path.split("::").collect();
    let mut t: Module = match comps.first()? {
        &"crate" => comps[1..].iter().map(|s| s.to_string()).collect(),
        &"super" | &"self" => {
            let mut base = from.clone();
            let mut rest = &comps[..];
            while let Some(&c) = rest.first() {
                match c {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().map(|s| s.to_string()));
            base
        }
        _ => return None,
    };
    while !t.is_empty() && !modules.contains(&t) {
        t.pop();
    }
    Some(t)
}

/// A cycle among `edges` (by name), if any.
fn cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<&str, Vec<&str>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(*m) {
                Some(1) => {
                    let i = path.iter().position(|p| p == m).unwrap_or(0);
                    let mut c = path[i..].to_vec();
                    c.push(m.to_string());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut g: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        g.entry(a).or_default().push(b);
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(*n) {
            if let Some(c) = visit(n, &g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_of_a_crate_imports_in_a_circle() {
    let mut checked = Vec::new();
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(crates_dir()).expect("crates").flatten() {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let files = sources(&src);
        let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<Module, BTreeSet<(String, String)>> = BTreeMap::new();
        for file in &files {
            let from = module_of(&src, file);
            if from.iter().any(|c| c == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(file).expect("source");
            let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for path in references(text) {
                let Some(to) = target(&from, &path, &modules) else { continue };
                let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
                if common == from.len() || common == to.len() {
                    continue; // the same module, or an ancestor and its descendant
                }
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .insert((from[common].clone(), to[common].clone()));
            }
        }
        let n: usize = edges.values().map(BTreeSet::len).sum();
        checked.push(format!(
            "{} ({} modules, {n} edges)",
            entry.file_name().to_string_lossy(),
            modules.len()
        ));
        for (parent, e) in &edges {
            if let Some(c) = cycle(e) {
                let under = if parent.is_empty() { "the crate root".to_string() } else { parent.join("::") };
                cycles.push(format!(
                    "{}: under {under}: {}",
                    entry.file_name().to_string_lossy(),
                    c.join(" -> ")
                ));
            }
        }
    }
    eprintln!("checked: {}", checked.join(", "));
    assert!(checked.len() >= 6, "{checked:?}");
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn no_source_file_is_too_long_to_read() {
    let mut long = Vec::new();
    for file in sources(&crates_dir()) {
        let lines = std::fs::read_to_string(&file).expect("source").lines().count();
        let core = file.components().any(|c| c.as_os_str() == "core")
            && file.to_string_lossy().contains("crates/server/src/core");
        let limit = if core { 600 } else { 1000 };
        if lines > limit {
            long.push(format!("{} has {lines} lines (at most {limit})", file.display()));
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}
