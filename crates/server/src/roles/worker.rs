//! Worker threads: run handlers for requests another thread read.
//!
//! The `pool` model's second half (RAMCloud's dispatch thread and workers). The reader puts
//! each complete request on a bounded queue; a free worker takes it, runs the handler,
//! encodes the response and sends the bytes back to the reader's reply queue, waking it.
//! The reader — not the worker — writes, and puts responses back in request order.

use crate::app::handler::{call_guarded, Handler};
use crate::observe::stats::ThreadStats;
use crate::priority::{Background, Crew};
use crate::roles::inline::{CheapRoutes, Route};
use crate::roles::runtime::ServiceExec;
use crate::shutdown::Shutdown;
use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use h1::{DateCache, EncodeContext, Request};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use sys::Waker;

/// Names one connection of one loop across threads. The generation tells a reused slab slot
/// from the connection a late response was meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnId {
    pub(crate) key: usize,
    pub(crate) gen: u32,
}

/// A request on its way to a worker.
pub(crate) struct Job {
    pub(crate) reply: usize,
    pub(crate) conn: ConnId,
    pub(crate) seq: u64,
    pub(crate) ctx: EncodeContext,
    pub(crate) req: Request,
    /// Its route, when the worker is to tell the readers what the handler cost
    /// ([`crate::roles::inline`]).
    pub(crate) route: Option<Route>,
}

/// An encoded response, or a part of one, on its way back.
pub(crate) struct Completion {
    pub(crate) conn: ConnId,
    pub(crate) seq: u64,
    pub(crate) bytes: Bytes,
    /// Set on the answer's last part: whether the connection stays open after it.
    pub(crate) end: Option<bool>,
}

/// Where a worker sends a loop's responses.
pub(crate) struct ReplyPort {
    tx: Sender<Completion>,
    waker: Arc<Waker>,
    /// The submitting loop's counters, whose queue depth a taken job lowers.
    queued: Arc<ThreadStats>,
}

impl ReplyPort {
    pub(crate) fn new(
        waker: Arc<Waker>,
        queued: Arc<ThreadStats>,
    ) -> (ReplyPort, Receiver<Completion>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (ReplyPort { tx, waker, queued }, rx)
    }

    pub(crate) fn send(&self, done: Completion) {
        if self.tx.send(done).is_ok() {
            self.waker.wake();
        }
    }
}

/// The reader's handle on the request queue.
pub(crate) struct Submitter {
    tx: Sender<Job>,
    queued: Arc<ThreadStats>,
}

impl Submitter {
    pub(crate) fn new(tx: Sender<Job>, queued: Arc<ThreadStats>) -> Self {
        Submitter { tx, queued }
    }

    /// Requests queued that no worker took yet.
    pub(crate) fn waiting(&self) -> usize {
        self.tx.len()
    }

    /// Queue `job`, or give it back when the queue is full (the caller then stops reading).
    /// The job travels by value: boxing it would cost an allocation per request.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_submit(&self, job: Job) -> Result<(), Job> {
        self.queued.handoff_push();
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.queued.handoff_pop();
                Err(job)
            }
        }
    }
}

/// A bounded request queue shared by every submitter and every worker.
pub(crate) fn queue(depth: usize) -> (Sender<Job>, Receiver<Job>) {
    crossbeam_channel::bounded(depth.max(1))
}

/// The largest encoding buffer a worker keeps between answers.
const MAX_KEPT_ENCODE: usize = 64 * 1024;

/// The answer just encoded in `out`, as bytes for the reader. A small one is split off, and
/// `out` reuses the room once the reader drops it; a large one takes the whole allocation
/// with it, and `out` starts again small. Splitting a large one would leave `out` a handle
/// on its allocation, which the next encoding reclaims: every worker would keep its largest
/// answer for good (4 × 16 MiB echoes left `pool` 33 MB above its start).
fn encoded(out: &mut BytesMut) -> Bytes {
    if out.capacity() <= MAX_KEPT_ENCODE {
        return out.split().freeze();
    }
    std::mem::replace(out, BytesMut::with_capacity(16 * 1024)).freeze()
}

