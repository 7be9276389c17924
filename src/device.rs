//! Devices: the CPU, or a GPU found the way wgpu users expect (the `WGPU_*` variables), the
//! software adapter, or a `wgpu::Device` adopted from an application.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// Where a tensor lives. Cheap to clone; two GPU devices are equal when they are the same
/// wgnn device (the same `wgpu::Device`), not merely the same adapter.
#[derive(Clone)]
pub enum Device {
    /// Host memory. A full device: every operation has a CPU path.
    Cpu,
    /// A GPU (or software adapter) through wgpu.
    Gpu(GpuDevice),
}

/// A handle on one wgpu device and queue. Cheap to clone.
#[derive(Clone)]
pub struct GpuDevice(pub(crate) Arc<GpuContext>);

/// How to find and open a GPU. [`GpuOptions::from_env`] reads `WGPU_BACKEND`,
/// `WGPU_POWER_PREF` and `WGPU_ADAPTER_NAME`.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    /// Backends to search (`WGPU_BACKEND`, e.g. `vulkan`, `gl`, `metal`, `dx12`).
    pub backends: wgpu::Backends,
    /// Power preference (`WGPU_POWER_PREF`: `low`, `high`, `none`).
    pub power_preference: wgpu::PowerPreference,
    /// Case-insensitive substring of the adapter name (`WGPU_ADAPTER_NAME`).
    pub adapter_name: Option<String>,
    /// Take only a software adapter (lavapipe / llvmpipe / WARP).
    pub force_fallback_adapter: bool,
    /// Limits to request; `None` asks for everything the adapter has.
    pub limits: Option<wgpu::Limits>,
    /// How long a wait may go without any of wgnn's submissions finishing before it is an
    /// error ([`Error::Timeout`](crate::Error::Timeout)): it detects a GPU that makes no
    /// progress and never bounds the length of a healthy job, which is submitted in pieces of
    /// at most [`work_per_submission`](GpuOptions::work_per_submission). It must exceed the
    /// longest single dispatch.
    pub timeout: Duration,
    /// Estimated work after which recorded ops are submitted (a FLOP of a matrix product or
    /// a byte an elementwise kernel moves counts one). `None` picks about a tenth of a second
    /// for the adapter's kind: 2^30 on a software adapter, 2^34 on an integrated GPU, 2^37 on
    /// a discrete one.
    pub work_per_submission: Option<u64>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backends: wgpu::Backends::all(),
            power_preference: wgpu::PowerPreference::HighPerformance,
            adapter_name: None,
            force_fallback_adapter: false,
            limits: None,
            timeout: Duration::from_secs(60),
            work_per_submission: None,
        }
    }
}

impl GpuOptions {
    /// Defaults, overridden by `WGPU_BACKEND`, `WGPU_POWER_PREF` and `WGPU_ADAPTER_NAME`.
    pub fn from_env() -> Self {
        let mut o = GpuOptions::default();
        if let Some(b) = wgpu::Backends::from_env() {
            o.backends = b;
        }
        if let Some(p) = wgpu::PowerPreference::from_env() {
            o.power_preference = p;
        }
        o.adapter_name = std::env::var("WGPU_ADAPTER_NAME")
            .ok()
            .filter(|s| !s.is_empty());
        o
    }
}

/// One adapter as wgnn reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterSummary {
    /// The driver's adapter name.
    pub name: String,
    /// Vulkan, Metal, Dx12, Gl.
    pub backend: wgpu::Backend,
    /// Discrete, integrated, virtual, CPU (software) or other.
    pub device_type: wgpu::DeviceType,
    /// Driver name and version.
    pub driver: String,
    /// Its limits.
    pub limits: wgpu::Limits,
}

impl fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?})",
            self.name, self.backend, self.device_type
        )
    }
}

