//! What the runs say about shapes: the topologies side by side, the thread sweep ("how many
//! is too many"), and a table of which shape suits which workload — generated from the
//! measured figures, never written by hand.

use crate::plan::SWEEP_READERS;
use crate::plot::{draw_lines, legend, with_legend, LEGEND_WIDTH};
use crate::results::{Measurement, Results};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// Names of the report's sweep plots.
const SWEEP_PLOTS: [&str; 3] = ["sweep-cpu.svg", "sweep-p99.svg", "sweep-switches.svg"];

/// Whether a measurement is of one of our shapes (not an anchor, not the sweep).
fn is_shape(results: &Results, m: &Measurement) -> bool {
    !m.target.starts_with("sweep/")
        && results
            .plan
            .targets
            .iter()
            .any(|t| t.name == m.target && t.is_backlog() && !t.is_axum() && t.processes() == 1)
}

/// The target named `name`, if the plan has it.
fn target<'a>(results: &'a Results, name: &str) -> Option<&'a crate::target::Target> {
    results.plan.targets.iter().find(|t| t.name == name)
}

/// The markdown sections, and the sweep plots written under `out`.
pub fn sections(results: &Results, out: &Path) -> anyhow::Result<String> {
    let mut md = String::new();
    shapes_table(results, &mut md);
    sweep(results, out, &mut md)?;
    recommend(results, &mut md);
    Ok(md)
}

/// The cells both tables show: req/s, p99 ms, CPU µs/req, voluntary and involuntary switches
/// per request.
fn figures(m: &Measurement) -> String {
    format!(
        "{:.0} | {:.2} | {:.1} | {:.3} | {:.3}",
        m.rps,
        m.p99_us as f64 / 1000.0,
        m.server_cpu_us,
        m.voluntary_switches,
        m.involuntary_switches
    )
}

/// Every shape in the workloads that tell them apart.
fn shapes_table(results: &Results, md: &mut String) {
    let rows: Vec<&Measurement> = results
        .measurements
        .iter()
        .filter(|m| is_shape(results, m))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Topologies\n\nEvery backlog shape (one process) in each workload: CPU per request, p99, and context switches per request (voluntary: a thread blocking with nothing to do; involuntary: a thread preempted).\n");
    let _ = writeln!(md, "| workload | shape | topology | req/s | p99 ms | CPU µs/req | vol. switches/req | invol. switches/req |\n|---|---|---|---:|---:|---:|---:|---:|");
    for m in rows {
        let topology = results
            .plan
            .targets
            .iter()
            .find(|t| t.name == m.target)
            .and_then(|t| t.topology(results.plan.threads))
            .map(|t| t.to_string())
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | `{topology}` | {} |",
            m.scenario,
            m.target,
            figures(m)
        );
    }
    md.push('\n');
}

