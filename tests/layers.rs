//! The module graph reads like the data flow: a module imports only modules
//! of the layers below its own, and modules of one layer never import each
//! other (sources and sinks meet at the event type, not in each other).
//!
//! The layer order lives in ONE place, the `## Layers` list of `src/lib.rs`'s
//! `//!` doc; this test parses it, reads every file under `src/` (as
//! `cargo modules` would, but with nothing to install) and fails on any
//! `crate::module` reference that goes sideways or up. Test code
//! (`#[cfg(test)]` items and the files they declare) may import anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Edges that break the layer order and are still to be removed, each with
/// why it is still there. The test fails when one of them disappears, so the
/// list only ever shrinks.
/// Empty: every layer is one-way. Add an entry only with a reason and a plan.
const STILL_TO_REMOVE: &[(&str, &str, &str)] = &[];

/// `src/` of this crate, or the tree `REDOPS_LAYERS_SRC` names: to show
/// what the check says of another checkout (an older commit, a branch).
fn src_dir() -> PathBuf {
    match std::env::var_os("REDOPS_LAYERS_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

/// The layers of `src/lib.rs`, bottom first: the `[`module`]`s named on
/// each numbered line of the `## Layers` section.
fn layers(lib_rs: &str) -> Vec<(String, Vec<String>)> {
    let doc: Vec<&str> = lib_rs
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!"))
        .collect();
    let start = doc
        .iter()
        .position(|l| l.trim() == "## Layers")
        .expect("src/lib.rs has no `## Layers` section");
    let mut layers: Vec<(String, Vec<String>)> = Vec::new();
    for line in &doc[start + 1..] {
        if line.trim_start().starts_with("## ") {
            break;
        }
        // Only the numbered line names modules; the lines below it describe them.
        let trimmed = line.trim_start();
        let Some((number, text)) = trimmed.split_once(". ") else {
            continue;
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let name = text.split(':').next().unwrap_or(text).trim().to_owned();
        layers.push((name, Vec::new()));
        let modules = &mut layers.last_mut().unwrap().1;
        let mut rest = text;
        while let Some(open) = rest.find("[`") {
            rest = &rest[open + 2..];
            let Some(close) = rest.find("`]") else { break };
            let name = &rest[..close];
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                modules.push(name.to_owned());
            }
            rest = &rest[close + 2..];
        }
    }
    layers
}

/// The `pub mod` list of `src/lib.rs`.
fn declared_modules(lib_rs: &str) -> BTreeSet<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Marks each byte of `text`: true where it is code, false inside comments.
/// String and char literals count as code (a serde `with = "crate::..."` is
/// a dependency), but their braces and quotes are not structure, so a second
/// mask says which bytes are structural.
fn masks(text: &str) -> (Vec<bool>, Vec<bool>) {
    let b = text.as_bytes();
    let mut code = vec![true; b.len()];
    let mut structural = vec![true; b.len()];
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                code[i] = false;
                structural[i] = false;
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    code[i] = false;
                    structural[i] = false;
                    i += 1;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    code[i] = false;
                    structural[i] = false;
                    i += 1;
                }
                code[i] = false;
                structural[i] = false;
                i += 1;
                if depth == 0 {
                    break;
                }
            }
        } else if b[i] == b'r' && (b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"')) && !ident_byte(b, i) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                i += 1;
                continue;
            }
            let end = {
                let mut closing = vec![b'"'];
                closing.extend(std::iter::repeat_n(b'#', hashes));
                let from = j + 1;
                b[from..]
                    .windows(closing.len())
                    .position(|w| w == closing.as_slice())
                    .map(|p| from + p + closing.len())
            }
            .unwrap_or(b.len());
            structural[i..end].iter_mut().for_each(|s| *s = false);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            structural[i..end].iter_mut().for_each(|s| *s = false);
            i = end;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'); anything else is a lifetime.
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&c| c == b'\'').map(|p| i + 2 + p + 1)
            } else {
                let len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + len) == Some(&b'\'')).then_some(i + 2 + len)
            };
            match end {
                Some(end) => {
                    structural[i..end].iter_mut().for_each(|s| *s = false);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    (code, structural)
}

fn ident_byte(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// What one file imports of the crate's top-level modules, leaving out its
/// `#[cfg(test)]` items, and the `#[cfg(test)] mod name;` files it declares.
fn scan(text: &str) -> (BTreeSet<String>, Vec<String>) {
    let (code, structural) = masks(text);
    let b = text.as_bytes();
    let mut keep = code.clone();
    let mut test_modules = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]").map(|p| from + p) {
        from = at + 1;
        if !code[at] {
            continue;
        }
        // The item runs to the first `;` outside braces or to the `}` that
        // closes its first `{`.
        let mut depth = 0usize;
        let mut end = b.len();
        let mut i = at + "#[cfg(test)]".len();
        while i < b.len() {
            if structural[i] {
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i + 1;
                            break;
                        }
                    }
                    b';' if depth == 0 => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        let item = text[at + "#[cfg(test)]".len()..end].trim();
        if let Some(name) = item.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
            test_modules.push(name.trim().to_owned());
        }
        keep[at..end].iter_mut().for_each(|k| *k = false);
    }
    let kept: String = text
        .char_indices()
        .map(|(i, c)| if keep[i] { c } else { ' ' })
        .collect();
    let mut imports = BTreeSet::new();
    let mut rest = kept.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut part = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => {
                        imports.insert(first_ident(&part));
                        part.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth >= 1 {
                    part.push(c);
                }
            }
            imports.insert(first_ident(&part));
        } else {
            imports.insert(first_ident(rest));
        }
    }
    imports.remove("");
    (imports, test_modules)
}