const NO_ADAPTER_HINT: &str =
    "on Linux install a software adapter with `apt-get install mesa-vulkan-drivers` \
     (lavapipe) or use Mesa's llvmpipe with WGPU_BACKEND=gl";

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let i = a.get_info();
    AdapterSummary {
        name: i.name.clone(),
        backend: i.backend,
        device_type: i.device_type,
        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        limits: a.limits(),
    }
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// Every adapter wgpu finds on these backends (native; [`enumerate_adapters_async`] on every
/// target).
#[cfg(not(target_arch = "wasm32"))]
pub fn enumerate_adapters(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    pollster::block_on(enumerate_adapters_async(backends))
}

/// Every adapter wgpu finds on these backends, for every target (in a browser: the one
/// WebGPU adapter, if the browser has WebGPU).
pub async fn enumerate_adapters_async(backends: wgpu::Backends) -> Vec<AdapterSummary> {
    adapters(&instance(backends), backends, &GpuOptions::default())
        .await
        .iter()
        .map(summarize)
        .collect()
}

/// The adapters on `backends`. A browser lists none (WebGPU has no enumeration): there the
/// one `requestAdapter` answers with is the list.
async fn adapters(
    inst: &wgpu::Instance,
    backends: wgpu::Backends,
    opts: &GpuOptions,
) -> Vec<wgpu::Adapter> {
    let all = inst.enumerate_adapters(backends).await;
    if !all.is_empty() {
        return all;
    }
    inst.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: opts.power_preference,
        force_fallback_adapter: opts.force_fallback_adapter,
        compatible_surface: None,
        apply_limit_buckets: false,
    })
    .await
    .into_iter()
    .collect()
}