/// The sweep's measurements of `kind` in `scenario`, as (readers, measurement).
fn sweep_points<'a>(
    results: &'a Results,
    kind: &str,
    scenario: &str,
) -> Vec<(usize, &'a Measurement)> {
    let prefix = format!("sweep/{kind}/");
    let mut points: Vec<(usize, &Measurement)> = results
        .measurements
        .iter()
        .filter(|m| m.scenario == scenario)
        .filter_map(|m| Some((m.target.strip_prefix(&prefix)?.parse().ok()?, m)))
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

fn sweep(results: &Results, out: &Path, md: &mut String) -> anyhow::Result<()> {
    let kinds = ["reuseport", "dispatch", "hybrid"];
    if kinds
        .iter()
        .all(|k| sweep_points(results, k, "mixed").is_empty())
    {
        return Ok(());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(md, "## How many threads is too many\n\nReaders {SWEEP_READERS:?} on a {cores}-core machine: `reuseport` (a socket and a loop per reader), `dispatch` (one acceptor), `hybrid` (two acceptors, readers, a two-worker pool). Past the cores, involuntary switches climb and CPU per request with them.\n");
    for scenario in ["keepalive-64", "mixed"] {
        let _ = writeln!(md, "### {scenario}\n\n| shape | readers | req/s | p99 ms | CPU µs/req | vol. switches/req | invol. switches/req |\n|---|---:|---:|---:|---:|---:|---:|");
        for kind in kinds {
            for (n, m) in sweep_points(results, kind, scenario) {
                let _ = writeln!(md, "| {kind} | {n} | {} |", figures(m));
            }
        }
        md.push('\n');
    }
    let figure = |f: fn(&Measurement) -> f64| {
        kinds
            .iter()
            .map(|k| {
                let pts = sweep_points(results, k, "mixed")
                    .into_iter()
                    .map(|(n, m)| (n as f64, f(m)))
                    .collect::<Vec<_>>();
                (k.to_string(), pts)
            })
            .collect::<Vec<_>>()
    };
    sweep_plot(
        &out.join(SWEEP_PLOTS[0]),
        "mixed: server CPU µs per request by readers",
        figure(|m| m.server_cpu_us),
    )?;
    sweep_plot(
        &out.join(SWEEP_PLOTS[1]),
        "mixed: p99 ms by readers",
        figure(|m| m.p99_us as f64 / 1000.0),
    )?;
    sweep_plot(
        &out.join(SWEEP_PLOTS[2]),
        "mixed: involuntary context switches per request by readers",
        figure(|m| m.involuntary_switches),
    )?;
    let images: Vec<String> = SWEEP_PLOTS.iter().map(|f| format!("![{f}]({f})")).collect();
    let _ = writeln!(md, "{}\n", images.join(" "));
    Ok(())
}

fn sweep_plot(
    path: &Path,
    title: &str,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (640 + LEGEND_WIDTH, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, key) = with_legend(&root);
    let x_max = SWEEP_READERS.iter().copied().max().unwrap_or(1) as f64;
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d((1.0..x_max).log_scale(), 0.0..y_max)?;
    chart.configure_mesh().x_desc("readers").draw()?;
    let names = draw_lines(&mut chart, series)?;
    legend(&key, &names)?;
    root.present()?;
    Ok(())
}

/// A figure where lower is better.
type Key = fn(&Measurement) -> f64;
/// CPU per request, p99, and requests/s (negated: more is better).
const CPU: Key = |m| m.server_cpu_us;
const P99: Key = |m| m.p99_us as f64;
const RPS: Key = |m| -m.rps;

/// The row with the lowest `key`.
fn best_of<'a>(rows: &[&'a Measurement], key: Key) -> Option<&'a Measurement> {
    rows.iter()
        .min_by(|a, b| key(a).total_cmp(&key(b)))
        .copied()
}

/// For each workload, the shape that did best on each figure — computed from this run.
fn recommend(results: &Results, md: &mut String) {
    let mut lines = Vec::new();
    for s in &results.plan.scenarios {
        let rows: Vec<&Measurement> = results
            .measurements
            .iter()
            .filter(|m| m.scenario == s.name && is_shape(results, m) && m.rps > 0.0)
            .collect();
        if rows.len() < 2 {
            continue;
        }
        let best = |key| best_of(&rows, key).map(|m| (m.target.clone(), key(m)));
        let (Some(cpu), Some(p99), Some(rps)) = (best(CPU), best(P99), best(RPS)) else {
            continue;
        };
        lines.push(format!(
            "| {} | {} ({:.1} µs) | {} ({:.2} ms) | {} ({:.0}) |",
            s.name,
            cpu.0,
            cpu.1,
            p99.0,
            p99.1 / 1000.0,
            rps.0,
            -rps.1
        ));
    }
    lines.extend(axum_lines(results));
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Which shape for which workload\n\nGenerated from this run's figures (backlog shapes in one process): the least CPU per request is the most work per core when the machine is full; the lowest p99 is what a latency budget sees; the most requests/s is what one client saw here (⚑ rows measured the client).\n\n| workload | least CPU per request | lowest p99 | most requests/s |\n|---|---|---|---|");
    for l in lines {
        let _ = writeln!(md, "{l}");
    }
    md.push('\n');
}

