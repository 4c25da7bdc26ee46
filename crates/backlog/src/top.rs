//! `backlog top`: a live terminal view of one server, read from its admin endpoint.
//!
//! Once a second it fetches `/debug/state` and draws the model's threads as a small
//! diagram, each listener's accept queue against its limit, the SYN queue, the kernel's
//! overflow and drop counters with their rates, a table of threads, the imbalance figure and
//! a requests/s sparkline. It fits 80×24: lines are cut to the width by dropping their least
//! useful parts, and a thread table longer than the screen scrolls (↑/↓, j/k) with a last row
//! summing the threads below. When the server cannot be reached it says so and keeps trying;
//! `q` quits. It needs a terminal: without one it says so and exits 2.

use admin::{State, ThreadState};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::{DefaultTerminal, Frame};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(1);
const HISTORY: usize = 120;
/// Listener rows on screen; past it the last row sums the rest.
const MAX_GAUGES: usize = 2;

/// What the view shows between refreshes.
struct View {
    addr: String,
    state: Result<State, String>,
    /// The previous state and when it was taken, for counter rates.
    prev: Option<(Instant, State)>,
    rates: Vec<(String, u64, f64)>,
    rps: VecDeque<u64>,
    /// The first thread row shown.
    scroll: usize,
}

/// Whether stdin and stdout are a terminal, which the view draws on and reads keys from.
pub fn has_terminal() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Run the view until `q`.
pub fn run(addr: &str) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, addr);
    ratatui::restore();
    result
}

fn event_loop(terminal: &mut DefaultTerminal, addr: &str) -> anyhow::Result<()> {
    let mut view = View {
        addr: addr.to_string(),
        state: Err("connecting…".into()),
        prev: None,
        rates: Vec::new(),
        rps: VecDeque::new(),
        scroll: 0,
    };
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            view.refresh(fetch(addr));
            next = Instant::now() + REFRESH;
        }
        terminal.draw(|f| draw(f, &view))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    _ if ctrl_c => return Ok(()),
                    KeyCode::Down | KeyCode::Char('j') => view.scroll_by(1),
                    KeyCode::Up | KeyCode::Char('k') => view.scroll = view.scroll.saturating_sub(1),
                    KeyCode::PageDown => view.scroll_by(10),
                    KeyCode::PageUp => view.scroll = view.scroll.saturating_sub(10),
                    KeyCode::Home => view.scroll = 0,
                    _ => {}
                }
            }
        }
    }
}

impl View {
    /// Scroll the thread table down, no further than its last row.
    fn scroll_by(&mut self, rows: usize) {
        let threads = self.state.as_ref().map_or(0, |s| s.threads.len());
        self.scroll = (self.scroll + rows).min(threads.saturating_sub(1));
    }

    fn refresh(&mut self, fetched: Result<State, String>) {
        if let Ok(state) = &fetched {
            let now = Instant::now();
            if let Some((at, prev)) = &self.prev {
                let secs = now.duration_since(*at).as_secs_f64().max(1e-3);
                self.rates = state
                    .kernel
                    .iter()
                    .map(|(k, v)| {
                        let before = prev.kernel.get(k).copied().unwrap_or(0);
                        (k.clone(), *v, v.saturating_sub(before) as f64 / secs)
                    })
                    .collect();
                let done = state.requests_total.saturating_sub(prev.requests_total);
                self.rps.push_back((done as f64 / secs) as u64);
                if self.rps.len() > HISTORY {
                    self.rps.pop_front();
                }
            } else {
                self.rates = state
                    .kernel
                    .iter()
                    .map(|(k, v)| (k.clone(), *v, 0.0))
                    .collect();
            }
            self.prev = Some((now, state.clone()));
        }
        self.state = fetched;
    }
}

/// Resolve `addr` and GET its /debug/state.
fn fetch(addr: &str) -> Result<State, String> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    admin::fetch_state(target, Duration::from_millis(800))
}

