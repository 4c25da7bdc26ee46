//! The lab's output: `results.json` (every raw figure), `report.md` (tables a person reads
//! at a glance, every figure also as a ratio to nginx) and SVG plots (plotters):
//! requests/s per target per scenario, latency distributions, per-thread balance.

use crate::plot::{draw_lines, legend, nothing_to_show, with_legend, LEGEND_WIDTH};
use crate::results::{Measurement, Results};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// Write everything under `out`.
pub fn write(results: &Results, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(results)?,
    )?;
    let mut plots = Vec::new();
    for s in &results.plan.scenarios {
        let rows: Vec<&Measurement> = results
            .measurements
            .iter()
            .filter(|m| m.scenario == s.name)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let rps_file = format!("rps-{}.svg", s.name);
        bars(
            &out.join(&rps_file),
            &format!("{}: requests/s", s.name),
            &rows
                .iter()
                .map(|m| (m.target.clone(), m.rps))
                .collect::<Vec<_>>(),
        )?;
        let cdf_file = format!("latency-{}.svg", s.name);
        cdf(
            &out.join(&cdf_file),
            &format!("{}: latency by percentile", s.name),
            &rows,
        )?;
        let mut files = vec![rps_file, cdf_file];
        if s.backlog.is_some() || s.flood.is_some() {
            let file = format!("queues-{}.svg", s.name);
            queues_plot(&out.join(&file), &s.name, &rows)?;
            files.push(file);
        }
        let timed: Vec<&Measurement> = rows
            .iter()
            .copied()
            .filter(|m| !m.waits_over_time.is_empty())
            .collect();
        if s.plots_waits() && !timed.is_empty() {
            let file = format!("waits-{}.svg", s.name);
            waits_plot(&out.join(&file), &s.name, &timed)?;
            files.push(file);
        }
        plots.push((s.name.clone(), files));
    }
    let balance: Vec<&Measurement> = results
        .measurements
        .iter()
        .filter(|m| m.scenario == "mixed" && !m.per_thread.is_empty())
        .collect();
    if !balance.is_empty() {
        balance_plot(&out.join("balance-mixed.svg"), &balance)?;
    }
    let shapes = crate::shapes::sections(results, out)?;
    std::fs::write(
        out.join("report.md"),
        markdown(results, &plots, !balance.is_empty(), &shapes),
    )?;
    Ok(())
}

fn nginx<'a>(rows: &[&'a Measurement]) -> Option<&'a Measurement> {
    rows.iter().copied().find(|m| m.target.starts_with("nginx"))
}

/// The epoll floor: the least CPU per request any server here can spend.
fn floor<'a>(rows: &[&'a Measurement]) -> Option<&'a Measurement> {
    rows.iter()
        .copied()
        .find(|m| m.target == "floor (epoll)" && m.rps >= 1.0)
}

fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{:.2}×", value / b),
        _ => "—".into(),
    }
}

/// A per-request figure, or "—" when no request was answered (it would divide by zero).
fn per_request(m: &Measurement, us: f64) -> String {
    if m.rps < 1.0 {
        "—".into()
    } else {
        format!("{us:.1}")
    }
}

/// The error count, with its kinds when there are any.
fn errors(m: &Measurement) -> String {
    let total: u64 = m.errors.values().sum();
    if total == 0 {
        return "0".into();
    }
    let kinds: Vec<String> = m.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} ({})", kinds.join(", "))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// Queue waits as `p50/p99` ms for the accept and the receive queue; `n/a` for servers that
/// cannot tell (nginx, Node, hyper: none of them exposes when the kernel received a request).
fn waits(m: &Measurement) -> (String, String) {
    let Some(w) = &m.queue_waits else {
        return ("n/a".into(), "n/a".into());
    };
    let pair = |p50: Option<u64>, p99: Option<u64>| match (p50, p99) {
        (Some(a), Some(b)) => format!("{}/{}", ms(a), ms(b)),
        _ => "—".into(),
    };
    (
        pair(w.accept_p50_us, w.accept_p99_us),
        pair(w.receive_p50_us, w.receive_p99_us),
    )
}