fn first_ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every non-test `.rs` file of one top-level module.
fn module_files(src: &Path, module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    let dir = src.join(module);
    if dir.is_dir() {
        walk(&dir, &mut files);
    }
    files
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Module `from` imports `to`, in these files.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

fn edges(src: &Path, modules: &BTreeSet<String>) -> Edges {
    let mut edges = Edges::new();
    for module in modules {
        let files = module_files(src, module);
        // Files declared by `#[cfg(test)] mod name;` and everything below them.
        let mut test_only: Vec<PathBuf> = Vec::new();
        for file in &files {
            let text = fs::read_to_string(file).unwrap();
            let (imports, test_modules) = scan(&text);
            let own_dir = match file.file_name().and_then(|n| n.to_str()) {
                Some("mod.rs") => file.parent().unwrap().to_path_buf(),
                _ => file.with_extension(""),
            };
            for name in test_modules {
                test_only.push(own_dir.join(format!("{name}.rs")));
                test_only.push(own_dir.join(&name));
            }
            let is_test = |f: &Path| test_only.iter().any(|t| f == t || f.starts_with(t));
            if is_test(file) {
                continue;
            }
            for to in imports.into_iter().filter(|to| modules.contains(to) && to != module) {
                let rel = file.strip_prefix(src).unwrap().display().to_string();
                edges.entry((module.clone(), to)).or_default().insert(rel);
            }
        }
        // A test file can be read before the file that declares it; drop it now.
        for ((from, _), files) in edges.iter_mut() {
            if from == module {
                files.retain(|f| !test_only.iter().any(|t| src.join(f).starts_with(t)));
            }
        }
        edges.retain(|_, files| !files.is_empty());
    }
    edges
}

#[test]
fn every_module_sits_in_exactly_one_layer() {
    let lib_rs = fs::read_to_string(src_dir().join("lib.rs")).unwrap();
    let layers = layers(&lib_rs);
    assert!(
        layers.len() >= 3,
        "src/lib.rs's `## Layers` list is missing or unreadable: {layers:?}"
    );
    let mut seen = BTreeMap::new();
    for (name, modules) in &layers {
        assert!(!modules.is_empty(), "layer `{name}` names no module");
        for module in modules {
            if let Some(other) = seen.insert(module.clone(), name.clone()) {
                panic!("`{module}` is in two layers, `{other}` and `{name}`");
            }
        }
    }
    let declared = declared_modules(&lib_rs);
    let placed: BTreeSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = declared.difference(&placed).collect();
    let unknown: Vec<_> = placed.difference(&declared).collect();
    assert!(
        missing.is_empty(),
        "modules in no layer of src/lib.rs's `## Layers`: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "src/lib.rs's `## Layers` names modules that do not exist: {unknown:?}"
    );
}

#[test]
fn no_module_imports_its_own_layer_or_one_above() {
    let src = src_dir();
    let lib_rs = fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut rank = BTreeMap::new();
    for (i, (_, modules)) in layers(&lib_rs).iter().enumerate() {
        for module in modules {
            rank.insert(module.clone(), i);
        }
    }
    let modules = declared_modules(&lib_rs);
    let edges = edges(&src, &modules);
    let allowed: BTreeSet<(String, String)> = STILL_TO_REMOVE
        .iter()
        .map(|(from, to, _)| (from.to_string(), to.to_string()))
        .collect();
    let mut wrong = Vec::new();
    let mut gone = Vec::new();
    for ((from, to), files) in &edges {
        let (Some(f), Some(t)) = (rank.get(from), rank.get(to)) else {
            continue;
        };
        let ok = t < f;
        let key = (from.clone(), to.clone());
        if !ok && !allowed.contains(&key) {
            let how = if f == t { "its own layer" } else { "a higher layer" };
            wrong.push(format!(
                "{from} imports {to} ({how}) in {}",
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for key in &allowed {
        let broken = edges.contains_key(key) && rank.get(&key.1) >= rank.get(&key.0);
        if !broken {
            gone.push(format!("{} -> {}", key.0, key.1));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layer order of src/lib.rs (move the shared type down a layer, or the code up):\n  {}",
        wrong.join("\n  ")
    );
    assert!(
        gone.is_empty(),
        "STILL_TO_REMOVE lists edges that no longer break the layers; delete them: {gone:?}"
    );
}

#[test]
fn the_scanner_sees_grouped_imports_and_skips_tests_and_comments() {
    let text = r#"
use crate::{alpha::{A, B}, beta};
// use crate::gamma;
/* crate::delta */
#[serde(with = "crate::epsilon::option")]
const URL: &str = "redis://{host}";
#[cfg(test)]
mod tests {
    use crate::zeta;
    fn f() { let _ = '{'; }
}
#[cfg(test)]
mod helpers;
fn g() -> crate::eta::T { todo!() }
"#;
    let (imports, test_modules) = scan(text);
    let imports: Vec<_> = imports.into_iter().collect();
    assert_eq!(imports, ["alpha", "beta", "epsilon", "eta"]);
    assert_eq!(test_modules, ["helpers"]);
}