fn draw(f: &mut Frame, view: &View) {
    let area = f.area();
    let state = match &view.state {
        Ok(s) => s,
        Err(err) => {
            let text = vec![
                Line::from(Span::styled(
                    format!("backlog top — no admin state from {}", view.addr),
                    Style::default().add_modifier(Modifier::BOLD),
                )),
                Line::from(format!("  {err}")),
                Line::from("  retrying every second; start the server with --admin, or q to quit"),
            ];
            f.render_widget(Paragraph::new(text), area);
            return;
        }
    };
    let gauges = state.listeners.len().clamp(1, MAX_GAUGES) as u16;
    // A supervisor (`--processes`) adds a line per worker process.
    let procs = if state.processes.is_empty() {
        0
    } else {
        state.processes.len().min(6) as u16 + 2
    };
    let tls_rows = if state.tls.is_some() { 3 } else { 0 };
    let [title, processes, diagram, queues, kernel, tls, threads, spark] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(procs),
        Constraint::Length(4),
        Constraint::Length(gauges + 2),
        Constraint::Length(4),
        Constraint::Length(tls_rows),
        Constraint::Min(4),
        Constraint::Length(3),
    ])
    .areas(area);

    let header = fit(
        &[
            (0, view.addr.clone()),
            (0, format!("model {}", state.model)),
            (4, state.topology.clone()),
            (1, format!("io {}", state.io)),
            (1, format!("conns {}", state.open_connections)),
            (2, format!("pid {}", state.pid)),
            (3, format!("up {:.0}s", state.uptime_s)),
        ],
        usize::from(area.width).saturating_sub(12),
    );
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "backlog top ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(header),
        ])),
        title,
    );
    f.render_widget(
        Paragraph::new(diagram_lines(state)).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" threads   (q quits) "),
        ),
        diagram,
    );
    if procs > 0 {
        draw_processes(f, processes, state);
    }
    draw_queues(f, queues, state);
    draw_kernel(f, kernel, view);
    if let Some(t) = &state.tls {
        let line = tls_line(t, usize::from(tls.width).saturating_sub(2));
        f.render_widget(
            Paragraph::new(Line::from(line)).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(" TLS handshakes (interval; failures since start) "),
            ),
            tls,
        );
    }
    draw_threads(f, threads, state, view.scroll);
    let data: Vec<u64> = view.rps.iter().copied().collect();
    let last = data.last().copied().unwrap_or(0);
    f.render_widget(
        Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(format!(
                " requests/s {last}   imbalance {:.2} (max/mean per thread) ",
                state.imbalance
            )))
            .data(&data)
            .style(Style::default().fg(Color::Green)),
        spark,
    );
}

/// `parts` joined by two spaces, dropping the least important (highest rank) until the line
/// fits `width`; what is left is cut at the width with an ellipsis.
fn fit(parts: &[(u8, String)], width: usize) -> String {
    let mut keep: Vec<&(u8, String)> = parts.iter().collect();
    let len = |k: &[&(u8, String)]| k.iter().map(|(_, p)| p.chars().count() + 2).sum::<usize>();
    while len(&keep) > width + 2 {
        let Some(worst) = keep.iter().map(|(rank, _)| *rank).max().filter(|r| *r > 0) else {
            break;
        };
        let at = keep
            .iter()
            .rposition(|(rank, _)| *rank == worst)
            .unwrap_or(0);
        keep.remove(at);
    }
    let line = keep
        .iter()
        .map(|(_, p)| p.as_str())
        .collect::<Vec<_>>()
        .join("  ");
    truncate(&line, width)
}

/// `text` cut to `width` characters, with `…` marking the cut.
fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Thread names with runs of one prefix shortened: `reader-0..7` for eight readers.
fn compact_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(&str, u64, u64)> = None;
    let flush = |run: Option<(&str, u64, u64)>, out: &mut Vec<String>| {
        if let Some((prefix, first, last)) = run {
            out.push(if first == last {
                format!("{prefix}{first}")
            } else {
                format!("{prefix}{first}..{last}")
            });
        }
    };
    for name in names {
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, number) = name.split_at(name.len() - digits);
        match (number.parse::<u64>().ok(), run) {
            (Some(n), Some((p, first, last))) if p == prefix && n == last + 1 => {
                run = Some((p, first, n));
            }
            (Some(n), _) => {
                flush(run.take(), &mut out);
                run = Some((prefix, n, n));
            }
            (None, _) => {
                flush(run.take(), &mut out);
                out.push(name.to_string());
            }
        }
    }
    flush(run, &mut out);
    out.join(", ")
}