/// Accept-queue overflows in the storm at equal queue capacity: each backlog shape beside
/// the nginx with as many listening sockets (one, or one per worker with `reuseport`), with
/// the median and the spread over the runs (the storm varies a lot from run to run).
fn storm_pairs(results: &Results) -> String {
    use crate::target::Kind;
    let rows: Vec<&Measurement> = results
        .measurements
        .iter()
        .filter(|m| m.scenario == "accept-storm")
        .collect();
    let target = |name: &str| results.plan.targets.iter().find(|t| t.name == name);
    let sockets = |m: &Measurement| -> Option<usize> {
        let t = target(&m.target)?;
        match &t.kind {
            Kind::Nginx { workers, reuseport } => Some(if *reuseport { *workers } else { 1 }),
            // Processes split the sockets among them: no single nginx to match.
            Kind::Backlog { .. } if t.processes() > 1 => None,
            Kind::Backlog { .. } => t.topology(results.plan.threads).map(|t| t.listeners()),
            _ => None,
        }
    };
    let median = |m: &Measurement| {
        let mut runs = m.overflows_runs.clone();
        runs.sort_unstable();
        runs.get(runs.len() / 2)
            .copied()
            .unwrap_or(m.listen_overflows)
    };
    let spread = |m: &Measurement| {
        let lo = m
            .overflows_runs
            .iter()
            .min()
            .copied()
            .unwrap_or(m.listen_overflows);
        let hi = m
            .overflows_runs
            .iter()
            .max()
            .copied()
            .unwrap_or(m.listen_overflows);
        format!("{} ({lo}–{hi})", median(m))
    };
    // Runs go round the targets, so run i of a shape and run i of its nginx ran a few
    // seconds apart: the ratio within each such pair leaves out the drift between rounds
    // (other load on the host, TIME_WAIT sockets piling up) that widens each one's spread.
    let paired = |m: &Measurement, p: &Measurement| -> String {
        let mut ratios: Vec<f64> = m
            .overflows_runs
            .iter()
            .zip(&p.overflows_runs)
            .filter(|(_, &theirs)| theirs > 0)
            .map(|(&ours, &theirs)| ours as f64 / theirs as f64)
            .collect();
        if ratios.is_empty() {
            return "—".into();
        }
        ratios.sort_unstable_by(f64::total_cmp);
        format!(
            "{:.2}× ({:.2}–{:.2}, {} pairs)",
            ratios[ratios.len() / 2],
            ratios[0],
            ratios[ratios.len() - 1],
            ratios.len()
        )
    };
    let mut t = String::from(
        "\nAt equal queue capacity (ListenOverflows, median of the runs, min–max; the last column \
         pairs each run with nginx's run of the same round and gives the median of those ratios):\n\n\
         | target | listening sockets | overflows | nginx with as many sockets | its overflows | ratio of medians | ratio per round |\n\
         |---|---:|---:|---|---:|---:|---:|\n",
    );
    for m in rows.iter().filter(|m| !m.target.starts_with("nginx")) {
        let Some(n) = sockets(m) else { continue };
        let peer = rows
            .iter()
            .find(|o| o.target.starts_with("nginx") && sockets(o) == Some(n));
        let (name, theirs, ratio, per_round) = match peer {
            Some(p) => (
                p.target.clone(),
                spread(p),
                if median(p) > 0 {
                    format!("{:.2}×", median(m) as f64 / median(p) as f64)
                } else {
                    "—".into()
                },
                paired(m, p),
            ),
            None => ("—".into(), "—".into(), "—".into(), "—".into()),
        };
        let _ = writeln!(
            t,
            "| {} | {n} | {} | {name} | {theirs} | {ratio} | {per_round} |",
            m.target,
            spread(m)
        );
    }
    t
}

