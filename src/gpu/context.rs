//! One GPU context: a wgpu device + queue, its adapter's description, its limits, the guards
//! that turn wgpu's panics into errors (error scopes, bounded waits, device-loss tracking), and
//! the per-device caches every op shares (kernels, bind groups, uniforms, output buffers, the
//! pending command encoder).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use crate::error::GpuErrorKind;
use crate::error::{Error, Result};
use crate::gpu::kernels::KernelCache;
use crate::gpu::launch::Pending;
use crate::gpu::pool::Pool;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A submission wgnn made: its sequence number (1, 2, …) on this device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ticket(u64);

#[derive(Default)]
struct Inflight {
    /// Sequence number of the newest submission.
    newest: u64,
    queue: VecDeque<(u64, wgpu::SubmissionIndex)>,
}

/// Everything wgnn holds for one GPU device. Shared behind an `Arc` by every tensor on it.
pub(crate) struct GpuContext {
    pub id: u64,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// Why the adapter was chosen (for `examples/adapters`).
    pub choice: String,
    /// Set by the device-lost callback (devices wgnn created).
    pub lost: Arc<Mutex<Option<String>>>,
    /// Whether wgnn owns the device-lost callback (devices it created, not adopted ones).
    owns_callbacks: bool,
    /// Number of queue submissions wgnn made on this device (tests assert batching with it).
    pub submissions: AtomicU64,
    /// How long a wait may go without any submission finishing (see [`GpuContext::wait`]).
    pub timeout: Duration,
    /// Estimated work (see `Launch::work`) after which recorded ops are submitted, so that
    /// no one submission runs long enough to look like a stalled GPU.
    pub work_per_submission: u64,
    /// wgnn's submissions not yet known to be finished, oldest first.
    inflight: Mutex<Inflight>,
    /// The sequence number of the newest submission known to be finished.
    completed: Arc<AtomicU64>,
    /// Pipelines and bind-group layouts, built once per kernel.
    pub(crate) kernels: KernelCache,
    /// The command encoder ops record into, the uniform ring and the bind-group cache.
    pub(crate) pending: Mutex<Pending>,
    /// Output buffers returned by dropped tensors, by size class.
    pub(crate) pool: Mutex<Pool>,
    /// Bytes of device buffers that tensors hold now (pooled free buffers not counted).
    pub(crate) live_bytes: AtomicU64,
    /// The most `live_bytes` has been since the device opened or the last reset.
    pub(crate) peak_bytes: AtomicU64,
    /// Kernel choices as on a discrete GPU even on a CPU rasteriser (see `gpu::tuning`).
    pub(crate) tune_as_gpu: std::sync::atomic::AtomicBool,
    /// A matrix-product kernel forced for tests (see `gpu::tuning`).
    pub(crate) force_matmul: Mutex<Option<crate::gpu::tuning::ForcedMatmul>>,
    /// In a browser, where error scopes cannot be waited for on the spot: each op's popped
    /// scopes, awaited at the next await point ([`GpuContext::errors_async`]).
    #[cfg(target_arch = "wasm32")]
    deferred: Mutex<Vec<(String, DeferredScopes)>>,
}