/// One line per worker process: pid, generation, slot, state, age, threads.
fn draw_processes(f: &mut Frame, area: Rect, state: &State) {
    let generation = state
        .processes
        .iter()
        .map(|p| p.generation)
        .max()
        .unwrap_or(0);
    let lines: Vec<Line> = state
        .processes
        .iter()
        .map(|p| {
            let (what, color) = match (p.ready, p.draining) {
                (_, true) => ("draining", Color::Yellow),
                (true, false) => ("serving", Color::Green),
                (false, false) => ("starting", Color::Cyan),
            };
            Line::from(vec![
                Span::raw(format!(
                    "pid {:<7} gen {:<3} slot {:<2} ",
                    p.pid, p.generation, p.slot
                )),
                Span::styled(format!("{what:<9}"), Style::default().fg(color)),
                Span::raw(format!(" {:>5.0}s  {}", p.age_s, p.threads.join(" "))),
            ])
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(format!(
            " processes: {} (supervisor {}, generation {generation}) ",
            state.processes.len(),
            state.pid
        ))),
        area,
    );
}

/// The model's thread layout as one or two lines.
fn diagram_lines(state: &State) -> Vec<Line<'static>> {
    let names = |pred: fn(&backlog_server::topology::ThreadLayout) -> bool| {
        compact_names(
            state
                .layout
                .iter()
                .filter(|t| pred(t))
                .map(|t| t.name.as_str()),
        )
    };
    let port = state
        .listeners
        .first()
        .map(|l| l.addr.rsplit(':').next().unwrap_or("").to_string())
        .unwrap_or_default();
    // Any shape, from the layout: sockets → who accepts (→ whom they hand to) ⇄ who handles.
    let sockets = match state.listeners.len() {
        1 => format!("[:{port}]"),
        n => format!("[:{port}]×{n}"),
    };
    let acceptors = names(|t| t.accepts && !t.reads);
    let loops = names(|t| t.accepts && t.reads);
    let workers = names(|t| t.role == backlog_server::stats::Role::Worker);
    let mut first = format!("clients → {sockets}");
    if let Some(accept) = &state.accept {
        first.push_str(&format!(" {accept}"));
    }
    if acceptors.is_empty() {
        first.push_str(&format!(" → {loops} (accept·read)"));
    } else {
        let readers = names(|t| t.reads && !t.accepts);
        match &state.balance {
            Some(by) => first.push_str(&format!(" → {acceptors} ={by}=> {readers}")),
            None => first.push_str(&format!(" → {acceptors} → {readers}")),
        }
    }
    if !workers.is_empty() {
        first.push_str(&format!(" ⇄ {workers}"));
    }
    // Inside a bordered box on an 80-column screen.
    const WIDTH: usize = 76;
    if first.chars().count() > WIDTH {
        first = first.replacen("clients → ", "", 1);
    }
    vec![
        Line::from(truncate(&first, WIDTH)),
        Line::from(fit(
            &[
                (0, format!("handles: {}", names(|t| t.handles))),
                (1, format!("backlog {}", state.backlog)),
                (2, format!("max-conns {}", state.max_conns)),
            ],
            WIDTH,
        )),
    ]
}

fn draw_queues(f: &mut Frame, area: Rect, state: &State) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" accept queue (length / limit)   SYN queue ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let n = state.listeners.len();
    let rows = Layout::vertical(vec![Constraint::Length(1); n.clamp(1, MAX_GAUGES)]).split(inner);
    let gauges = if n > MAX_GAUGES { MAX_GAUGES - 1 } else { n };
    for (l, row) in state.listeners.iter().take(gauges).zip(rows.iter()) {
        draw_gauge(
            f,
            *row,
            &format!("#{} {}", l.index, l.addr),
            (l.accept_queue_length, l.accept_queue_limit),
            l.syn_recv,
        );
    }
    if n > MAX_GAUGES {
        // Sockets of one port share their SYN_RECV count; their accept queues add up.
        let rest = &state.listeners[gauges..];
        let length = rest.iter().map(|l| l.accept_queue_length).sum();
        let limit = rest.iter().map(|l| l.accept_queue_limit).sum();
        let syn = rest.iter().map(|l| l.syn_recv).max().unwrap_or(0);
        let label = format!("#{}–#{} ({} more)", gauges, n - 1, rest.len());
        draw_gauge(f, rows[gauges], &label, (length, limit), syn);
    }
}

