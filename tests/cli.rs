//! The command line, as a person runs it: the real binary, its output and
//! exit status.

use std::process::Command;

fn ssehub(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(args)
        .env_remove("SSEHUB_LISTEN")
        .output()
        .expect("run ssehub");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_flag_with_its_default() {
    let (code, out, _) = ssehub(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--listen ADDR",
        "--h2-max-concurrent-streams N",
        "--max-subscriber-backlog BYTES",
        "--history N",
        "--retry DUR",
        "--retry-jitter DUR",
        "--heartbeat DUR",
        "--max-event-bytes N",
        "--cors-origin ORIGIN",
        "--publish-token TOKEN",
        "--publish-token-file FILE",
        "--h2-keepalive DUR",
        "--h2-keepalive-timeout DUR",
        "--header-timeout DUR",
        "--max-connections N",
        "--shutdown-grace DUR",
        "--max-stream-lifetime DUR",
        "--listen-backlog N",
        "--access-log on|off",
        "--log-format text|json",
    ] {
        assert!(out.contains(flag), "--help lacks {flag}");
    }
    assert!(out.contains("[default: 127.0.0.1:8080]"));
    assert!(
        out.contains("SSEHUB_"),
        "--help should mention the environment variables"
    );
}

#[test]
fn version_prints_the_version() {
    let (code, out, _) = ssehub(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("ssehub {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_mistake_exits_2_and_says_what_to_type() {
    let (code, out, err) = ssehub(&["--heartbeat", "15"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("--heartbeat") && err.contains("15s"), "{err}");
    let (code, _, err) = ssehub(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(err.contains("--help"), "{err}");
}

/// The flags of the README's command-line table, as written there
/// (`--listen ADDR`, `--access-log on|off`).
fn readme_flags() -> Vec<String> {
    let readme = include_str!("../README.md");
    let table = readme
        .split("\n## Command line\n")
        .nth(1)
        .expect("README has a Command line section");
    table
        .lines()
        .filter_map(|l| l.strip_prefix("| `--"))
        .map(|rest| format!("--{}", rest.split('`').next().unwrap_or("")))
        .map(|flag| flag.replace("\\|", "|"))
        .collect()
}

#[test]
fn readme_flag_table_matches_help() {
    let (_, help, _) = ssehub(&["--help"]);
    let in_readme = readme_flags();
    assert!(in_readme.len() > 10, "README table not found: {in_readme:?}");
    for flag in &in_readme {
        assert!(help.contains(flag.as_str()), "README's {flag} is not in --help");
    }
    // Every option line of --help (`    --name VALUE   text`) is in the README.
    for line in help.lines() {
        let line = line.trim_start();
        if !line.starts_with("--") {
            continue;
        }
        let spec: Vec<&str> = line.split_whitespace().take(2).collect();
        let flag = spec.join(" ");
        assert!(
            in_readme.contains(&flag),
            "--help's {flag} is missing from the README's table"
        );
    }
}