/// For each workload the axum app ran in: the backlog shape that served it best on each
/// figure, as a ratio to the same app on `axum::serve`.
fn axum_lines(results: &Results) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &results.plan.scenarios {
        let rows: Vec<&Measurement> = results
            .measurements
            .iter()
            .filter(|m| m.scenario == s.name && m.rps > 0.0)
            .filter(|m| target(results, &m.target).is_some_and(|t| t.is_axum()))
            .collect();
        let is_serve =
            |m: &&&Measurement| target(results, &m.target).is_some_and(|t| !t.is_backlog());
        let Some(serve) = rows.iter().find(is_serve) else {
            continue;
        };
        let ours: Vec<&Measurement> = rows.iter().filter(|m| !is_serve(m)).copied().collect();
        let best =
            |key: Key| best_of(&ours, key).map(|m| (m.target.clone(), key(m), key(m) / key(serve)));
        let (Some(cpu), Some(p99), Some(rps)) = (best(CPU), best(P99), best(RPS)) else {
            continue;
        };
        lines.push(format!(
            "| {}, an axum app | {} ({:.1} µs, {:.2}× axum::serve) | {} ({:.2} ms, {:.2}×) | {} ({:.0}, {:.2}×) |",
            s.name,
            cpu.0,
            cpu.1,
            cpu.2,
            p99.0,
            p99.1 / 1000.0,
            p99.2,
            rps.0,
            -rps.1,
            rps.2
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use std::collections::BTreeMap;

    fn measured(scenario: &str, target: &str, rps: f64, cpu_us: f64, p99_us: u64) -> Measurement {
        Measurement {
            scenario: scenario.into(),
            target: target.into(),
            rps,
            rps_runs: vec![rps],
            p50_us: p99_us / 2,
            p90_us: p99_us,
            p99_us,
            p99_runs: vec![p99_us],
            p999_us: p99_us,
            max_us: p99_us,
            cdf: vec![],
            errors: BTreeMap::new(),
            server_cpu_us: cpu_us,
            server_sys_us: cpu_us / 2.0,
            client_cpu_us: 1.0,
            client_limited: false,
            rss_kib: 1,
            accept_queue_peak: None,
            listen_overflows: 0,
            overflows_runs: vec![],
            syn_recv_peak: 0,
            tcp_ext: BTreeMap::new(),
            queues: vec![],
            queue_waits: None,
            waits_over_time: vec![],
            per_thread: vec![],
            voluntary_switches: 0.2,
            involuntary_switches: cpu_us / 100.0,
            by_request: vec![],
        }
    }

    #[test]
    fn the_sections_come_from_the_figures() {
        let plan = Plan::new(false, 2);
        let mut measurements = vec![
            measured("mixed", "single", 50_000.0, 12.0, 9_000),
            measured("mixed", "hybrid 1×3×5×8", 40_000.0, 15.0, 2_000),
            measured("mixed", "reuseport", 90_000.0, 9.0, 4_000),
            measured("mixed", "nginx (2 workers)", 99_000.0, 1.0, 100),
            measured(
                "mixed",
                "axum (axum::serve, 2 threads)",
                30_000.0,
                20.0,
                8_000,
            ),
            measured("mixed", "axum on backlog reuseport", 45_000.0, 14.0, 6_000),
            measured("mixed", "axum on backlog pool", 35_000.0, 16.0, 4_000),
        ];
        for (i, n) in SWEEP_READERS.iter().enumerate() {
            measurements.push(measured(
                "mixed",
                &format!("sweep/reuseport/{n}"),
                80_000.0,
                9.0 + i as f64,
                3_000,
            ));
        }
        let results = Results {
            plan,
            measurements,
            idle: vec![],
            syscalls: vec![],
            interrupted: false,
            wall_s: 1.0,
            notes: vec![],
        };
        let dir = testkit::scratch("lab-shapes-test-");
        let md = sections(&results, dir.path()).unwrap();
        assert!(md.contains("## Topologies"), "{md}");
        assert!(
            md.contains("`listeners=1 acceptors=3 readers=5 workers=8"),
            "{md}"
        );
        assert!(md.contains("| reuseport | 16 |"), "{md}");
        for plot in SWEEP_PLOTS {
            assert!(dir.path().join(plot).exists(), "{plot}");
        }
        // Anchors are not shapes: the table picks among backlog's.
        assert!(
            md.contains(
                "| mixed | reuseport (9.0 µs) | hybrid 1×3×5×8 (2.00 ms) | reuseport (90000) |"
            ),
            "{md}"
        );
        // The axum app is not a shape: its own line, against axum::serve.
        assert!(
            md.contains(
                "| mixed, an axum app | axum on backlog reuseport (14.0 µs, 0.70× axum::serve) | axum on backlog pool (4.00 ms, 0.50×) | axum on backlog reuseport (45000, 1.50×) |"
            ),
            "{md}"
        );
    }
}