/// The report's headline table for one scenario.
pub fn table(results: &Results, scenario: &str) -> String {
    let rows: Vec<&Measurement> = results
        .measurements
        .iter()
        .filter(|m| m.scenario == scenario)
        .collect();
    let base = nginx(&rows);
    let floor = floor(&rows);
    let mut t = String::new();
    let _ = writeln!(t, "| target | req/s | vs nginx | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | of which kernel | vs nginx | vs floor | client CPU µs/req | errors | accept-queue peak | SYN_RECV peak | kernel counters | accept-queue wait p50/p99 ms | receive-queue wait p50/p99 ms |");
    let _ = writeln!(
        t,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
    );
    for m in rows {
        let spread = if m.rps_runs.len() > 1 {
            let lo = m.rps_runs.iter().cloned().fold(f64::MAX, f64::min);
            let hi = m.rps_runs.iter().cloned().fold(0.0, f64::max);
            format!(" ({:.0}–{:.0})", lo, hi)
        } else {
            String::new()
        };
        let (accept_wait, receive_wait) = waits(m);
        let _ =
            writeln!(
            t,
            "| {}{} | {:.0}{} | {} | {} | {} | {} | {} | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.target,
            if m.client_limited { " ⚑" } else { "" },
            m.rps,
            spread,
            ratio(m.rps, base.map(|b| b.rps)),
            ms(m.p50_us),
            ms(m.p99_us),
            ms(m.p999_us),
            per_request(m, m.server_cpu_us),
            if m.server_cpu_us > 0.0 {
                100.0 * m.server_sys_us / m.server_cpu_us
            } else {
                0.0
            },
            if m.rps < 1.0 {
                "—".into()
            } else {
                ratio(m.server_cpu_us, base.filter(|b| b.rps >= 1.0).map(|b| b.server_cpu_us))
            },
            if m.rps < 1.0 {
                "—".into()
            } else {
                ratio(m.server_cpu_us, floor.map(|f| f.server_cpu_us))
            },
            per_request(m, m.client_cpu_us),
            errors(m),
            m.accept_queue_peak.unwrap_or(0),
            m.syn_recv_peak,
            if m.tcp_ext.is_empty() {
                "—".to_string()
            } else {
                m.tcp_ext
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            accept_wait,
            receive_wait,
        );
    }
    t
}

/// In a mix, each request's p50 and p99 per target: the overall percentiles blend fast and
/// slow requests, and whether the fast ones wait behind the slow ones (head-of-line
/// blocking in a connection, a loop or a worker) shows in theirs alone.
fn by_request(results: &Results, scenario: &str) -> String {
    let rows: Vec<&Measurement> = answered(results, scenario)
        .into_iter()
        .filter(|m| !m.by_request.is_empty())
        .collect();
    let Some(first) = rows.first() else {
        return String::new();
    };
    let names: Vec<&str> = first
        .by_request
        .iter()
        .map(|r| r.request.as_str())
        .collect();
    let mut t = String::from(
        "
Each request's latency, p50 · p99 ms (median run):

| target |",
    );
    for n in &names {
        let _ = write!(t, " `{n}` |");
    }
    t.push_str("\n|---|");
    t.push_str(&"---:|".repeat(names.len()));
    t.push('\n');
    for m in rows {
        let _ = write!(t, "| {} |", m.target);
        for n in &names {
            match m.by_request.iter().find(|r| r.request == *n) {
                Some(r) => {
                    let _ = write!(t, " {} · {} |", ms(r.p50_us), ms(r.p99_us));
                }
                None => t.push_str(" — |"),
            }
        }
        t.push('\n');
    }
    t
}

/// The scenario's measurements of servers that answered (a ratio to one that did not would
/// divide by nothing).
fn answered<'a>(results: &'a Results, scenario: &str) -> Vec<&'a Measurement> {
    results
        .measurements
        .iter()
        .filter(|m| m.scenario == scenario && m.rps >= 1.0)
        .collect()
}

