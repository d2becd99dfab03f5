//! `make bench` runs every bench target Cargo.toml declares, so a new one
//! (as `redis` was) does not stay out of the figures.

use std::collections::BTreeSet;

fn read(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).expect(file)
}

/// The names of Cargo.toml's `[[bench]]` sections.
fn declared() -> BTreeSet<String> {
    let manifest = read("Cargo.toml");
    manifest
        .split("[[bench]]")
        .skip(1)
        .filter_map(|section| {
            let line = section.lines().find(|l| l.trim_start().starts_with("name"))?;
            Some(line.split('"').nth(1)?.to_string())
        })
        .collect()
}

/// The `--bench NAME` of each command in the Makefile's `bench` recipe.
fn in_make_bench() -> BTreeSet<String> {
    let makefile = read("Makefile");
    let recipe = makefile
        .split("\nbench:")
        .nth(1)
        .expect("the Makefile has a bench target");
    recipe
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('\t'))
        .filter_map(|l| {
            l.split("--bench ")
                .nth(1)?
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn make_bench_runs_every_bench_target() {
    let declared = declared();
    assert!(declared.contains("redis"), "{declared:?}");
    assert_eq!(in_make_bench(), declared);
}
