//! The handoff mechanism `dispatch` and `pool` use: a crossbeam queue plus an eventfd wake
//! that coalesces. Measures one handoff (push + wake + reset + pop) on one thread, and a
//! burst of 64 handoffs that share one wake-up. Run with `cargo bench -p backlog-sys`.

// criterion_group!/criterion_main! generate undocumented items.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sys::Waker;

fn handoff(c: &mut Criterion) {
    let waker = Waker::new().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<u64>();
    c.bench_function("handoff: push, wake, reset, pop", |b| {
        b.iter(|| {
            tx.send(black_box(7)).unwrap();
            waker.wake();
            waker.reset();
            black_box(rx.try_recv().unwrap());
        })
    });
    c.bench_function("handoff: 64 pushes sharing one wake", |b| {
        b.iter(|| {
            for i in 0..64u64 {
                tx.send(i).unwrap();
                waker.wake();
            }
            waker.reset();
            while let Ok(v) = rx.try_recv() {
                black_box(v);
            }
        })
    });
}

criterion_group!(benches, handoff);
criterion_main!(benches);