fn rank(t: wgpu::DeviceType, p: wgpu::PowerPreference) -> u32 {
    use wgpu::DeviceType as T;
    match (p, t) {
        (wgpu::PowerPreference::LowPower, T::IntegratedGpu) => 0,
        (wgpu::PowerPreference::LowPower, T::DiscreteGpu) => 1,
        (_, T::DiscreteGpu) => 0,
        (_, T::IntegratedGpu) => 1,
        (_, T::VirtualGpu) => 2,
        (_, T::Other) => 3,
        (_, T::Cpu) => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

/// Picks an adapter by the options and says why.
async fn choose(opts: &GpuOptions) -> Result<(wgpu::Adapter, String)> {
    if cfg!(target_arch = "wasm32") && !opts.backends.contains(wgpu::Backends::BROWSER_WEBGPU) {
        return Err(Error::NoAdapter {
            backends: format!("{:?}", opts.backends),
            hint: "in a browser wgnn runs on WebGPU only: WebGL2 has no compute shaders, \
                   which every wgnn kernel is"
                .into(),
        });
    }
    let inst = instance(opts.backends);
    let adapters = adapters(&inst, opts.backends, opts).await;
    let names: Vec<String> = adapters.iter().map(|a| summarize(a).to_string()).collect();
    let backends = format!("{:?}", opts.backends);
    let mut candidates: Vec<(usize, &wgpu::Adapter)> = adapters.iter().enumerate().collect();
    let mut why = Vec::new();
    if let Some(wanted) = &opts.adapter_name {
        let w = wanted.to_lowercase();
        candidates.retain(|(_, a)| a.get_info().name.to_lowercase().contains(&w));
        if candidates.is_empty() {
            return Err(Error::AdapterNotFound {
                wanted: wanted.clone(),
                source_var: "WGPU_ADAPTER_NAME".into(),
                found: names,
            });
        }
        why.push(format!("its name contains {wanted:?}"));
    }
    if opts.force_fallback_adapter {
        candidates.retain(|(_, a)| a.get_info().device_type == wgpu::DeviceType::Cpu);
        if candidates.is_empty() {
            return Err(Error::NoAdapter {
                backends,
                hint: format!(
                    "no software adapter among [{}]; {NO_ADAPTER_HINT}",
                    names.join(", ")
                ),
            });
        }
        why.push("a software adapter was asked for".into());
    }
    candidates.sort_by_key(|(i, a)| {
        let info = a.get_info();
        (
            rank(info.device_type, opts.power_preference),
            backend_rank(info.backend),
            *i,
        )
    });
    let Some((_, chosen)) = candidates.first() else {
        return Err(Error::NoAdapter {
            backends,
            hint: NO_ADAPTER_HINT.into(),
        });
    };
    let info = chosen.get_info();
    why.push(format!(
        "{:?} ranks first for power preference {:?} among {} candidate(s), native APIs before GL",
        info.device_type,
        opts.power_preference,
        candidates.len()
    ));
    Ok(((*chosen).clone(), why.join("; ")))
}

/// Refuses limits under which no op could run, naming what wgnn needs: one params slot of
/// the uniform ring (`min_uniform_buffer_offset_alignment`, at least 256 bytes) in a buffer,
/// the largest params struct in a uniform binding, the most storage bindings a kernel has,
/// and workgroups of 256 invocations.
fn check_limits(limits: &wgpu::Limits, adapter: &str) -> Result<()> {
    use crate::gpu::kernels::KernelId;
    let storage = KernelId::ALL.iter().map(|k| k.storage().len()).max();
    let params = KernelId::ALL.iter().map(|k| k.params_size()).max();
    let needs: [(&'static str, u64, u64); 5] = [
        (
            "max_buffer_size",
            crate::gpu::launch::ring_stride(limits),
            limits.max_buffer_size,
        ),
        (
            "max_uniform_buffer_binding_size",
            params.unwrap_or(0) as u64,
            limits.max_uniform_buffer_binding_size,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            storage.unwrap_or(0) as u64,
            limits.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            256,
            limits.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroup_size_x",
            256,
            limits.max_compute_workgroup_size_x as u64,
        ),
    ];
    for (name, need, have) in needs {
        if have < need {
            return Err(Error::Limit {
                what: format!("a device for wgnn's kernels, which need {name} >= {need}"),
                requested: need,
                limit_name: name,
                limit: have,
                adapter: adapter.to_string(),
            });
        }
    }
    Ok(())
}

impl Device {
    /// The default GPU: honours `WGPU_BACKEND`, `WGPU_POWER_PREF` and `WGPU_ADAPTER_NAME`.
    /// Native only (it waits for the adapter): [`Device::gpu_async`] on every target.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gpu() -> Result<Device> {
        Device::gpu_with(&GpuOptions::from_env())
    }

    /// The software adapter (lavapipe, llvmpipe, WARP), for headless tests. `WGPU_BACKEND` is
    /// honoured. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn software() -> Result<Device> {
        Device::gpu_with(&GpuOptions {
            force_fallback_adapter: true,
            ..GpuOptions::from_env()
        })
    }

    /// A GPU chosen and opened with explicit options. Native only: the blocking form of
    /// [`Device::gpu_with_async`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gpu_with(opts: &GpuOptions) -> Result<Device> {
        pollster::block_on(Device::gpu_with_async(opts))
    }

    /// [`Device::gpu`] for every target: in a browser, the WebGPU adapter (an error that says
    /// so where the browser has no WebGPU).
    ///
    /// ```no_run
    /// # fn main() -> wgnn::Result<()> {
    /// // Natively, any executor runs it; in a browser, `wasm_bindgen_futures::spawn_local`.
    /// // (Not run as a doc test, which may have no GPU: tests/async_api.rs runs it.)
    /// let gpu = pollster::block_on(wgnn::Device::gpu_async())?;
    /// let t = wgnn::Tensor::from_slice(&[1f32, 2.0], &[2])?.to(&gpu)?;
    /// assert_eq!(pollster::block_on(t.to_vec_async::<f32>())?, [1.0, 2.0]);
    /// # Ok(()) }
    /// ```
    pub async fn gpu_async() -> Result<Device> {
        Device::gpu_with_async(&GpuOptions::from_env()).await
    }

    /// [`Device::gpu_with`] for every target.
    pub async fn gpu_with_async(opts: &GpuOptions) -> Result<Device> {
        let (adapter, why) = choose(opts).await?;
        let desc = summarize(&adapter).to_string();
        let limits = opts.limits.clone().unwrap_or_else(|| adapter.limits());
        check_limits(&limits, &desc)?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgnn"),
                // Timestamps, where the adapter has them, for profiles (crate::profile).
                required_features: adapter.features() & wgpu::Features::TIMESTAMP_QUERY,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: desc,
                message: e.to_string(),
            })?;
        let ctx = GpuContext::new(
            device,
            queue,
            why,
            opts.timeout,
            opts.work_per_submission,
            true,
        );
        log::info!("wgnn: using {}", ctx.describe());
        Ok(Device::Gpu(GpuDevice(Arc::new(ctx))))
    }

    /// Adopts a device and queue that an application already owns (a renderer, say), so wgnn's
    /// tensors and kernels live on it. wgnn leaves the device's error handler and device-lost
    /// callback to the application; its own work still runs inside error scopes.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Device {
        let ctx = GpuContext::new(
            device,
            queue,
            "adopted from the application".into(),
            Duration::from_secs(60),
            None,
            false,
        );
        Device::Gpu(GpuDevice(Arc::new(ctx)))
    }

    /// True for `Device::Cpu`.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// The GPU handle, if this is a GPU.
    pub fn as_gpu(&self) -> Option<&GpuDevice> {
        match self {
            Device::Gpu(g) => Some(g),
            Device::Cpu => None,
        }
    }
}