/// HttpArena's way of comparing: every server's CPU per answer as a ratio to backlog's in
/// the same run, under each I/O interface (the floor rows are the arena engine, the least
/// that serves these endpoints correctly).
fn arena_ratios(results: &Results, scenario: &str) -> String {
    let rows = answered(results, scenario);
    let cpu = |name: &str| {
        rows.iter()
            .find(|m| m.target == name)
            .map(|m| m.server_cpu_us)
    };
    let (epoll, uring) = (cpu("single"), cpu("single io_uring"));
    if epoll.is_none() && uring.is_none() {
        return String::new();
    }
    let mut t = String::from(
        "\nServer CPU per answer as a ratio to backlog's, same run (below 1.00×: it spends less than backlog):\n\n\
         | target | µs/answer | vs backlog single | vs backlog single io_uring |\n|---|---:|---:|---:|\n",
    );
    for m in rows {
        let _ = writeln!(
            t,
            "| {} | {:.2} | {} | {} |",
            m.target,
            m.server_cpu_us,
            ratio(m.server_cpu_us, epoll),
            ratio(m.server_cpu_us, uring)
        );
    }
    t
}

/// The TLS scenarios' figures per core: what a handshake or a request over TLS costs each
/// server, as a ratio to nginx's; in the storm, the established clients' p99 beside the
/// same shape with handshakes on its readers.
fn tls_per_core(results: &Results, scenario: &str) -> String {
    let rows = answered(results, scenario);
    let Some(base) = nginx(&rows) else {
        return String::new();
    };
    let churn = scenario.starts_with("tls-churn");
    let storm = scenario == "tls-storm";
    let readers = rows
        .iter()
        .find(|m| m.target == "dispatch")
        .map(|m| m.p99_us as f64);
    let mut t = String::from(if churn {
        "\nPer core: a connection here is a handshake, so handshakes per CPU-second = 10⁶ ÷ server µs/request.\n\n\
         | target | server µs/request | vs nginx | handshakes per CPU-second |\n|---|---:|---:|---:|\n"
    } else if storm {
        "\nThe established clients during the storm: their p99 (the median run's, and the runs' range), as a ratio to nginx's and to dispatch with handshakes on its readers.\n\n\
         | target | p99 | vs nginx | vs dispatch (readers) | server µs/request |\n|---|---:|---:|---:|---:|\n"
    } else {
        "\nPer core over TLS:\n\n| target | server µs/request | vs nginx | requests per CPU-second |\n|---|---:|---:|---:|\n"
    });
    for m in rows {
        if storm {
            let (lo, hi) = (
                m.p99_runs.iter().min().copied().unwrap_or(m.p99_us),
                m.p99_runs.iter().max().copied().unwrap_or(m.p99_us),
            );
            let _ = writeln!(
                t,
                "| {} | {} ({}–{}) | {} | {} | {:.1} |",
                m.target,
                ms(m.p99_us),
                ms(lo),
                ms(hi),
                ratio(m.p99_us as f64, Some(base.p99_us as f64)),
                ratio(m.p99_us as f64, readers),
                m.server_cpu_us
            );
        } else {
            let _ = writeln!(
                t,
                "| {} | {:.1} | {} | {:.0} |",
                m.target,
                m.server_cpu_us,
                ratio(m.server_cpu_us, Some(base.server_cpu_us)),
                1e6 / m.server_cpu_us.max(1e-9)
            );
        }
    }
    t
}