/// One accept queue (or the sum of several) against its limit, and the SYN queue.
fn draw_gauge(f: &mut Frame, row: Rect, label: &str, (length, limit): (u32, u32), syn: u32) {
    let [label_area, gauge, syn_area] = Layout::horizontal([
        Constraint::Length(24),
        Constraint::Min(10),
        Constraint::Length(16),
    ])
    .areas(row);
    f.render_widget(Paragraph::new(truncate(label, 23)), label_area);
    let ratio = if limit == 0 {
        0.0
    } else {
        (f64::from(length) / f64::from(limit)).min(1.0)
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(if ratio > 0.8 { Color::Red } else { Color::Cyan }))
            .ratio(ratio)
            .label(format!("{length}/{limit}")),
        gauge,
    );
    f.render_widget(Paragraph::new(format!(" SYN_RECV {syn}")), syn_area);
}

fn draw_kernel(f: &mut Frame, area: Rect, view: &View) {
    fn short(name: &str) -> &str {
        match name {
            "ListenOverflows" => "overflows",
            "ListenDrops" => "drops",
            "TCPReqQFullDrop" => "synq drops",
            "TCPReqQFullDoCookies" => "synq cookies",
            "SyncookiesSent" => "ck sent",
            "SyncookiesRecv" => "ck recv",
            "SyncookiesFailed" => "ck failed",
            other => other,
        }
    }
    let cells: Vec<String> = view
        .rates
        .iter()
        .map(|(k, v, r)| format!("{} {} +{:.0}/s", short(k), v, r))
        .collect();
    let lines: Vec<Line> = cells.chunks(4).map(|c| Line::from(c.join("  "))).collect();
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" kernel TcpExt since start (host-wide) "),
        ),
        area,
    );
}

/// The TLS box's line: handshakes per second and how many resumed, how long full ones
/// took, how many are under way, and the failures that happened, least useful dropped first.
fn tls_line(t: &admin::TlsState, width: usize) -> String {
    let resumed = if t.handshakes_per_s > 0.0 {
        format!(
            " ({:.0}% resumed)",
            100.0 * t.resumed_per_s / t.handshakes_per_s
        )
    } else {
        String::new()
    };
    let failures: Vec<String> = t
        .failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(cause, n)| format!("{cause} {n}"))
        .collect();
    let failures = if failures.is_empty() {
        "no failures".to_string()
    } else {
        format!("failed: {}", failures.join(" "))
    };
    fit(
        &[
            (0, format!("{:.0}/s{resumed}", t.handshakes_per_s)),
            (
                1,
                format!("full {}", wait_pair(t.full_p50_us, t.full_p99_us)),
            ),
            (3, format!("resumed p99 {}", short_wait(t.resumed_p99_us))),
            (0, format!("in flight {}", t.in_flight)),
            (2, failures),
        ],
        width,
    )
}

/// A wait for a narrow column: `27µs`, `3.4ms`, `41ms`, `1.2s`; `–` when none was counted.
fn short_wait(us: Option<u64>) -> String {
    match us {
        None => "–".to_string(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 10_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) if us < 1_000_000 => format!("{}ms", us / 1_000),
        Some(us) => format!("{:.1}s", us as f64 / 1e6),
    }
}

/// `p50/p99` of a wait.
fn wait_pair(p50: Option<u64>, p99: Option<u64>) -> String {
    if p50.is_none() {
        return "–".to_string();
    }
    format!("{}/{}", short_wait(p50), short_wait(p99))
}

