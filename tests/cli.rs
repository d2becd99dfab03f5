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
        "--jwt-key KEY",
        "--jwt-key-file FILE",
        "--subscriber-jwt-key KEY",
        "--subscriber-jwt-key-file FILE",
        "--publisher-jwt-key KEY",
        "--publisher-jwt-key-file FILE",
        "--jwt-alg ALG",
        "--jwt-issuer ISS",
        "--jwt-audience AUD",
        "--jwt-cookie NAME",
        "--anonymous",
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

#[test]
fn the_readme_flag_table_and_help_list_the_same_flags() {
    let (_, help, _) = ssehub(&["--help"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let flags = |text: &str, line_start: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix(line_start))
            .filter_map(|rest| rest.strip_prefix("--"))
            .map(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                format!("--{name}")
            })
            .collect()
    };
    // README rows look like "| `--flag ARG` | ...", --help lines like "    --flag ARG".
    let in_readme = flags(&readme, "| `");
    let in_help = flags(&help, "");
    let in_help: std::collections::BTreeSet<String> = in_help
        .into_iter()
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    let in_readme: std::collections::BTreeSet<String> = in_readme
        .into_iter()
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    assert_eq!(in_readme, in_help, "README flag table vs --help");
}

#[test]
fn a_key_path_given_as_the_key_itself_exits_2_pointing_at_the_file_flag() {
    let (code, out, err) = ssehub(&[
        "--jwt-key",
        "/etc/ssehub/jwt-public.pem",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--jwt-key-file FILE"), "{err}");
    assert!(!err.contains("jwt-public.pem"), "the value is not echoed: {err}");
}
