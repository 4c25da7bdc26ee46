//! A request's body as a service reads it: whole, or streamed as the reader receives it.
//!
//! A body the reader buffered (small, under the threshold) comes in one frame. A larger or
//! chunked one is fed through a pipe: the reader pushes each decoded piece as it
//! arrives, the service's task takes them as it reads. The pipe holds at most
//! 256 KiB; when it is full the reader stops reading that connection, so the
//! bytes wait in the kernel's receive queue and TCP's window slows the client — a handler
//! that reads slowly makes its client wait, and memory per connection stays bounded. When
//! the service takes the pipe below half full, it wakes the reader to read again.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Bytes of one streamed request body held between the reader and the service.
pub(crate) const PIPE_WINDOW: usize = 256 * 1024;

/// Why a streamed body ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The client went away (closed, reset or half-closed) before the body's last byte came.
    #[error("the request body was cut short: the client went away")]
    Incomplete,
    /// The body stopped arriving: the body timeout passed with nothing more of it.
    #[error("the request body stopped arriving: the body timeout passed")]
    TimedOut,
    /// The body broke HTTP/1.1's framing (a bad chunk) or went past the body limit after
    /// its request was handed over. The connection closes after the answer; a service whose
    /// answer fails with this error (as `--app echo`'s streamed-back body does) is answered
    /// with the refusal's status ([`h1::Error::status`]: 400, 413), not 500.
    #[error("the request body was refused: {0}")]
    Refused(h1::Error),
}

impl BodyError {
    /// The client's fault as the server answers it when a service fails because of it: the
    /// status and reason of the refusal (400 cut short, 408 timed out, the framing's own).
    pub(crate) fn refusal(self) -> (u16, String) {
        match self {
            BodyError::Incomplete => (400, "request body cut short".to_string()),
            BodyError::TimedOut => (408, "request timed out".to_string()),
            BodyError::Refused(err) => (err.status(), err.to_string()),
        }
    }
}

/// A request's body as a service reads it: an `http_body::Body` of `Bytes`.
#[derive(Debug, Default)]
pub struct RequestBody {
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    /// Read with the head; taken by the first poll.
    #[default]
    Empty,
    Whole(Bytes),
    Streamed {
        pipe: Arc<Pipe>,
        /// Bytes still to come, when the head gave a length.
        left: Option<u64>,
    },
}

impl RequestBody {
    /// A body of these bytes.
    pub fn whole(bytes: Bytes) -> Self {
        RequestBody {
            kind: if bytes.is_empty() {
                Kind::Empty
            } else {
                Kind::Whole(bytes)
            },
        }
    }

