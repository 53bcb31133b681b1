//! The layering of `src/`: every `crate::` path in a top-level module's code names a module
//! the graph in ARCHITECTURE.md allows it to use. The graph is read from the document, so
//! the map and the code cannot drift apart; comments do not count, code (tests included)
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The allowed graph: module → the modules it may use, from the block between the markers
/// in ARCHITECTURE.md (`module → a, b, c`, or `module →` for none).
fn allowed_graph(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let begin = architecture
        .find("<!-- layering:begin -->")
        .expect("ARCHITECTURE.md has the layering block");
    let end = architecture
        .find("<!-- layering:end -->")
        .expect("ARCHITECTURE.md closes the layering block");
    let mut graph = BTreeMap::new();
    for line in architecture[begin..end].lines() {
        let Some((module, uses)) = line.split_once('→') else {
            continue;
        };
        let module = module.trim().trim_start_matches('|').trim();
        let uses = uses
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(|u| u.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        assert!(
            graph.insert(module.to_string(), uses).is_none(),
            "{module} is twice in the graph"
        );
    }
    graph
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a Rust file without its comments (line, doc and block comments); string
/// literals are kept (a `crate::` inside one is rare and would be flagged, which is safe).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut depth = 0;
    while i < bytes.len() {
        if depth > 0 {
            if text[i..].starts_with("*/") {
                depth -= 1;
                i += 2;
            } else if text[i..].starts_with("/*") {
                depth += 1;
                i += 2;
            } else {
                i += 1;
            }
        } else if text[i..].starts_with("//") {
            i += text[i..].find('\n').unwrap_or(text.len() - i);
        } else if text[i..].starts_with("/*") {
            depth = 1;
            i += 2;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The top-level modules a file's code names through `crate::` (`crate::a::b`, and each
/// of `crate::{a::x, b}`).
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        // `dbhaul::crate::` does not exist; `$crate::` is a macro's own crate, also ours.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = code[at + "crate::".len()..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 1 => {
                        used.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => start = false,
                }
            }
        } else {
            used.insert(ident(rest));
        }
    }
    used.retain(|m| !m.is_empty() && m != "self");
    used
}

#[test]
fn every_module_uses_only_the_modules_the_architecture_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = allowed_graph(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();

    let mut modules = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().unwrap();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue; // the crate root declares every module
        }
        modules.insert(module.clone());
        let Some(allowed) = graph.get(&module) else {
            wrong.push(format!(
                "src/{module} is not in ARCHITECTURE.md's layering graph: add it"
            ));
            continue;
        };
        let code = strip_comments(&std::fs::read_to_string(file).unwrap());
        for used in used_modules(&code) {
            if used != module && !allowed.contains(&used) {
                wrong.push(format!(
                    "{} uses crate::{used}, which {module} may not (allowed: {})",
                    relative.display(),
                    allowed.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for listed in graph.keys() {
        if !modules.contains(listed) {
            wrong.push(format!(
                "ARCHITECTURE.md's layering graph names {listed}, which src/ does not have"
            ));
        }
    }
    assert!(wrong.is_empty(), "layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_allowed_graph_has_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let graph = allowed_graph(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    // Depth-first search from each module; a module met again on the current path closes a
    // cycle.
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|m| m == module) {
            panic!(
                "the layering graph has a cycle: {} → {module}",
                path[at..].join(" → ")
            );
        }
        if done.contains(module) {
            return;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            visit(graph, next, path, done);
        }
        path.pop();
        done.insert(module.to_string());
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(&graph, module, &mut Vec::new(), &mut done);
    }
}

#[test]
fn the_layering_check_sees_what_it_must() {
    let code = strip_comments(
        "use crate::model::X; // crate::api here is a comment\n\
         /* crate::controller /* nested */ crate::store */\n\
         use crate::{config::Job, source::{self, Source}};\n\
         fn f() { crate::warehouse::load(); let x = $crate::net::y; }\n\
         /// [`crate::cli`] in a doc comment",
    );
    let used: Vec<_> = used_modules(&code).into_iter().collect();
    assert_eq!(used, ["config", "model", "net", "source", "warehouse"]);
    let graph = allowed_graph(
        "<!-- layering:begin -->\n| model → |\n| config → model, net |\n<!-- layering:end -->",
    );
    assert_eq!(graph["model"].len(), 0);
    assert_eq!(
        graph["config"].iter().cloned().collect::<Vec<_>>(),
        ["model", "net"]
    );
}
