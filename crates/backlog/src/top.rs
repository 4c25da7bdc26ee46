//! `backlog top`: a live terminal view of one server, read from its admin endpoint.
//!
//! Once a second it fetches `/debug/state` and draws the model's threads as a small
//! diagram, each listener's accept queue against its limit, the SYN queue, the kernel's
//! overflow and drop counters with their rates, a table of threads, the imbalance figure and
//! a requests/s sparkline. It fits 80×24. When the server cannot be reached it says so and
//! keeps trying; `q` quits.

use admin::State;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Gauge, Paragraph, Row, Sparkline, Table};
use ratatui::{DefaultTerminal, Frame};
use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

const REFRESH: Duration = Duration::from_secs(1);
const HISTORY: usize = 120;

/// What the view shows between refreshes.
struct View {
    addr: String,
    state: Result<State, String>,
    /// The previous state and when it was taken, for counter rates.
    prev: Option<(Instant, State)>,
    rates: Vec<(String, u64, f64)>,
    rps: VecDeque<u64>,
}

/// Run the view until `q`.
pub fn run(addr: &str) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
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
                if matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                    return Ok(());
                }
            }
        }
    }
}

impl View {
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
                    format!("backlog top — cannot reach {}", view.addr),
                    Style::default().add_modifier(Modifier::BOLD),
                )),
                Line::from(format!("  {err}")),
                Line::from("  retrying every second; start the server with --admin, or q to quit"),
            ];
            f.render_widget(Paragraph::new(text), area);
            return;
        }
    };
    let gauges = state.listeners.len().clamp(1, 4) as u16;
    // A supervisor (`--processes`) adds a line per worker process.
    let procs = if state.processes.is_empty() {
        0
    } else {
        state.processes.len().min(6) as u16 + 2
    };
    let [title, processes, diagram, queues, kernel, threads, spark] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(procs),
        Constraint::Length(4),
        Constraint::Length(gauges + 2),
        Constraint::Length(4),
        Constraint::Min(4),
        Constraint::Length(4),
    ])
    .areas(area);

    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "backlog top ",
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(
                "{}  model {}  pid {}  up {:.0}s  conns {}",
                view.addr, state.model, state.pid, state.uptime_s, state.open_connections
            )),
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
    draw_threads(f, threads, state);
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
    let names = |pred: fn(&server::ThreadLayout) -> bool| {
        let v: Vec<&str> = state
            .layout
            .iter()
            .filter(|t| pred(t))
            .map(|t| t.name.as_str())
            .collect();
        v.join(", ")
    };
    let port = state
        .listeners
        .first()
        .map(|l| l.addr.rsplit(':').next().unwrap_or("").to_string())
        .unwrap_or_default();
    let sockets = state.listeners.len();
    let first = match state.model.as_str() {
        "single" => format!(
            "clients → [:{port}] → {} (accept·read·handle·write)",
            names(|t| t.accepts)
        ),
        "dispatch" => format!(
            "clients → [:{port}] → {} ={}=> {} (read·handle)",
            names(|t| t.accepts),
            state.balance,
            names(|t| t.reads)
        ),
        "pool" => format!(
            "clients → [:{port}] → {} (accept·read·write) ⇄ {}",
            names(|t| t.accepts),
            names(|t| t.handles)
        ),
        "shared" => format!(
            "clients → [:{port}, one socket] → {} (accept: {})",
            names(|t| t.accepts),
            state.accept
        ),
        _ => format!(
            "clients → kernel hash → [:{port}]×{sockets} → {} (one socket each)",
            names(|t| t.accepts)
        ),
    };
    vec![
        Line::from(first),
        Line::from(format!(
            "handles: {}   backlog {}   max-conns {}",
            names(|t| t.handles),
            state.backlog,
            state.max_conns
        )),
    ]
}

fn draw_queues(f: &mut Frame, area: Rect, state: &State) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" accept queue (length / limit)   SYN queue ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let rows = Layout::vertical(vec![
        Constraint::Length(1);
        state.listeners.len().clamp(1, 4)
    ])
    .split(inner);
    for (l, row) in state.listeners.iter().take(4).zip(rows.iter()) {
        let [label, gauge, syn] = Layout::horizontal([
            Constraint::Length(24),
            Constraint::Min(10),
            Constraint::Length(16),
        ])
        .areas(*row);
        f.render_widget(Paragraph::new(format!("#{} {}", l.index, l.addr)), label);
        let ratio = if l.accept_queue_limit == 0 {
            0.0
        } else {
            (l.accept_queue_length as f64 / l.accept_queue_limit as f64).min(1.0)
        };
        f.render_widget(
            Gauge::default()
                .gauge_style(Style::default().fg(if ratio > 0.8 {
                    Color::Red
                } else {
                    Color::Cyan
                }))
                .ratio(ratio)
                .label(format!(
                    "{}/{}",
                    l.accept_queue_length, l.accept_queue_limit
                )),
            gauge,
        );
        f.render_widget(Paragraph::new(format!(" SYN_RECV {}", l.syn_recv)), syn);
    }
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

fn draw_threads(f: &mut Frame, area: Rect, state: &State) {
    let header = Row::new([
        "thread", "role", "conns", "accepted", "req/s", "busy %", "queue",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = state.threads.iter().map(|t| {
        Row::new([
            t.counters.name.clone(),
            t.counters.role.name().to_string(),
            t.counters.open.to_string(),
            t.counters.accepted.to_string(),
            format!("{:.0}", t.requests_per_s),
            format!("{:.0}", t.busy_ratio * 100.0),
            t.counters.handoff_queued.to_string(),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(10),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Length(6),
            ],
        )
        .header(header)
        .block(Block::default().borders(Borders::ALL).title(" per thread ")),
        area,
    );
}