/// One worker thread's body: until every submitter is gone, take a job, run it, reply.
pub(crate) fn run(
    handler: Arc<dyn Handler>,
    jobs: Receiver<Job>,
    replies: Arc<Vec<ReplyPort>>,
    stats: Arc<ThreadStats>,
    shutdown: Arc<Shutdown>,
    mut background: Option<Background>,
    cheap: Option<Arc<CheapRoutes>>,
) {
    let mut date = DateCache::new(SystemTime::now());
    let mut out = BytesMut::with_capacity(16 * 1024);
    while let Ok(job) = jobs.recv() {
        if let Some(b) = background.as_mut() {
            b.adjust(jobs.len());
        }
        if let Some(port) = replies.get(job.reply) {
            port.queued.handoff_pop();
        }
        let start = Instant::now();
        date.refresh_by(start);
        let (resp, panicked) = match (job.route, &cheap) {
            // Measured in what the thread ran (see `roles::inline`); a panic is not cheap.
            (Some(route), Some(cheap)) => {
                cheap.on_worker(route, || call_guarded(&*handler, job.req), |c| !c.1)
            }
            _ => call_guarded(&*handler, job.req),
        };
        if panicked {
            stats.panicked();
        }
        // Requests queued before a shutdown are answered with `Connection: close`.
        let mut ctx = job.ctx;
        ctx.keep_alive &= !shutdown.requested();
        let keep_alive = resp.encode(ctx, &date, &mut out);
        drop(resp);
        let bytes = encoded(&mut out);
        stats.requests(1);
        stats.busy(start.elapsed().as_nanos() as u64);
        if let Some(port) = replies.get(job.reply) {
            port.send(Completion {
                conn: job.conn,
                seq: job.seq,
                bytes,
                end: Some(keep_alive),
            });
        }
    }
}

/// A reader's link to a pool of handler threads: where it submits requests and where the
/// answers come back.
pub(crate) struct PoolLink {
    pub(crate) submit: Submitter,
    pub(crate) completions: Receiver<Completion>,
    pub(crate) reply: usize,
    /// The pool's workers, when they run in the background: the reader brings them back
    /// when work piles up.
    pub(crate) crew: Option<Arc<Crew>>,
    /// The routes this reader answers itself, learned from the workers
    /// ([`InlineAnswers::Learned`](crate::InlineAnswers::Learned)).
    pub(crate) cheap: Option<Arc<CheapRoutes>>,
}

/// Who runs the application for requests this reader parsed: a native handler
/// ([`HandlerExec`]) or a service's futures ([`ServiceExec`]).
pub(crate) enum Exec {
    Handler(HandlerExec),
    Service(ServiceExec),
    /// Runs nothing: an acceptor's loop that completes TLS handshakes and hands each
    /// established connection to a reader.
    Nothing,
}

impl Exec {
    /// Every queue answers come back on.
    pub(crate) fn completions(&self) -> impl Iterator<Item = &Receiver<Completion>> {
        let (links, service) = match self {
            Exec::Handler(h) => (Some(h.links()), None),
            Exec::Service(s) => (None, Some(&s.completions)),
            Exec::Nothing => (None, None),
        };
        links
            .into_iter()
            .flatten()
            .map(|l| &l.completions)
            .chain(service)
    }

    /// Whether this reader runs the application itself (some requests, at least).
    pub(crate) fn runs_here(&self) -> bool {
        match self {
            Exec::Handler(h) => h.workers.is_none(),
            Exec::Service(s) => s.inline,
            Exec::Nothing => false,
        }
    }
}

/// Who runs a native handler for requests this reader parsed: requests the handler says may
/// block ([`Handler::blocking`]) go to the blocking pool when there is one; the others to the
/// worker pool when the shape has workers (`pool`), else to the reader itself, between
/// reads. Blocking calls thus never hold up fast requests, even behind a worker pool.
pub(crate) struct HandlerExec {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) workers: Option<PoolLink>,
    pub(crate) blocking: Option<PoolLink>,
}

impl HandlerExec {
    /// The pool `req` goes to, or `None` to run it here.
    pub(crate) fn pool_for(&self, req: &h1::Request) -> Option<&PoolLink> {
        match &self.blocking {
            Some(link) if self.handler.blocking().blocks(req) => Some(link),
            _ => self.workers.as_ref(),
        }
    }

    pub(crate) fn links(&self) -> impl Iterator<Item = &PoolLink> {
        self.workers.iter().chain(self.blocking.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_answer_takes_its_allocation_and_a_small_one_leaves_room() {
        let mut out = BytesMut::with_capacity(16 * 1024);
        out.extend_from_slice(&[b'x'; 100]);
        let small = encoded(&mut out);
        assert_eq!(small.len(), 100);
        assert!(
            out.capacity() > 0,
            "a small answer leaves its buffer's room"
        );
        drop(small);
        out.extend_from_slice(&vec![b'y'; 4 << 20]);
        let large = encoded(&mut out);
        assert_eq!(large.len(), 4 << 20);
        drop(large);
        // The next answer cannot reclaim the 4 MiB: `out` holds none of it.
        out.reserve(1);
        assert!(out.capacity() <= MAX_KEPT_ENCODE, "{}", out.capacity());
    }
}