/// The thread table: a first row for the whole server, then the threads. Past the screen it
/// scrolls from `scroll`; a last row sums the threads below, so every thread is either shown
/// or counted. Queue waits are over the last interval: accept-queue p99, receive-queue
/// p50/p99 (see `backlog_server::queue_wait`).
fn draw_threads(f: &mut Frame, area: Rect, state: &State, scroll: usize) {
    let header = Row::new([
        "thread",
        "role",
        "conns",
        "accept",
        "req/s",
        "busy%",
        "queue",
        "acc p99",
        "recv p50/99",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let total = state.threads.len();
    // Borders, the header and the server's row take four rows.
    let room = usize::from(area.height).saturating_sub(4).max(1);
    let first = scroll.min(total.saturating_sub(room));
    let fits = total - first <= room;
    let shown = if fits { total - first } else { room - 1 };
    let row = |t: &ThreadState| {
        Row::new([
            t.counters.name.clone(),
            t.counters.role.name().to_string(),
            t.counters.open.to_string(),
            t.counters.accepted.to_string(),
            format!("{:.0}", t.requests_per_s),
            format!("{:.0}", t.busy_ratio * 100.0),
            t.counters.handoff_queued.to_string(),
            short_wait(t.waits.accept_p99_us),
            wait_pair(t.waits.receive_p50_us, t.waits.receive_p99_us),
        ])
    };
    let sum_rows = |label: String, note: String, ts: &[ThreadState], waits: [String; 2]| {
        let [accept, receive] = waits;
        Row::new([
            label,
            note,
            ts.iter().map(|t| t.counters.open).sum::<u64>().to_string(),
            ts.iter()
                .map(|t| t.counters.accepted)
                .sum::<u64>()
                .to_string(),
            format!("{:.0}", ts.iter().map(|t| t.requests_per_s).sum::<f64>()),
            String::new(),
            ts.iter()
                .map(|t| t.counters.handoff_queued)
                .sum::<u64>()
                .to_string(),
            accept,
            receive,
        ])
    };
    let w = &state.waits;
    let mut rows = vec![sum_rows(
        "server".to_string(),
        String::new(),
        &state.threads,
        [
            short_wait(w.accept_p99_us),
            wait_pair(w.receive_p50_us, w.receive_p99_us),
        ],
    )
    .style(Style::default().add_modifier(Modifier::BOLD))];
    rows.extend(state.threads[first..first + shown].iter().map(row));
    if !fits {
        let below = &state.threads[first + shown..];
        rows.push(
            sum_rows(
                format!("+{} more", below.len()),
                "↓ j".to_string(),
                below,
                [String::new(), String::new()],
            )
            .style(Style::default().add_modifier(Modifier::DIM)),
        );
    }
    let title = if first == 0 && fits {
        format!(" per thread ({total}) ")
    } else {
        format!(
            " per thread: {}–{} of {total} (↑↓ scroll) ",
            first + 1,
            first + shown
        )
    };
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(5),
                Constraint::Length(5),
                Constraint::Length(7),
                Constraint::Length(13),
            ],
        )
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_fit_their_columns() {
        assert_eq!(short_wait(None), "–");
        assert_eq!(short_wait(Some(27)), "27µs");
        assert_eq!(short_wait(Some(3_400)), "3.4ms");
        assert_eq!(short_wait(Some(41_000)), "41ms");
        assert_eq!(short_wait(Some(1_200_000)), "1.2s");
        assert_eq!(wait_pair(Some(5), Some(250_000)), "5µs/250ms");
        assert_eq!(wait_pair(None, None), "–");
        // The widest pair fits its 13 columns.
        assert!(wait_pair(Some(999_999), Some(999_999)).chars().count() <= 13);
    }

    #[test]
    fn runs_of_names_are_compacted() {
        let names = [
            "acceptor", "reader-0", "reader-1", "reader-2", "worker-0", "worker-2",
        ];
        assert_eq!(
            compact_names(names.into_iter()),
            "acceptor, reader-0..2, worker-0, worker-2"
        );
    }

    #[test]
    fn a_line_drops_its_least_useful_parts_to_fit() {
        let parts = [
            (0, "127.0.0.1:9901".to_string()),
            (0, "model reuseport".to_string()),
            (1, "conns 12".to_string()),
            (3, "up 5s".to_string()),
        ];
        assert_eq!(
            fit(&parts, 80),
            "127.0.0.1:9901  model reuseport  conns 12  up 5s"
        );
        assert_eq!(fit(&parts, 41), "127.0.0.1:9901  model reuseport  conns 12");
        assert_eq!(fit(&parts, 40), "127.0.0.1:9901  model reuseport");
        assert_eq!(fit(&parts, 20).chars().count(), 20);
    }
}