impl Device {
    /// Runs `f` and profiles the ops it runs on this device: per op, its time, dispatches,
    /// bytes and FLOPs ([`crate::profile`]). On a GPU, [`GpuDevice::profile`]; on the CPU,
    /// each op's kernel timed on the host. Native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile<T>(
        &self,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, crate::profile::Profile)> {
        match self {
            Device::Gpu(g) => g.profile(f),
            Device::Cpu => {
                crate::profile::start(None, crate::profile::Timing::Cpu)?;
                let t0 = std::time::Instant::now();
                let out = f();
                let wall = t0.elapsed();
                let rec = crate::profile::stop()
                    .ok_or_else(|| Error::internal("profile: the recorder went away"))?;
                let out = out?;
                Ok((out, rec.finish("the CPU".into(), wall, &[])))
            }
        }
    }
}

impl GpuDevice {
    /// Whether profiles on this device take GPU timestamps (the adapter has
    /// `TIMESTAMP_QUERY`); without them they time each op on the host.
    pub fn has_timestamps(&self) -> bool {
        self.0
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Runs `f` and profiles the ops it records on this device from this thread: GPU
    /// timestamps per op where the adapter has them, else host time around each op submitted
    /// alone ([`crate::profile::Timing`]). Waits for the work before `f` first and for all of
    /// `f`'s work at the end. Profiles do not nest. Native only.
    ///
    /// ```no_run
    /// # fn main() -> wgnn::Result<()> {
    /// let gpu = wgnn::Device::gpu()?;
    /// let x = wgnn::Tensor::ones(&[256, 256], wgnn::DType::F32, &gpu)?;
    /// let (_, profile) = gpu.as_gpu().unwrap().profile(|| wgnn::ops::matmul(&x, &x))?;
    /// println!("{profile}");
    /// # Ok(()) }
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile<T>(
        &self,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, crate::profile::Profile)> {
        let timing = if self.has_timestamps() {
            crate::profile::Timing::GpuTimestamps
        } else {
            crate::profile::Timing::HostSync
        };
        self.profile_with(timing, f)
    }

    /// [`GpuDevice::profile`] with the timing chosen: `GpuTimestamps` (an error where the
    /// adapter has no timestamps) or `HostSync`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_with<T>(
        &self,
        timing: crate::profile::Timing,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<(T, crate::profile::Profile)> {
        use crate::profile::Timing;
        match timing {
            Timing::Cpu => {
                return Err(Error::invalid(
                    "profile_with: Timing::Cpu is the CPU device's timing (Device::Cpu.profile)",
                ))
            }
            Timing::GpuTimestamps if !self.has_timestamps() => {
                return Err(Error::invalid(format!(
                    "profile_with: {} has no timestamp queries (TIMESTAMP_QUERY); use \
                     Timing::HostSync",
                    self.adapter()
                )))
            }
            _ => {}
        }
        self.synchronize()?;
        let dev = Some(self.0.id);
        crate::profile::start(dev, timing)?;
        let t0 = std::time::Instant::now();
        let out = f();
        let synced = self.0.profiler_sync();
        let wall = t0.elapsed();
        let rec = crate::profile::stop()
            .ok_or_else(|| Error::internal("profile: the recorder went away"))?;
        let out = out?;
        synced?;
        let pairs = match &rec.queries {
            Some(q) => crate::profile::pair_seconds(&self.0, q)?,
            None => Vec::new(),
        };
        Ok((out, rec.finish(self.adapter(), wall, &pairs)))
    }

    /// The adapter this device runs on.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.0.info
    }
    /// "name (backend, type)".
    pub fn adapter(&self) -> String {
        self.0.describe()
    }
    /// Why this adapter was chosen.
    pub fn choice_reason(&self) -> &str {
        &self.0.choice
    }
    /// The limits the device was opened with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.0.limits
    }
    /// The underlying wgpu device (for applications that mix their own work in).
    pub fn wgpu_device(&self) -> &wgpu::Device {
        &self.0.device
    }
    /// The underlying wgpu queue.
    pub fn wgpu_queue(&self) -> &wgpu::Queue {
        &self.0.queue
    }
    /// Queue submissions wgnn has made on this device so far.
    pub fn submission_count(&self) -> u64 {
        self.0.submissions.load(Ordering::Relaxed)
    }
    /// A number that tells wgnn devices apart (`gpu:N`).
    pub fn ordinal(&self) -> u64 {
        self.0.id
    }
    /// Submits the ops recorded so far without waiting. Ops are recorded into one command
    /// encoder and submitted together when their results are read back, before an upload, on
    /// `flush`/`synchronize`, every 256 dispatches, or when their estimated work reaches
    /// [`GpuOptions::work_per_submission`]; call this to start the GPU on them early.
    pub fn flush(&self) -> Result<()> {
        self.0.flush("flush")
    }
    /// Submits the ops recorded so far and waits until all work is done. The wait ends in
    /// [`Error::Timeout`](crate::Error::Timeout) only if no submission finishes for the
    /// device's timeout. Native only: [`GpuDevice::synchronize_async`] on every target.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn synchronize(&self) -> Result<()> {
        pollster::block_on(self.synchronize_async())
    }

    /// [`GpuDevice::synchronize`] for every target; in a browser it also reports the first
    /// error of the ops recorded since the last await point, naming the op.
    pub async fn synchronize_async(&self) -> Result<()> {
        self.0.flush("synchronize")?;
        self.0.wait_async("synchronize", None).await
    }
    #[doc(hidden)]
    /// Forces a matrix-product kernel on this device (`None`: chosen by shape), where it can
    /// take the product: for the tests that run every kernel on every layout.
    pub fn __force_matmul(&self, kernel: Option<crate::gpu::tuning::ForcedMatmul>) {
        *self
            .0
            .force_matmul
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = kernel;
    }
    #[doc(hidden)]
    /// Makes the kernel choices of `gpu::tuning` as on a discrete GPU (`true`) or by the
    /// adapter's kind (`false`): for tests that check both choices on a software adapter.
    pub fn __tune_as_gpu(&self, on: bool) {
        self.0.tune_as_gpu.store(on, Ordering::Relaxed);
    }
    #[doc(hidden)]
    /// Records, as op `op`, a dispatch that wgpu refuses (more workgroups than the device's
    /// limit), through the path every op takes: for the test that errors name the op that
    /// recorded the faulty command. Not API.
    pub fn __record_faulty_dispatch(&self, op: &str) -> Result<()> {
        use crate::gpu::kernels::{CastParams, Kernel};
        use crate::gpu::launch::Launch;
        use crate::gpu::pool::GpuBuffer;
        use crate::gpu::split::Bind;
        let ctx = &self.0;
        ctx.scoped(op, || {
            let (x, y) = (GpuBuffer::output(ctx, 4)?, GpuBuffer::output(ctx, 4)?);
            let too_many = ctx
                .limits
                .max_compute_workgroups_per_dimension
                .saturating_add(1);
            ctx.record(&[Launch {
                kernel: Kernel::Cast(CastParams::default()),
                binds: vec![Bind::whole(&x), Bind::whole(&y)],
                groups: [too_many, 1, 1],
            }])
        })
    }

    /// Dispatches recorded on this device so far of the kernel named `kernel` (a WGSL file
    /// stem: `"strided_copy"` is the copy of a view, `"matmul"` a matrix product), or of every
    /// kernel with `None`.
    pub fn dispatch_count(&self, kernel: Option<&str>) -> u64 {
        let p = self.0.pending();
        p.dispatched
            .iter()
            .filter(|(k, _)| kernel.is_none_or(|name| k.name() == name))
            .map(|(_, n)| n)
            .sum()
    }
    /// Starts the high-water mark of [`GpuStats::peak_bytes`] again from what is held now (to
    /// measure the peak of one piece of work: a training step, say).
    pub fn reset_peak(&self) {
        let now = self.0.live_bytes.load(Ordering::Acquire);
        self.0.peak_bytes.store(now, Ordering::Release);
    }
    /// Counters of the per-device caches: how much setup the ops did and reused, and the
    /// memory tensors hold.
    pub fn stats(&self) -> GpuStats {
        let (bind_groups_created, recorded) = {
            let p = self.0.pending();
            (p.groups_created, !p.is_empty())
        };
        let (pool_hits, pool_bytes) = {
            let p = self.0.pool();
            (p.hits, p.bytes())
        };
        GpuStats {
            live_bytes: self.0.live_bytes.load(Ordering::Acquire),
            peak_bytes: self.0.peak_bytes.load(Ordering::Acquire),
            submissions: self.submission_count(),
            pipelines_built: self.0.kernels.builds(),
            bind_groups_created,
            pool_hits,
            pool_bytes,
            work_pending: recorded,
        }
    }
}

/// What [`GpuDevice::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuStats {
    /// Queue submissions wgnn made.
    pub submissions: u64,
    /// Compute pipelines built (each kernel once per device).
    pub pipelines_built: u64,
    /// Bind groups created (repeated ops on the same buffers reuse theirs).
    pub bind_groups_created: u64,
    /// Op outputs served from the buffer pool instead of a new allocation.
    pub pool_hits: u64,
    /// Bytes of free buffers the pool holds for reuse.
    pub pool_bytes: u64,
    /// Whether recorded ops wait for a submission.
    pub work_pending: bool,
    /// Bytes of device buffers tensors hold now (free buffers kept by the pool not counted).
    pub live_bytes: u64,
    /// The most `live_bytes` has been since the device opened or [`GpuDevice::reset_peak`].
    pub peak_bytes: u64,
}

impl PartialEq for GpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for GpuDevice {}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Device {}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu(g) => write!(f, "gpu:{}", g.0.id),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("Device::Cpu"),
            Device::Gpu(g) => write!(f, "Device::Gpu(gpu:{}, {})", g.0.id, g.0.describe()),
        }
    }
}

impl fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuDevice(gpu:{}, {})", self.0.id, self.0.describe())
    }
}
