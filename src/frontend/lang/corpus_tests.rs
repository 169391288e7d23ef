//! The parse corpus: each `tests/lang/parse/<case>.mcl` with `<case>.ast` (the printed
//! program) or `<case>.err` (each error as `file:line:col: parse error: message`, one per line). With
//! `MCL_BLESS=1` in the environment, missing or different expectations are written instead.

use std::fs;
use std::path::Path;

use super::{SourceMap, parse_file};

/// What the parser makes of one case, in the form of its expectation file.
fn outcome(map: &SourceMap, file: usize) -> (String, &'static str) {
    let (program, errors) = parse_file(map, file);
    if errors.is_empty() {
        return (program.to_string(), "ast");
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("{}\n", e.short(map))).collect();
    (lines.concat(), "err")
}

#[test]
fn every_case_parses_as_expected() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang/parse");
    let mut cases: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mcl"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "only {} cases in {}", cases.len(), dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let mut map = SourceMap::new();
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let file = map.add(name, fs::read_to_string(case).unwrap());
        let (actual, ext) = outcome(&map, file);
        let expected_path = case.with_extension(ext);
        if std::env::var_os("MCL_BLESS").is_some() {
            let _ = fs::remove_file(case.with_extension(if ext == "ast" { "err" } else { "ast" }));
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures
                .push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", expected_path.display())),
            Err(_) => {
                failures.push(format!("{}: missing; the parser gives:\n{actual}", expected_path.display()))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
