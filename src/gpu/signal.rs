//! A one-shot signal: a wgpu callback (a buffer mapped, submitted work done) sets it, an async
//! function awaits it. The browser runs such callbacks from its event loop; natively they run
//! inside `device.poll`, which the waiting code calls first (see `GpuContext::wait_async`).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

struct State<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

type Shared<T> = Arc<(Mutex<State<T>>, Condvar)>;

/// The receiving half: a future of the value.
pub(crate) struct Signal<T>(Shared<T>);

/// The sending half, moved into the callback.
pub(crate) struct Setter<T>(Shared<T>);

pub(crate) fn signal<T>() -> (Setter<T>, Signal<T>) {
    let s = Arc::new((
        Mutex::new(State {
            value: None,
            waker: None,
        }),
        Condvar::new(),
    ));
    (Setter(s.clone()), Signal(s))
}

impl<T> Setter<T> {
    pub(crate) fn set(self, v: T) {
        let waker = {
            let mut s = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            s.value = Some(v);
            s.waker.take()
        };
        self.0 .1.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Signal<T> {
    /// Blocks the thread until the value is set or `timeout` passes (native only: a browser
    /// cannot block, and awaits the signal instead).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn wait_timeout(&self, timeout: std::time::Duration) -> Option<T> {
        let (m, cv) = &*self.0;
        let guard = m.lock().unwrap_or_else(|p| p.into_inner());
        let (mut guard, _) = cv
            .wait_timeout_while(guard, timeout, |s| s.value.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.value.take()
    }
}

impl<T> Future for Signal<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