/// The report: a section per scenario, then balance, memory, syscalls, `shapes` (the
/// topology sections) and notes.
fn markdown(
    results: &Results,
    plots: &[(String, Vec<String>)],
    balance: bool,
    shapes: &str,
) -> String {
    let plan = &results.plan;
    let mut md = String::new();
    let _ = writeln!(md, "# backlog lab report\n");
    let _ = writeln!(
        md,
        "{} scenario(s) × {} target(s), {} run(s) each of {:.1} s after {:.1} s warm-up; servers with {} thread(s), \
one load-generator thread{}; wall time {:.0} s{}.\n",
        plan.scenarios.len(),
        plan.targets.len(),
        plan.repeats,
        plan.duration.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.threads,
        if plan.server_cpus.is_empty() {
            String::new()
        } else {
            format!(
                "; servers pinned to CPU(s) {:?}, the load generator to {:?}",
                plan.server_cpus, plan.client_cpus
            )
        },
        results.wall_s,
        if results.interrupted { " — **interrupted: partial results**" } else { "" }
    );
    let _ = writeln!(
        md,
        "Every figure is a ratio taken in this one run on this one machine. Server CPU µs/req (user + system time of \
the server's processes over the measured window) is the figure that decides: ⚑ marks runs where the load \
generator used ≥ 90% of its core, so requests/s measured the client, not the server.\n"
    );
    for (name, files) in plots {
        let about = plan
            .scenarios
            .iter()
            .find(|s| &s.name == name)
            .map(|s| s.about.clone())
            .unwrap_or_default();
        let _ = writeln!(md, "## {name}\n\n{about}\n");
        md.push_str(&table(results, name));
        if name == "accept-storm" {
            md.push_str(&storm_pairs(results));
        }
        if name.starts_with("arena-") {
            md.push_str(&arena_ratios(results, name));
        }
        md.push_str(&by_request(results, name));
        if name.starts_with("tls-") {
            md.push_str(&tls_per_core(results, name));
        }
        let images: Vec<String> = files.iter().map(|f| format!("![{f}]({f})")).collect();
        let _ = writeln!(md, "\n{}\n", images.join(" "));
    }
    if balance {
        let _ = writeln!(md, "## Balance under the mixed load\n\nRequests per handling thread (backlog models):\n\n![balance](balance-mixed.svg)\n");
    }
    if !results.idle.is_empty() {
        let base = results
            .idle
            .iter()
            .find(|i| i.target.starts_with("nginx"))
            .map(|i| i.bytes_per_connection);
        let _ = writeln!(md, "## Memory per idle keep-alive connection\n\nRSS added per connection from half the connections open to all of them (each has made one request): fixed costs the first connections touch are not counted per connection.\n\n| target | connections | bytes/connection | vs nginx |\n|---|---:|---:|---:|");
        for i in &results.idle {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} |",
                i.target,
                i.connections,
                i.bytes_per_connection,
                ratio(i.bytes_per_connection, base)
            );
        }
        md.push('\n');
    }
    if !results.syscalls.is_empty() {
        let _ = writeln!(md, "## Syscalls per request (strace -c -f, keep-alive, 64 connections)\n\n| target | not pipelined | pipelined ×16 |\n|---|---:|---:|");
        let mut names: Vec<&str> = results.syscalls.iter().map(|s| s.target.as_str()).collect();
        names.dedup();
        for name in names {
            let get = |p: usize| {
                results
                    .syscalls
                    .iter()
                    .find(|s| s.target == name && s.pipeline == p)
                    .map_or("—".into(), |s| format!("{:.2}", s.per_request))
            };
            let _ = writeln!(md, "| {name} | {} | {} |", get(1), get(16));
        }
        md.push('\n');
    }
    md.push_str(shapes);
    if !results.notes.is_empty() {
        let _ = writeln!(md, "## Notes\n");
        for n in &results.notes {
            let _ = writeln!(md, "- {n}");
        }
    }
    md
}

fn bars(path: &Path, title: &str, values: &[(String, f64)]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (760, 70 + 30 * values.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    // Room to the right of the longest bar for its label.
    let max = values.iter().map(|(_, v)| *v).fold(1.0, f64::max) * 1.45;
    let n = values.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..max, 0.0..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else {
                format!("{v:.0}")
            }
        })
        .draw()?;
    // Top to bottom in the given order.
    let row = |i: usize| n - 1.0 - i as f64;
    chart.draw_series(values.iter().enumerate().map(|(i, (name, v))| {
        let anchor = name.starts_with("nginx") || name.starts_with("node");
        let color = if anchor {
            RGBColor(150, 150, 150)
        } else {
            RGBColor(40, 110, 180)
        };
        Rectangle::new([(0.0, row(i) + 0.15), (*v, row(i) + 0.85)], color.filled())
    }))?;
    chart.draw_series(values.iter().enumerate().map(|(i, (name, v))| {
        Text::new(
            format!(" {name}  {v:.0}"),
            (*v, row(i) + 0.72),
            ("sans-serif", 13),
        )
    }))?;
    root.present()?;
    Ok(())
}

