//! `backlog lab`: run the lab's plan with a progress bar; Ctrl-C stops cleanly and the
//! report covers what was done.

use anyhow::Context;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `backlog lab`.
#[derive(clap::Args)]
pub struct LabArgs {
    /// A short run for CI and the README (under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Where report.md, results.json and the plots go.
    #[arg(long, default_value = "lab-report")]
    out: PathBuf,
    /// Server threads (and nginx workers); default: one per core.
    #[arg(long)]
    threads: Option<usize>,
    /// Measured time per run (e.g. 5s).
    #[arg(long, value_parser = crate::parse_duration)]
    duration: Option<Duration>,
    /// Runs per figure (the median is reported).
    #[arg(long)]
    repeats: Option<usize>,
    /// Only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Only these targets (comma-separated names, e.g. single,pool,nginx): a target's whole
    /// name picks that target, the start of names picks every target it starts ("nginx", or
    /// "shared/" for shared's accept modes); a topology ("listeners=1 acceptors=2 readers=4
    /// workers=2") not in the plan is added as a target, the axum app in it when it follows
    /// "axum on backlog ", under io_uring when " io_uring" follows it.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Rewrite report.md and the plots from an earlier results.json instead of running.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Pin the servers to the first --threads CPUs and the load generator to the others
    /// (HttpArena's way); ignored when no CPU is left for the load.
    #[arg(long)]
    pin: bool,
}

/// Whether `--targets` entry `asked` picks the target called `name`: its whole name picks
/// it alone (so "shared" is one target, not every name starting with it); an entry that is
/// no target's whole name picks every target whose name starts with it.
fn picks(asked: &str, name: &str, names: &[String]) -> bool {
    if names.iter().any(|n| n == asked) {
        name == asked
    } else {
        name.starts_with(asked)
    }
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    if let Some(from) = &args.from {
        let raw = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        let results: lab::results::Results =
            serde_json::from_slice(&raw).context("parsing results.json")?;
        lab::report::write(&results, &args.out).context("writing the report")?;
        outln!("report: {}/report.md", args.out.display());
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut plan = lab::plan::Plan::new(args.quick, args.threads.unwrap_or(cores));
    if let Some(d) = args.duration {
        plan.duration = d;
    }
    if let Some(r) = args.repeats {
        plan.repeats = r.max(1);
    }
    if args.pin && !plan.pin() {
        say!(
            "backlog lab: --pin ignored: no CPU is left for the load beside {} server thread(s)",
            plan.threads
        );
    }
    if !args.scenarios.is_empty() {
        plan.scenarios.retain(|s| args.scenarios.contains(&s.name));
    }
    if !args.targets.is_empty() {
        for asked in &args.targets {
            plan.add_asked(asked)
                .map_err(|err| anyhow::anyhow!("--targets {asked}: {err}"))?;
        }
        let names: Vec<String> = plan.targets.iter().map(|t| t.name.clone()).collect();
        plan.targets
            .retain(|t| args.targets.iter().any(|a| picks(a, &t.name, &names)));
    }
    // The lab holds thousands of client sockets (idle-memory figure).
    sys::rlimit::raise_nofile();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    for t in &plan.targets {
        if let Some(why) = t.unavailable() {
            say!("backlog lab: {} skipped: {why}", t.name);
        }
    }
    say!(
        "backlog lab: {} run(s) over {} scenario(s) and {} target(s); expect about {:.0} s. Ctrl-C stops and writes what is done.",
        plan.runs(),
        plan.scenarios.len(),
        plan.targets.len(),
        plan.expected().as_secs_f64()
    );
    let bar = indicatif::ProgressBar::new(plan.runs() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let bin = std::env::current_exe().context("locating the backlog binary")?;
    let scratch = lab::run::scratch_dir();
    let progress = |scenario: &str, target: &str| {
        if scenario != "idle-memory" {
            bar.inc(1);
        }
        bar.set_message(format!("{scenario} / {target}"));
    };
    let results = lab::run::run(&plan, &bin, &scratch, &stop, &progress);
    bar.finish_and_clear();
    let _ = std::fs::remove_dir_all(&scratch);
    lab::report::write(&results, &args.out).context("writing the report")?;
    for s in &results.plan.scenarios {
        if results.measurements.iter().any(|m| m.scenario == s.name) {
            outln!("\n{}\n{}", s.name, lab::report::table(&results, &s.name));
        }
    }
    if results.measurements.is_empty() && results.plan.runs() > 0 && !results.interrupted {
        anyhow::bail!("no run succeeded: {}", results.notes.join("; "));
    }
    outln!(
        "report: {}/report.md ({} measurement(s){})",
        args.out.display(),
        results.measurements.len(),
        if results.interrupted {
            ", interrupted"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::picks;

    #[test]
    fn a_whole_name_picks_one_target_and_a_prefix_picks_a_family() {
        let names: Vec<String> = [
            "shared",
            "shared/mutex",
            "shared io_uring",
            "nginx (2 workers)",
        ]
        .map(String::from)
        .to_vec();
        let picked = |asked: &str| -> Vec<&str> {
            names
                .iter()
                .filter(|n| picks(asked, n, &names))
                .map(String::as_str)
                .collect()
        };
        assert_eq!(picked("shared"), ["shared"]);
        assert_eq!(picked("shared/"), ["shared/mutex"]);
        assert_eq!(picked("shared "), ["shared io_uring"]);
        assert_eq!(picked("nginx"), ["nginx (2 workers)"]);
        assert!(picked("node").is_empty());
    }
}
