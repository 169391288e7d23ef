//! What the three corpora (parse, types, graph) share: every `<case>.mcl` of a directory of
//! `tests/lang/`, its outcome compared with the expectation file of the extension the
//! outcome names; with `MCL_BLESS=1` in the environment, missing or different expectations
//! are written instead (and an expectation of the other kind is removed).

use std::fs;
use std::path::{Path, PathBuf};

/// The cases of `tests/lang/<dir>`, sorted; at least `min` of them.
fn cases(dir: &str, min: usize) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lang").join(dir);
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mcl"))
        .collect();
    cases.sort();
    assert!(cases.len() >= min, "only {} cases in {}", cases.len(), dir.display());
    cases
}

/// Checks every case of `tests/lang/<dir>`: `outcome` gives the text and the extension of
/// the expectation it is compared with, one of `extensions`; `stage` names what gave it.
pub fn check_cases(
    dir: &str,
    min: usize,
    extensions: &[&str],
    stage: &str,
    outcome: impl Fn(&Path) -> (String, &'static str),
) {
    let mut failures = Vec::new();
    for case in cases(dir, min) {
        let (actual, ext) = outcome(&case);
        let expected_path = case.with_extension(ext);
        if std::env::var_os("MCL_BLESS").is_some() {
            for other in extensions.iter().filter(|e| **e != ext) {
                let _ = fs::remove_file(case.with_extension(other));
            }
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        match fs::read_to_string(&expected_path) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures
                .push(format!("{}:\n--- expected\n{expected}--- actual\n{actual}", expected_path.display())),
            Err(_) => {
                failures.push(format!("{}: missing; {stage} gives:\n{actual}", expected_path.display()))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A case's path as the corpus files name it: relative to the crate.
pub fn relative(case: &Path) -> &Path {
    case.strip_prefix(env!("CARGO_MANIFEST_DIR")).ok().and_then(|p| p.strip_prefix("/").ok()).unwrap_or(case)
}