fn cdf(path: &Path, title: &str, rows: &[&Measurement]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (760 + LEGEND_WIDTH, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, key) = with_legend(&root);
    // x in "nines": 0 = p0 … 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99.
    let nines = |p: f64| -> f64 {
        if p >= 100.0 {
            4.2
        } else {
            (-(1.0 - p / 100.0).log10()).min(4.2)
        }
    };
    let max_ms = rows
        .iter()
        .flat_map(|m| m.cdf.iter().map(|(_, us)| *us as f64 / 1000.0))
        .fold(0.1, f64::max);
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..4.3, (0.01..max_ms * 1.2).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("ms")
        .x_label_formatter(&|x: &f64| match (*x * 10.0).round() as i32 {
            0 => "0".into(),
            10 => "90".into(),
            20 => "99".into(),
            30 => "99.9".into(),
            40 => "99.99".into(),
            _ => String::new(),
        })
        .draw()?;
    let series = rows
        .iter()
        .map(|m| {
            let points = m
                .cdf
                .iter()
                .map(|(p, us)| (nines(*p), (*us as f64 / 1000.0).max(0.01)))
                .collect();
            (m.target.clone(), points)
        })
        .collect();
    let names = draw_lines(&mut chart, series)?;
    legend(&key, &names)?;
    root.present()?;
    Ok(())
}

fn balance_plot(path: &Path, rows: &[&Measurement]) -> anyhow::Result<()> {
    let values: Vec<(String, f64)> = rows
        .iter()
        .flat_map(|m| {
            m.per_thread
                .iter()
                // The blocking pool (database calls) is idle under this load.
                .filter(|(t, _)| !t.starts_with("blocking-"))
                .map(move |(t, n)| (format!("{} {}", m.target, t), *n as f64))
        })
        .collect();
    bars(path, "mixed: requests per handling thread", &values)
}

/// Accept queue (top) and SYN_RECV (bottom) over the measured window, one line per target.
/// Accept-queue and receive-queue p99 over time, per backlog target (ms, log scale).
fn waits_plot(path: &Path, scenario: &str, rows: &[&Measurement]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (760 + LEGEND_WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plots, key) = with_legend(&root);
    let (top, bottom) = plots.split_vertically(280);
    let mut names = Vec::new();
    let end = rows
        .iter()
        .flat_map(|m| m.waits_over_time.iter().map(|w| w.0))
        .fold(1.0, f64::max);
    type Pick = fn(&(f64, Option<u64>, Option<u64>)) -> Option<u64>;
    for (area, title, pick) in [
        (
            &top,
            format!("{scenario}: accept-queue wait p99 (ms; nginx cannot report it)"),
            (|w: &(f64, Option<u64>, Option<u64>)| w.1) as Pick,
        ),
        (
            &bottom,
            format!("{scenario}: receive-queue wait p99 (ms)"),
            (|w: &(f64, Option<u64>, Option<u64>)| w.2) as Pick,
        ),
    ] {
        if !rows
            .iter()
            .any(|m| m.waits_over_time.iter().any(|w| pick(w).is_some()))
        {
            // Keep-alive clients connect before the measured window: no accept to time.
            nothing_to_show(
                area,
                &title,
                "no connection was accepted during the measured window: nothing waited here",
            )?;
            continue;
        }
        let max = rows
            .iter()
            .flat_map(|m| m.waits_over_time.iter().filter_map(pick))
            .max()
            .unwrap_or(1)
            .max(10) as f64
            / 1000.0;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, (0.001..max * 2.0).log_scale())?;
        chart.configure_mesh().x_desc("s").draw()?;
        let series = rows
            .iter()
            .map(|m| {
                let points = m
                    .waits_over_time
                    .iter()
                    .filter_map(|w| pick(w).map(|us| (w.0, (us as f64 / 1000.0).max(0.001))))
                    .collect();
                (m.target.clone(), points)
            })
            .collect();
        names = draw_lines(&mut chart, series)?;
    }
    if names.is_empty() {
        names = rows.iter().map(|m| m.target.clone()).collect();
    }
    legend(&key, &names)?;
    root.present()?;
    Ok(())
}

