//! Boxes a thread keeps for the next request or response it builds.
//!
//! A [`crate::Request`] and a [`crate::Response`] are one pointer each, so that moving them
//! between the decoder, the connection, the panic guard, the router and the handler copies
//! eight bytes instead of a few hundred. The box that costs is given back when the value
//! drops and handed to the next one built on the same thread: a reader that decodes,
//! answers and drops on one thread allocates nothing per request once warm.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// How many boxes of one kind a thread keeps: a reader answering a pipeline of 16 needs no
/// more, and a thread that only drops values (a pool worker, for requests) must not hoard.
const SPARES: usize = 16;

/// A thread's spare boxes of one kind (boxes, not values: a spare goes back into service as
/// the pointer it is).
#[allow(clippy::vec_box)]
pub(crate) type Spares<T> = RefCell<Vec<Box<T>>>;

/// A value that lives in a recycled box.
pub(crate) trait Recycle: Sized + 'static {
    /// This thread's spares of this kind.
    fn spares() -> &'static LocalKey<Spares<Self>>;
    /// Let go of everything the value refers to (buffers, the application's state), keeping
    /// only room of its own.
    fn empty(&mut self);
}

/// `value` in a box: a spare one when this thread has one.
pub(crate) fn boxed<T: Recycle>(value: T) -> Box<T> {
    match T::spares()
        .try_with(|s| s.borrow_mut().pop())
        .ok()
        .flatten()
    {
        Some(mut spare) => {
            *spare = value;
            spare
        }
        None => Box::new(value),
    }
}

/// Empty `b` and keep it for this thread's next [`boxed`], unless the thread keeps enough
/// (or is exiting).
pub(crate) fn give_back<T: Recycle>(mut b: Box<T>) {
    b.empty();
    let _ = T::spares().try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARES {
                s.push(b);
            }
        }
    });
}

/// A value in a recycled box: built with [`boxed`], given back when it drops.
pub(crate) struct Recycled<T: Recycle>(Option<Box<T>>);

impl<T: Recycle> Recycled<T> {
    pub(crate) fn new(value: T) -> Self {
        Recycled(Some(boxed(value)))
    }
}

impl<T: Recycle + Default> Recycled<T> {
    /// An empty value to fill in place: a spare box as [`Recycle::empty`] left it, or a new
    /// default one. Building the value elsewhere and moving it into the box copied the
    /// whole of it and dropped the spare's old contents first, on every request.
    pub(crate) fn fresh() -> Self {
        let spare = T::spares()
            .try_with(|s| s.borrow_mut().pop())
            .ok()
            .flatten();
        Recycled(Some(spare.unwrap_or_default()))
    }
}

impl<T: Recycle> Deref for Recycled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0
            .as_deref()
            .expect("the box is taken only when it drops")
    }
}

impl<T: Recycle> DerefMut for Recycled<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
            .as_deref_mut()
            .expect("the box is taken only when it drops")
    }
}

impl<T: Recycle> Drop for Recycled<T> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            give_back(b);
        }
    }
}

impl<T: Recycle + Clone> Clone for Recycled<T> {
    fn clone(&self) -> Self {
        Recycled::new(T::clone(self))
    }
}

impl<T: Recycle + std::fmt::Debug> std::fmt::Debug for Recycled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}