/// The error scopes of one op, outermost first.
struct OpScopes {
    oom: wgpu::ErrorScopeGuard,
    internal: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

/// The three popped error scopes of one op (validation, internal, out of memory).
#[cfg(target_arch = "wasm32")]
type DeferredScopes =
    Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Option<wgpu::Error>> + Send>>>;

impl GpuContext {
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        choice: String,
        timeout: Duration,
        work_per_submission: Option<u64>,
        own_callbacks: bool,
    ) -> Self {
        let info = device.adapter_info();
        let limits = device.limits();
        let work_per_submission =
            work_per_submission.unwrap_or_else(|| default_work_per_submission(info.device_type));
        let lost = Arc::new(Mutex::new(None));
        if own_callbacks {
            let flag = lost.clone();
            device.set_device_lost_callback(move |reason, message| {
                if let Ok(mut g) = flag.lock() {
                    *g = Some(format!(
                        "{reason:?}{}",
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(": {message}")
                        }
                    ));
                }
            });
            device.on_uncaptured_error(Arc::new(|e: wgpu::Error| {
                log::error!("wgpu error outside any wgnn error scope: {e}");
            }));
        }
        GpuContext {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            info,
            limits,
            choice,
            lost,
            owns_callbacks: own_callbacks,
            submissions: AtomicU64::new(0),
            timeout,
            work_per_submission: work_per_submission.max(1),
            inflight: Mutex::new(Inflight::default()),
            completed: Arc::new(AtomicU64::new(0)),
            kernels: KernelCache::default(),
            pending: Mutex::new(Pending::default()),
            pool: Mutex::new(Pool::default()),
            live_bytes: AtomicU64::new(0),
            peak_bytes: AtomicU64::new(0),
            tune_as_gpu: std::sync::atomic::AtomicBool::new(false),
            force_matmul: Mutex::new(None),
            #[cfg(target_arch = "wasm32")]
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn describe(&self) -> String {
        // Browsers may withhold the adapter's name (WebGPU's `description` is often empty).
        let name = if self.info.name.is_empty() {
            "an adapter the browser does not name"
        } else {
            &self.info.name
        };
        format!(
            "{name} ({:?}, {:?})",
            self.info.backend, self.info.device_type
        )
    }

    pub fn lost_reason(&self) -> Option<String> {
        self.lost.lock().ok().and_then(|g| g.clone())
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn mark_lost(&self, reason: &str) {
        if let Ok(mut g) = self.lost.lock() {
            if g.is_none() {
                *g = Some(reason.to_string());
            }
        }
    }

    /// An error if the device is known to be lost (no polling: cheap enough for every op).
    fn lost_error(&self, op: &str) -> Result<()> {
        match self.lost_reason() {
            Some(reason) => Err(Error::DeviceLost {
                op: op.to_string(),
                adapter: self.describe(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Polls once so that a pending device-lost callback runs (a destroyed device reports
    /// nothing else: WebGPU makes work on a lost device silently do nothing), then checks.
    pub fn check_alive(&self, op: &str) -> Result<()> {
        if self.owns_callbacks && self.lost_reason().is_none() {
            let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(wgpu::PollType::Poll)));
        }
        self.lost_error(op)
    }

    /// The pending-work lock. A panic while it was held (there are none by design) would
    /// poison it; the state inside stays usable, so take it anyway.
    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `bytes` more held by tensors, raising the high-water mark.
    pub(crate) fn hold(&self, bytes: u64) {
        let now = self.live_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak_bytes.fetch_max(now, Ordering::AcqRel);
    }

    /// Counts `bytes` no longer held by a tensor.
    pub(crate) fn release(&self, bytes: u64) {
        self.live_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pushes an op's error scopes (popped in reverse: validation, internal, out of memory)
    /// and enters its recording scope: (the guards, the scope's id, the scope to restore).
    fn open_scopes(&self) -> (OpScopes, u64, u64) {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let (scope, previous) = crate::gpu::launch::enter_scope();
        let scopes = OpScopes {
            oom,
            internal,
            validation,
        };
        (scopes, scope, previous)
    }

    /// Runs `f` inside validation / out-of-memory / internal error scopes, so that wgpu's
    /// default panic-on-error never fires; the first captured error becomes an `Err`. One call
    /// per public operation. A device known to be lost fails before anything runs; an error is
    /// told apart from a loss by wgpu's device-lost callback, never by its message.
    ///
    /// While the thread profiles this device ([`crate::profile`]) the op is an event of the
    /// profile; with host timing, the work before it is waited for first and the op after.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn scoped<T>(&self, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let dev = Some(self.id);
        let Some(event) = crate::profile::begin(dev, op) else {
            return self.scoped_unprofiled(op, f);
        };
        let host =
            crate::profile::with(dev, |r| r.timing) == Some(crate::profile::Timing::HostSync);
        if host {
            self.profiler_sync()?;
        }
        let t0 = std::time::Instant::now();
        let out = self.scoped_unprofiled(op, f);
        if host && out.is_ok() {
            self.profiler_sync()?;
        }
        crate::profile::end(dev, event, t0.elapsed());
        out
    }

    /// Submits and waits for everything recorded, as the profiler's own work (no event).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn profiler_sync(&self) -> Result<()> {
        let dev = Some(self.id);
        crate::profile::with(dev, |r| r.busy = true);
        let out = self
            .flush("profile")
            .and_then(|()| self.wait("profile", None));
        crate::profile::with_busy(dev, |r| r.busy = false);
        out
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn scoped_unprofiled<T>(&self, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.lost_error(op)?;
        let (scopes, scope, previous) = self.open_scopes();
        let out = catch_unwind(AssertUnwindSafe(f));
        crate::gpu::launch::leave_scope(previous);
        let v = pollster::block_on(scopes.validation.pop());
        let i = pollster::block_on(scopes.internal.pop());
        let o = pollster::block_on(scopes.oom.pop());
        if !matches!(out, Ok(Ok(_))) || v.is_some() || i.is_some() || o.is_some() {
            // What a failed op recorded is invalid or half-done: it must not reach the queue,
            // where an invalid command buffer would fail the next op's submission too.
            self.pending().discard(scope);
        }
        let out = match out {
            Ok(out) => out,
            Err(_) => {
                // wgpu panics on a few fatal paths (a lost device among them): a poll lets a
                // loss show through its callback; any other panic is a bug, not a lost device.
                return self
                    .check_alive(op)
                    .and(Err(Error::internal(format!("a panic during {op}"))));
            }
        };
        if let Some(e) = v.or(i).or(o) {
            // An error may be the first sign of a lost device: let its callback arrive.
            if self.owns_callbacks {
                let poll = wgpu::PollType::Wait {
                    submission_index: None,
                    timeout: Some(Duration::from_secs(1)),
                };
                let _ = catch_unwind(AssertUnwindSafe(|| self.device.poll(poll)));
            }
            self.check_alive(op)?;
            return Err(Error::gpu(op, self.describe(), &e));
        }
        out
    }

    /// In a browser an error scope is a promise, which cannot be waited for inside an op: the
    /// op runs inside its scopes, and the popped scopes are kept, with the op's name, until the
    /// next await point ([`GpuContext::errors_async`]), which reports the first error and names
    /// the op that caused it.
    #[cfg(target_arch = "wasm32")]
    pub fn scoped<T>(&self, op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.lost_error(op)?;
        let (scopes, scope, previous) = self.open_scopes();
        let out = f();
        crate::gpu::launch::leave_scope(previous);
        let scopes: DeferredScopes = vec![
            Box::pin(scopes.validation.pop()),
            Box::pin(scopes.internal.pop()),
            Box::pin(scopes.oom.pop()),
        ];
        self.deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op.to_string(), scopes));
        if out.is_err() {
            self.pending().discard(scope);
        }
        out
    }

    /// Submits the pending command buffers (ops recorded since the last submission) followed by
    /// `cmds`, in one counted submission. Must be called inside an error scope.
    ///
    /// The pending lock is held until the queue has the work: taking the recorded buffers
    /// resets the uniform ring, and the params of ops recorded next are written with
    /// `write_buffer`, which wgpu applies at the *next* submission. Were the lock released in
    /// between, another thread could record (overwriting slots the taken buffers still read) or
    /// submit its own work
    /// (read-backs, uploads) ahead of the buffers it depends on, and results would be wrong
    /// without an error (issue 19).
    pub fn submit_unscoped(&self, cmds: impl IntoIterator<Item = wgpu::CommandBuffer>) -> Ticket {
        let mut pending = self.pending();
        let recorded = pending.take_recorded();
        self.submit_encoder(recorded, cmds)
    }

    /// One counted submission: `recorded` (taken from the pending state) first, then `cmds`.
    /// The caller holds the pending lock (see [`GpuContext::submit_unscoped`]), so submissions
    /// reach the queue in the order of their sequence numbers.
    pub(crate) fn submit_encoder(
        &self,
        recorded: Vec<wgpu::CommandBuffer>,
        cmds: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> Ticket {
        let idx = self.queue.submit(recorded.into_iter().chain(cmds));
        self.submissions.fetch_add(1, Ordering::Relaxed);
        let mut inflight = self.inflight();
        inflight.newest += 1;
        let seq = inflight.newest;
        let done = self.completed.clone();
        self.queue.on_submitted_work_done(move || {
            done.fetch_max(seq, Ordering::AcqRel);
        });
        // Forget what is known to be done (the callbacks run as the device is polled).
        let completed = self.completed.load(Ordering::Acquire);
        while inflight.queue.front().is_some_and(|(s, _)| *s <= completed) {
            inflight.queue.pop_front();
        }
        inflight.queue.push_back((seq, idx));
        Ticket(seq)
    }

    fn inflight(&self) -> MutexGuard<'_, Inflight> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// [`GpuContext::submit_unscoped`] inside its own error scope.
    pub fn submit(
        &self,
        op: &str,
        cmds: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> Result<Ticket> {
        self.scoped(op, || Ok(self.submit_unscoped(cmds)))
    }

    /// Submits recorded ops, if any, without waiting.
    pub fn flush(&self, op: &str) -> Result<()> {
        if self.pending().is_empty() {
            return Ok(());
        }
        self.submit(op, []).map(|_| ())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// Waits until submission `until` (every submission when `None`) has finished.
    ///
    /// The timeout detects a GPU that makes no progress; it does not bound the length of a
    /// job. wgnn's submissions are waited for one at a time, oldest first, each within
    /// `self.timeout`, and recorded work is submitted in pieces of at most
    /// `work_per_submission` (see `Pending`), so a long healthy job is many short waits that
    /// each end, while a GPU on which nothing finishes for `timeout` is an error.
    pub fn wait(&self, op: &str, until: Option<Ticket>) -> Result<()> {
        self.check_alive(op)?;
        let target = until.map_or_else(|| self.inflight().newest, |t| t.0);
        loop {
            let completed = self.completed.load(Ordering::Acquire);
            if completed >= target {
                break;
            }
            let next = self
                .inflight()
                .queue
                .iter()
                .find(|(s, _)| *s > completed)
                .cloned();
            let Some((seq, idx)) = next else { break };
            self.poll_wait(op, Some(idx))?;
            self.completed.fetch_max(seq, Ordering::AcqRel);
        }
        if until.is_none() {
            // Work the application submitted itself on an adopted device.
            self.poll_wait(op, None)?;
        }
        self.check_alive(op)
    }

    /// [`GpuContext::wait`] for every target. Natively it is the same bounded blocking wait
    /// (an async caller on a native executor blocks its thread for it, as `pollster` does); in
    /// a browser it awaits the queue's report that the work submitted so far is done, then the
    /// error scopes of the ops recorded since the last await point.
    pub async fn wait_async(&self, op: &str, until: Option<Ticket>) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.wait(op, until)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = until;
            self.check_alive(op)?;
            let (tx, rx) = crate::gpu::signal::signal();
            self.queue.on_submitted_work_done(move || tx.set(()));
            rx.await;
            self.errors_async().await?;
            self.check_alive(op)
        }
    }

    /// The first error of the ops recorded since the last await point, naming its op (in a
    /// browser; natively every op reports its own errors on the spot).
    #[cfg(target_arch = "wasm32")]
    pub async fn errors_async(&self) -> Result<()> {
        {
            let all = std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|p| p.into_inner()));
            let mut first = None;
            for (op, scopes) in all {
                for s in scopes {
                    if let Some(e) = s.await {
                        first.get_or_insert(Error::gpu(&op, self.describe(), &e));
                    }
                }
            }
            if let Some(e) = first {
                return Err(e);
            }
        }
        Ok(())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// One bounded `poll(Wait)`, its failures as errors.
    fn poll_wait(&self, op: &str, idx: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let poll = wgpu::PollType::Wait {
            submission_index: idx,
            timeout: Some(self.timeout),
        };
        // wgpu panics in `poll` if the device is lost (its fatal-error path); keep that a value.
        let r = catch_unwind(AssertUnwindSafe(|| self.device.poll(poll)));
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(wgpu::PollError::Timeout)) => {
                self.check_alive(op)?;
                Err(Error::Timeout {
                    op: op.to_string(),
                    adapter: self.describe(),
                    seconds: self.timeout.as_secs_f64(),
                })
            }
            Ok(Err(e)) => {
                self.check_alive(op)?;
                Err(Error::Gpu {
                    op: op.to_string(),
                    adapter: self.describe(),
                    kind: GpuErrorKind::Other,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                self.mark_lost("wgpu reported a fatal error while waiting");
                self.check_alive(op)
            }
        }
    }

    /// Checks a size against `max_buffer_size`.
    pub fn check_buffer_size(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.limits.max_buffer_size {
            return Err(Error::Limit {
                what: what.to_string(),
                requested: bytes,
                limit_name: "max_buffer_size",
                limit: self.limits.max_buffer_size,
                adapter: self.describe(),
            });
        }
        Ok(())
    }

    /// Largest byte range one storage binding may cover, rounded down to 256.
    pub fn max_binding(&self) -> u64 {
        let lim = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        lim & !255
    }

    /// The offset alignment of storage bindings.
    pub fn storage_align(&self) -> u64 {
        (self.limits.min_storage_buffer_offset_alignment as u64).max(16)
    }
}

/// Work per submission when the options leave it open: about a tenth of a second of work on
/// each kind of adapter (a software rasteriser does a few GFLOP/s, a GPU hundreds or more), so
/// submissions stay cheap in number and each one ends far inside any sensible timeout.
fn default_work_per_submission(t: wgpu::DeviceType) -> u64 {
    match t {
        wgpu::DeviceType::Cpu => 1 << 30,
        wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::Other => 1 << 34,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::VirtualGpu => 1 << 37,
    }
}
