//! The report: rows of figures against their targets, notes, and the harness
//! failures that make the exit status non-zero.

use super::floor::{Basis, Floor};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    Info,
}

pub struct Row {
    pub scenario: String,
    pub figure: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Things seen that are worth a look (server log warnings, cut streams).
    pub notes: Vec<String>,
    /// Harness failures: these make the exit status non-zero.
    pub failures: Vec<String>,
    /// Deliveries per CPU-second of `fanout`, for the `h2` comparison.
    pub fanout_per_cpu_s: Option<f64>,
    /// The floor measured at the start of this run: every CPU figure is
    /// also given as a ratio to it.
    pub floor: Option<Floor>,
    /// Compare performance figures with their targets (not at the small
    /// size, whose samples are too small to mean anything).
    pub judge: bool,
}

impl Report {
    pub fn info(&mut self, scenario: &str, figure: &str, value: String) {
        self.row(scenario, figure, value, String::new(), Verdict::Info);
    }

    pub fn row(&mut self, scenario: &str, figure: &str, value: String, target: String, verdict: Verdict) {
        self.rows.push(Row {
            scenario: scenario.to_string(),
            figure: figure.to_string(),
            value,
            target,
            verdict,
        });
    }

    /// A figure with an upper bound.
    pub fn at_most(&mut self, scenario: &str, figure: &str, value: String, v: f64, limit: f64, target: &str) {
        let verdict = if !self.judge {
            Verdict::Info
        } else if v <= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        self.row(scenario, figure, value, target.to_string(), verdict);
    }

    /// A figure with a lower bound.
    pub fn at_least(
        &mut self,
        scenario: &str,
        figure: &str,
        value: String,
        v: f64,
        limit: f64,
        target: &str,
    ) {
        let verdict = if !self.judge {
            Verdict::Info
        } else if v >= limit {
            Verdict::Met
        } else {
            Verdict::Missed
        };
        self.row(scenario, figure, value, target.to_string(), verdict);
    }

    /// A CPU figure: `us` µs per unit, with its ratio to the floor of
    /// `basis`, judged against `limit` (a ratio) when there is one and the
    /// sample is big enough (`enough`). `detail` follows the figure.
    #[allow(clippy::too_many_arguments)]
    pub fn cpu(
        &mut self,
        scenario: &str,
        figure: &str,
        us: f64,
        detail: &str,
        basis: Basis,
        limit: Option<f64>,
        enough: bool,
    ) {
        let Some(floor) = self.floor.clone() else {
            let value = format!("{us:.3} µs ({detail}; no floor measured)");
            self.info(scenario, figure, value);
            return;
        };
        let f = basis.us(&floor);
        let ratio = us / f;
        let mut value = format!("{us:.3} µs = {ratio:.2} × {} ({detail})", basis.label());
        if !enough {
            value.push_str(": too small a sample to judge");
        }
        match limit {
            Some(l) => {
                let target = format!("≤ {l} × {} = {:.2} µs", basis.label(), l * f);
                if enough {
                    self.at_most(scenario, figure, value, ratio, l, &target);
                } else {
                    self.row(scenario, figure, value, target, Verdict::Info);
                }
            }
            None => self.info(scenario, figure, value),
        }
    }

    pub fn note(&mut self, scenario: &str, text: String) {
        println!("[{scenario}] note: {text}");
        self.notes.push(format!("{scenario}: {text}"));
    }

    pub fn fail(&mut self, scenario: &str, text: String) {
        println!("[{scenario}] HARNESS FAILURE: {text}");
        self.failures.push(format!("{scenario}: {text}"));
    }

    pub fn print(&self, title: &str) {
        let headers = ["scenario", "figure", "value", "target", ""];
        let mut widths = headers.map(str::len);
        for r in &self.rows {
            widths[0] = widths[0].max(r.scenario.chars().count());
            widths[1] = widths[1].max(r.figure.chars().count());
            widths[2] = widths[2].max(r.value.chars().count());
            widths[3] = widths[3].max(r.target.chars().count());
        }
        let total: usize = widths.iter().sum::<usize>() + 4 * 3 + 4;
        println!();
        println!("{title}");
        println!("{}", "=".repeat(total));
        let line = |c: [&str; 5]| {
            println!(
                "{:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} | {}",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
        };
        line(headers);
        println!("{}", "-".repeat(total));
        let mut last = "";
        for r in &self.rows {
            if !last.is_empty() && last != r.scenario {
                println!("{}", "-".repeat(total));
            }
            last = &r.scenario;
            let verdict = match r.verdict {
                Verdict::Met => "ok",
                Verdict::Missed => "MISS",
                Verdict::Info => "",
            };
            line([&r.scenario, &r.figure, &r.value, &r.target, verdict]);
        }
        println!("{}", "=".repeat(total));
        let met = self.rows.iter().filter(|r| r.verdict == Verdict::Met).count();
        let missed = self.rows.iter().filter(|r| r.verdict == Verdict::Missed).count();
        if self.judge {
            println!("targets: {met} met, {missed} missed (informational; nothing is asserted)");
        } else {
            println!(
                "size small: performance figures are not compared with their targets; \
                 correctness rows: {met} met, {missed} missed"
            );
        }
        if !self.notes.is_empty() {
            println!();
            println!("notes:");
            for n in &self.notes {
                println!("  - {n}");
            }
        }
        if !self.failures.is_empty() {
            println!();
            println!("HARNESS FAILURES:");
            for f in &self.failures {
                println!("  - {f}");
            }
        }
    }
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