    /// A body fed by the reader through `pipe`; `length` when the head gave one.
    pub(crate) fn streamed(pipe: Arc<Pipe>, length: Option<u64>) -> Self {
        RequestBody {
            kind: Kind::Streamed { pipe, left: length },
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Whole(_) => match std::mem::take(&mut self.kind) {
                Kind::Whole(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                _ => Poll::Ready(None),
            },
            Kind::Streamed { pipe, left } => {
                let polled = pipe.take(cx);
                if let Poll::Ready(Some(Ok(bytes))) = &polled {
                    if let Some(left) = left {
                        *left = left.saturating_sub(bytes.len() as u64);
                    }
                }
                polled.map(|piece| piece.map(|r| r.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Whole(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Streamed { left: Some(n), .. } => SizeHint::with_exact(*n),
            Kind::Streamed { left: None, .. } => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Kind::Streamed { pipe, .. } = &self.kind {
            pipe.abandon();
        }
    }
}

/// The reader's end and the service's end of one streamed body.
#[derive(Debug)]
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    /// The reader's event loop, woken when a full pipe has room again.
    reader: Arc<sys::Waker>,
}

#[derive(Debug, Default)]
struct PipeState {
    pieces: VecDeque<Bytes>,
    buffered: usize,
    ended: bool,
    failed: Option<BodyError>,
    /// The service dropped its body: what still comes is read and thrown away, so that the
    /// connection finds the next request.
    abandoned: bool,
    /// The reader stopped reading for want of room.
    paused: bool,
    consumer: Option<Waker>,
}

impl Pipe {
    pub(crate) fn new(reader: Arc<sys::Waker>) -> Self {
        Pipe {
            state: Mutex::default(),
            reader,
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The reader's side: a decoded piece, `last` when the body ends with it. Returns
    /// whether there is room for more (else the reader pauses the connection until woken).
    pub(crate) fn push(&self, bytes: Bytes, last: bool) -> bool {
        let mut st = self.lock();
        st.ended |= last;
        if !st.abandoned && !bytes.is_empty() {
            st.buffered += bytes.len();
            st.pieces.push_back(bytes);
        }
        let room = st.abandoned || st.buffered < PIPE_WINDOW;
        st.paused = !room;
        if let Some(waker) = st.consumer.take() {
            waker.wake();
        }
        room
    }

    /// The reader's side: the body will not be completed (`why`: the client went away, it
    /// timed out, or its framing broke).
    /// What came before stays to be taken; the error comes after it.
    pub(crate) fn fail(&self, why: BodyError) {
        let mut st = self.lock();
        if !st.ended {
            st.failed = Some(why);
        }
        if let Some(waker) = st.consumer.take() {
            waker.wake();
        }
    }

    /// Whether a paused reader may read again.
    pub(crate) fn has_room(&self) -> bool {
        !self.lock().paused
    }

    /// The service's side: the next piece, the end, or a wait.
    fn take(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        let mut st = self.lock();
        if let Some(bytes) = st.pieces.pop_front() {
            st.buffered -= bytes.len();
            if st.paused && st.buffered < PIPE_WINDOW / 2 {
                st.paused = false;
                self.reader.wake();
            }
            return Poll::Ready(Some(Ok(bytes)));
        }
        if st.ended {
            return Poll::Ready(None);
        }
        if let Some(why) = st.failed {
            return Poll::Ready(Some(Err(why)));
        }
        st.consumer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The service dropped the body before its end.
    fn abandon(&self) {
        let mut st = self.lock();
        st.abandoned = true;
        st.pieces.clear();
        st.buffered = 0;
        if std::mem::take(&mut st.paused) {
            self.reader.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(body: &mut RequestBody) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    #[test]
    fn a_whole_body_is_one_frame_then_the_end() {
        let mut body = RequestBody::whole(Bytes::from_static(b"abc"));
        assert_eq!(body.size_hint().exact(), Some(3));
        let Poll::Ready(Some(Ok(frame))) = poll(&mut body) else {
            panic!("one frame");
        };
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(body.is_end_stream());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
        assert!(RequestBody::whole(Bytes::new()).is_end_stream());
    }

    #[test]
    fn a_streamed_body_pauses_the_reader_when_full_and_wakes_it_when_read() {
        let waker = Arc::new(sys::Waker::new().unwrap());
        let pipe = Arc::new(Pipe::new(waker.clone()));
        let mut body = RequestBody::streamed(pipe.clone(), Some(PIPE_WINDOW as u64 + 10));
        assert!(poll(&mut body).is_pending());
        assert!(pipe.push(Bytes::from(vec![1; PIPE_WINDOW - 1]), false));
        assert!(!pipe.push(Bytes::from(vec![2; 1]), false), "full");
        assert!(!pipe.has_room());
        let Poll::Ready(Some(Ok(frame))) = poll(&mut body) else {
            panic!("a piece");
        };
        assert_eq!(frame.into_data().unwrap().len(), PIPE_WINDOW - 1);
        assert!(pipe.has_room(), "read below half: the reader may go on");
        assert!(pipe.push(Bytes::from(vec![3; 10]), true));
        assert!(poll(&mut body).is_ready());
        assert_eq!(body.size_hint().exact(), Some(10));
        assert!(poll(&mut body).is_ready());
        assert!(matches!(poll(&mut body), Poll::Ready(None)));
    }

    #[test]
    fn a_body_cut_short_is_an_error_and_one_dropped_takes_no_more() {
        let waker = Arc::new(sys::Waker::new().unwrap());
        let pipe = Arc::new(Pipe::new(waker));
        let mut body = RequestBody::streamed(pipe.clone(), None);
        pipe.fail(BodyError::Incomplete);
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(BodyError::Incomplete)))
        ));
        drop(body);
        assert!(
            pipe.push(Bytes::from(vec![0; PIPE_WINDOW * 2]), false),
            "thrown away"
        );
        assert!(pipe.lock().pieces.is_empty());
    }
}
