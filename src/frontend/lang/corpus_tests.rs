//! The parse corpus: each `tests/lang/parse/<case>.mcl` with `<case>.ast` (the printed
//! program) or `<case>.err` (each error as `file:line:col: parse error: message`, one per line). With
//! `MCL_BLESS=1` in the environment, missing or different expectations are written instead.

use std::fs;

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
    super::corpus::check_cases("parse", 30, &["ast", "err"], "the parser", |case| {
        let mut map = SourceMap::new();
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let file = map.add(name, fs::read_to_string(case).unwrap());
        outcome(&map, file)
    });
}
