//! The README's flag table and `--help` list the same flags, so neither
//! falls behind the other when a flag is added.

use std::collections::BTreeSet;
use std::process::Command;

/// `--flag` names at the start of `--help`'s option lines.
fn help_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .arg("--help")
        .output()
        .expect("run ssehub --help");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Option lines start with the flag; continuation lines with prose.
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// `--flag` names in the first column of the README's "Command line" table.
fn readme_flags() -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme
        .split("## Command line")
        .nth(1)
        .expect("README has a Command line section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| {
            l.trim_start_matches("| `")
                .split([' ', '`'])
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn readme_flag_table_matches_help() {
    let help = help_flags();
    let readme = readme_flags();
    assert!(
        help.contains("--tls-cert") && help.contains("--listen"),
        "{help:?}"
    );
    assert_eq!(readme, help, "README flag table (left) vs --help (right)");
}

/// The names in backticks in one row of the README's "Query parameters"
/// table, leaving out what is in parentheses (examples and notes).
fn readme_params(endpoint: &str) -> BTreeSet<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let section = readme
        .split("### Query parameters")
        .nth(1)
        .expect("README has a Query parameters section");
    let prefix = format!("| `{endpoint}` |");
    let row = section
        .lines()
        .take_while(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row for {endpoint} in the Query parameters table"));
    let cell = &row[prefix.len()..];
    let mut outside = String::new();
    let mut depth = 0usize;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn readme_query_parameter_table_matches_the_service() {
    use ssehub::service::{CLOSE_PARAMS, EVENTS_PARAMS, PUBLISH_PARAMS};
    for (endpoint, known) in [
        ("/events", EVENTS_PARAMS),
        ("/publish", PUBLISH_PARAMS),
        ("/close", CLOSE_PARAMS),
    ] {
        assert_eq!(
            readme_params(endpoint),
            set(known),
            "README's parameters for {endpoint} (left) vs src/service.rs (right)"
        );
    }
}