fn queues_plot(path: &Path, scenario: &str, rows: &[&Measurement]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (760 + LEGEND_WIDTH, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plots, key) = with_legend(&root);
    let (top, bottom) = plots.split_vertically(280);
    let mut names = Vec::new();
    let end = rows
        .iter()
        .flat_map(|m| m.queues.iter().map(|q| q.0))
        .fold(1.0, f64::max);
    for (area, title, pick) in [
        (
            &top,
            format!("{scenario}: accept queue (all listeners)"),
            (|q: &(f64, u32, u32)| q.1) as fn(&(f64, u32, u32)) -> u32,
        ),
        (
            &bottom,
            format!("{scenario}: SYN_RECV"),
            (|q: &(f64, u32, u32)| q.2) as fn(&(f64, u32, u32)) -> u32,
        ),
    ] {
        let max = rows
            .iter()
            .flat_map(|m| m.queues.iter().map(pick))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..max * 1.15)?;
        chart.configure_mesh().x_desc("s").draw()?;
        let series = rows
            .iter()
            .map(|m| {
                let points = m.queues.iter().map(|q| (q.0, pick(q) as f64)).collect();
                (m.target.clone(), points)
            })
            .collect();
        names = draw_lines(&mut chart, series)?;
    }
    legend(&key, &names)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Plan;
    use std::collections::BTreeMap;

    fn measured(target: &str, rps: f64, cpu_us: f64) -> Measurement {
        Measurement {
            scenario: "keepalive-64".into(),
            target: target.into(),
            rps,
            rps_runs: vec![rps * 0.9, rps, rps * 1.1],
            p50_us: 500,
            p90_us: 900,
            p99_us: 2000,
            p99_runs: vec![2000],
            p999_us: 4000,
            max_us: 9000,
            cdf: vec![(0.0, 100), (50.0, 500), (99.0, 2000), (100.0, 9000)],
            errors: BTreeMap::new(),
            server_cpu_us: cpu_us,
            server_sys_us: cpu_us * 0.75,
            client_cpu_us: 5.0,
            client_limited: false,
            rss_kib: 1000,
            accept_queue_peak: Some(3),
            listen_overflows: 0,
            overflows_runs: vec![],
            syn_recv_peak: 0,
            tcp_ext: BTreeMap::new(),
            queues: vec![(0.0, 1, 0), (0.1, 3, 2)],
            per_thread: vec![],
            queue_waits: None,
            waits_over_time: vec![],
            voluntary_switches: 0.5,
            involuntary_switches: 0.01,
            by_request: vec![],
        }
    }

    fn results() -> Results {
        let mut failed = measured("locked-out", 0.0, 0.0);
        failed.errors.insert("connect_pending".into(), 16);
        let mut single = measured("single", 100_000.0, 5.0);
        single.queue_waits = Some(admin::QueueWaits {
            accept_p50_us: Some(40),
            accept_p99_us: Some(1_500),
            receive_p50_us: Some(5),
            receive_p99_us: Some(25),
            accepted: 64,
            requests: 500_000,
        });
        let mut mixed = single.clone();
        mixed.scenario = "mixed".into();
        mixed.waits_over_time = vec![(0.5, Some(900), Some(20)), (1.0, None, Some(2_100))];
        Results {
            plan: Plan::new(true, 2),
            measurements: vec![
                measured("nginx (2 workers)", 50_000.0, 10.0),
                single,
                failed,
                mixed,
            ],
            idle: vec![],
            syscalls: vec![],
            interrupted: false,
            wall_s: 1.0,
            notes: vec![],
        }
    }

    #[test]
    fn the_storm_pairs_each_shape_with_the_nginx_of_as_many_sockets_round_by_round() {
        let mut r = results();
        let storm = |target: &str, runs: Vec<u64>| {
            let mut m = measured(target, 1_000.0, 10.0);
            m.scenario = "accept-storm".into();
            m.listen_overflows = runs[0];
            m.overflows_runs = runs;
            m
        };
        // The full plan: it has nginx on one socket, the peer of the one-socket shapes.
        r.plan = Plan::new(false, 2);
        r.measurements = vec![
            storm("single", vec![900, 4_000, 1_000]),
            storm("nginx (2 workers, one socket)", vec![1_000, 2_000, 4_000]),
        ];
        let t = storm_pairs(&r);
        let single = t.lines().find(|l| l.starts_with("| single")).unwrap();
        // Medians 1,000 vs 2,000; round by round 0.90, 2.00, 0.25: median 0.90.
        assert!(
            single.ends_with(
                "| 1000 (900–4000) | nginx (2 workers, one socket) | 2000 (1000–4000) | 0.50× | 0.90× (0.25–2.00, 3 pairs) |"
            ),
            "{single}"
        );
    }

    #[test]
    fn a_mix_shows_each_requests_latency_and_a_single_request_does_not() {
        let mut r = results();
        let fast = |p50_us, p99_us| crate::results::RequestLatency {
            request: "/".into(),
            answers: 950,
            p50_us,
            p99_us,
        };
        let slow = crate::results::RequestLatency {
            request: "/work?spin_us=2000".into(),
            answers: 50,
            p50_us: 2_100,
            p99_us: 7_500,
        };
        r.measurements[3].by_request = vec![fast(150, 900), slow.clone()];
        let mut other = r.measurements[3].clone();
        other.target = "pool".into();
        other.by_request = vec![fast(400, 2_500)];
        r.measurements.push(other);
        let t = by_request(&r, "mixed");
        assert!(
            t.contains("| target | `/` | `/work?spin_us=2000` |\n|---|---:|---:|\n"),
            "{t}"
        );
        assert!(
            t.contains("| single | 0.15 · 0.90 | 2.10 · 7.50 |\n"),
            "{t}"
        );
        assert!(t.contains("| pool | 0.40 · 2.50 | — |\n"), "{t}");
        assert_eq!(by_request(&r, "keepalive-64"), "");
    }

    #[test]
    fn the_table_shows_every_figure_as_a_ratio_to_nginx() {
        let t = table(&results(), "keepalive-64");
        let single = t.lines().find(|l| l.starts_with("| single")).unwrap();
        assert!(
            single.contains("| 100000 (90000–110000) | 2.00× |"),
            "{single}"
        );
        assert!(single.contains("| 5.0 | 75% | 0.50× |"), "{single}");
        assert!(single.ends_with("| 0.04/1.50 | 0.01/0.03 |"), "{single}");
        let nginx = t.lines().find(|l| l.starts_with("| nginx")).unwrap();
        assert!(
            nginx.ends_with("| n/a | n/a |"),
            "nginx cannot tell: {nginx}"
        );
        // Nothing answered: no per-request figures, the errors by kind.
        let failed = t.lines().find(|l| l.starts_with("| locked-out")).unwrap();
        assert!(failed.contains("16 (connect_pending 16)"), "{failed}");
        assert!(
            !failed.contains("inf") && !failed.contains("NaN"),
            "{failed}"
        );
    }

    #[test]
    fn write_produces_the_report_the_json_and_the_plots() {
        let dir = testkit::scratch("lab-report-test-");
        let out = dir.path();
        write(&results(), out).unwrap();
        for f in [
            "report.md",
            "results.json",
            "rps-keepalive-64.svg",
            "latency-keepalive-64.svg",
        ] {
            assert!(out.join(f).exists(), "{f}");
        }
        let back: Results =
            serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
        assert_eq!(back.measurements.len(), 4);
        assert!(
            out.join("waits-mixed.svg").exists(),
            "mixed plots its waits"
        );
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(md.contains("## keepalive-64"));
    }
}
