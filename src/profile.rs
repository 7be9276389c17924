//! Where the time goes: per-op time, dispatches, bytes and FLOPs of the work a closure does on
//! one device ([`crate::Device::profile`], [`crate::GpuDevice::profile`]).
//!
//! On a GPU with `TIMESTAMP_QUERY`, each op's compute passes carry begin and end timestamps
//! ([`Timing::GpuTimestamps`]): the GPU's own time per op, with the ops still batched into few
//! submissions as they run unprofiled. Without it (wgpu's GL backend, most browsers) each op
//! is submitted and waited for on its own and timed on the host ([`Timing::HostSync`]): that
//! adds a submission's round trip to every op, so the times are upper bounds, good for
//! ranking. On the CPU device each op's kernel is timed on the host ([`Timing::Cpu`]).
//!
//! Only the ops the profiling thread records are counted; work other threads record on the
//! same device meanwhile is not.
//!
//! ```
//! # fn main() -> wgnn::Result<()> {
//! use wgnn::{ops, Device, Tensor};
//! let x = Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0], &[2, 2])?;
//! let (y, profile) = Device::Cpu.profile(|| ops::matmul(&x, &x))?;
//! assert_eq!(y.to_vec::<f32>()?, [7.0, 10.0, 15.0, 22.0]);
//! let mm = profile.op("matmul").expect("matmul was profiled");
//! assert_eq!((mm.calls, mm.flops), (1, 16));
//! println!("{profile}");
//! # Ok(()) }
//! ```

// The profile API is native (it waits for the device); in a browser the hooks stay unused.
#![cfg_attr(target_arch = "wasm32", allow(dead_code))]

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

/// How a [`Profile`]'s times were taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// GPU timestamps at the beginning and end of each op's compute passes.
    GpuTimestamps,
    /// Host time around each GPU op, submitted and waited for on its own (an upper bound: a
    /// submission's round trip is included).
    HostSync,
    /// Host time of each op's kernel on the CPU device.
    Cpu,
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Timing::GpuTimestamps => "GPU timestamps per compute pass",
            Timing::HostSync => "host time, each op submitted and waited for alone",
            Timing::Cpu => "host time of each op's kernel",
        })
    }
}

/// What one op (by name) did, summed over its calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpStat {
    /// The op's name, as its errors give it (`"matmul"`, `"softmax"`, `"linear backward"`).
    pub name: String,
    /// Times it ran.
    pub calls: u64,
    /// Kernel dispatches it recorded (0 on the CPU).
    pub dispatches: u64,
    /// Its time (see [`Timing`]).
    pub time: Duration,
    /// Bytes of its inputs (their views' sizes).
    pub bytes_read: u64,
    /// Bytes of its outputs.
    pub bytes_written: u64,
    /// Floating-point operations, counted for the ops whose work is not their bytes (the
    /// matrix products, attention: a multiply-add is 2); 0 for the others.
    pub flops: u64,
}

impl OpStat {
    /// Bytes moved per second of its time.
    pub fn bytes_per_second(&self) -> f64 {
        (self.bytes_read + self.bytes_written) as f64 / self.time.as_secs_f64().max(1e-12)
    }
    /// FLOPs per second of its time.
    pub fn flops_per_second(&self) -> f64 {
        self.flops as f64 / self.time.as_secs_f64().max(1e-12)
    }
}

/// Per-op figures of the work a closure did on one device, largest time first. `Display`
/// prints them as a table.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The device, in words.
    pub device: String,
    /// How times were taken.
    pub timing: Timing,
    /// Wall time of the whole closure, including the final wait for the GPU.
    pub wall: Duration,
    /// One line per op name, largest time first.
    pub ops: Vec<OpStat>,
}

impl Profile {
    /// The op named `name`, if it ran.
    pub fn op(&self, name: &str) -> Option<&OpStat> {
        self.ops.iter().find(|o| o.name == name)
    }
    /// Sum of the ops' times.
    pub fn op_time(&self) -> Duration {
        self.ops.iter().map(|o| o.time).sum()
    }
    /// Kernel dispatches in all.
    pub fn dispatches(&self) -> u64 {
        self.ops.iter().map(|o| o.dispatches).sum()
    }
    /// Op calls in all.
    pub fn calls(&self) -> u64 {
        self.ops.iter().map(|o| o.calls).sum()
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wall = self.wall.as_secs_f64();
        let ops = self.op_time().as_secs_f64();
        writeln!(
            f,
            "profile on {} ({}): wall {:.3} ms, ops {:.3} ms, {} calls, {} dispatches",
            self.device,
            self.timing,
            wall * 1e3,
            ops * 1e3,
            self.calls(),
            self.dispatches()
        )?;
        writeln!(
            f,
            "{:<28} {:>6} {:>6} {:>10} {:>6} {:>10} {:>10} {:>9} {:>9}",
            "op", "calls", "disp", "time ms", "%", "MB read", "MB written", "GB/s", "GFLOP/s"
        )?;
        for o in &self.ops {
            let t = o.time.as_secs_f64();
            let gflops = if o.flops > 0 {
                format!("{:>9.2}", o.flops_per_second() / 1e9)
            } else {
                format!("{:>9}", "")
            };
            writeln!(
                f,
                "{:<28} {:>6} {:>6} {:>10.3} {:>6.1} {:>10.3} {:>10.3} {:>9.2} {}",
                o.name,
                o.calls,
                o.dispatches,
                t * 1e3,
                100.0 * t / ops.max(1e-12),
                o.bytes_read as f64 / 1e6,
                o.bytes_written as f64 / 1e6,
                o.bytes_per_second() / 1e9,
                gflops
            )?;
        }
        let outside = (wall - ops).max(0.0);
        write!(
            f,
            "{:<28} {:>6} {:>6} {:>10.3} {:>6.1}% of wall",
            match self.timing {
                Timing::GpuTimestamps => "(GPU idle: host, submits)",
                _ => "(outside the ops)",
            },
            "",
            "",
            outside * 1e3,
            100.0 * outside / wall.max(1e-12)
        )
    }
}

/// One op call being recorded.
struct Event {
    name: String,
    dispatches: u64,
    host: Duration,
    bytes_read: u64,
    bytes_written: u64,
    flops: u64,
    /// Timestamp pairs of its compute passes (index into the recorder's pairs).
    pairs: Vec<u32>,
}

/// Timestamp query sets of one profile, two queries per compute pass.
pub(crate) struct Queries {
    pub sets: Vec<wgpu::QuerySet>,
    /// Pairs handed out so far.
    pub pairs: u32,
}

/// Queries per query set (wgpu's maximum).
pub(crate) const SET_QUERIES: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// The profile being recorded on this thread.
pub(crate) struct Recorder {
    /// The GPU context id profiled, or `None` for the CPU device.
    device: Option<u64>,
    pub timing: Timing,
    events: Vec<Event>,
    /// Open events, innermost last.
    stack: Vec<usize>,
    /// The event last closed (where [`annotate`] adds its figures).
    last: Option<usize>,
    pub queries: Option<Queries>,
    /// Set while the profiler itself synchronizes (its submissions are not ops).
    pub busy: bool,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Starts recording on this thread; an error if a profile is already being recorded.
pub(crate) fn start(device: Option<u64>, timing: Timing) -> crate::Result<()> {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        if r.is_some() {
            return Err(crate::Error::invalid(
                "profile: a profile is already being recorded on this thread (profiles do not nest)",
            ));
        }
        *r = Some(Recorder {
            device,
            timing,
            events: Vec::new(),
            stack: Vec::new(),
            last: None,
            queries: None,
            busy: false,
        });
        Ok(())
    })
}

/// Stops recording on this thread and hands back what was recorded.
pub(crate) fn stop() -> Option<Recorder> {
    RECORDER.with(|r| r.borrow_mut().take())
}

/// Runs `f` on this thread's recorder, if one records `device` and is not busy.
pub(crate) fn with<T>(device: Option<u64>, f: impl FnOnce(&mut Recorder) -> T) -> Option<T> {
    RECORDER.with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        let rec = r.as_mut()?;
        if rec.device != device || rec.busy {
            return None;
        }
        Some(f(rec))
    })
}

/// Runs `f` on this thread's recorder of `device`, busy or not.
pub(crate) fn with_busy<T>(device: Option<u64>, f: impl FnOnce(&mut Recorder) -> T) -> Option<T> {
    RECORDER.with(|r| {
        let mut r = r.try_borrow_mut().ok()?;
        let rec = r.as_mut()?;
        if rec.device != device {
            return None;
        }
        Some(f(rec))
    })
}

/// Opens an event for op `name` on `device`; `None` when nothing is being profiled there.
pub(crate) fn begin(device: Option<u64>, name: &str) -> Option<usize> {
    with(device, |rec| {
        rec.events.push(Event {
            name: name.to_string(),
            dispatches: 0,
            host: Duration::ZERO,
            bytes_read: 0,
            bytes_written: 0,
            flops: 0,
            pairs: Vec::new(),
        });
        let i = rec.events.len() - 1;
        rec.stack.push(i);
        i
    })
}

/// Closes event `i` with its host time.
pub(crate) fn end(device: Option<u64>, i: usize, host: Duration) {
    with(device, |rec| {
        if let Some(e) = rec.events.get_mut(i) {
            e.host += host;
        }
        if let Some(p) = rec.stack.iter().rposition(|&j| j == i) {
            rec.stack.truncate(p);
        }
        rec.last = Some(i);
    });
}

/// Adds an op's bytes and FLOPs to the event last closed on `device`.
pub(crate) fn annotate(device: Option<u64>, read: u64, written: u64, flops: u64) {
    with(device, |rec| {
        if let Some(e) = rec.last.and_then(|i| rec.events.get_mut(i)) {
            e.bytes_read += read;
            e.bytes_written += written;
            e.flops += flops;
        }
    });
}

impl Recorder {
    /// Counts `n` dispatches for the innermost open event; with timestamps, hands out the
    /// query pair of their compute pass (creating a query set when the last is full).
    pub(crate) fn pass(&mut self, device: &wgpu::Device, n: u64) -> Option<(wgpu::QuerySet, u32)> {
        let i = *self.stack.last()?;
        let e = self.events.get_mut(i)?;
        e.dispatches += n;
        if self.timing != Timing::GpuTimestamps {
            return None;
        }
        let q = self.queries.get_or_insert_with(|| Queries {
            sets: Vec::new(),
            pairs: 0,
        });
        let per_set = SET_QUERIES / 2;
        let set = (q.pairs / per_set) as usize;
        if set >= q.sets.len() {
            q.sets
                .push(device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("wgnn profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: SET_QUERIES,
                }));
        }
        let pair = q.pairs;
        q.pairs += 1;
        e.pairs.push(pair);
        Some((q.sets[set].clone(), (pair % per_set) * 2))
    }

    /// The table: events summed by name, their times from `pair_times` (seconds of each
    /// timestamp pair) with GPU timestamps, else from the host.
    pub(crate) fn finish(self, device: String, wall: Duration, pair_times: &[f64]) -> Profile {
        let gpu = self.device.is_some();
        let mut ops: Vec<OpStat> = Vec::new();
        for e in self.events {
            if gpu && e.dispatches == 0 && self.timing == Timing::GpuTimestamps {
                continue; // uploads, flushes: no kernel ran for them
            }
            let time = if self.timing == Timing::GpuTimestamps {
                Duration::from_secs_f64(
                    e.pairs
                        .iter()
                        .map(|&p| pair_times.get(p as usize).copied().unwrap_or(0.0))
                        .sum::<f64>(),
                )
            } else {
                e.host
            };
            let slot = match ops.iter().position(|o| o.name == e.name) {
                Some(i) => i,
                None => {
                    ops.push(OpStat {
                        name: e.name.clone(),
                        ..OpStat::default()
                    });
                    ops.len() - 1
                }
            };
            let o = &mut ops[slot];
            o.calls += 1;
            o.dispatches += e.dispatches;
            o.time += time;
            o.bytes_read += e.bytes_read;
            o.bytes_written += e.bytes_written;
            o.flops += e.flops;
        }
        ops.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.name.cmp(&b.name)));
        Profile {
            device,
            timing: self.timing,
            wall,
            ops,
        }
    }
}

/// Seconds of each timestamp pair of `q`, read back from the device (native: it waits).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn pair_seconds(
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    q: &Queries,
) -> crate::Result<Vec<f64>> {
    use crate::gpu::pool::GpuBuffer;
    let queries = q.pairs as u64 * 2;
    if queries == 0 {
        return Ok(Vec::new());
    }
    let bytes = queries * 8;
    let (resolve, out) = ctx.scoped("profile", || {
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgnn profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let out = GpuBuffer::fresh(ctx, bytes, "profile timestamps")?;
        let mut e = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgnn profile"),
            });
        for (s, set) in q.sets.iter().enumerate() {
            let first = s as u64 * SET_QUERIES as u64;
            let count = (queries - first).min(SET_QUERIES as u64) as u32;
            e.resolve_query_set(set, 0..count, &resolve, first * 8);
        }
        e.copy_buffer_to_buffer(&resolve, 0, out.buffer(), 0, bytes);
        ctx.submit_unscoped([e.finish()]);
        Ok((resolve, out))
    })?;
    let data = crate::gpu::transfer::download_many(ctx, &[(&out, bytes)])?;
    drop(resolve);
    let period = ctx.queue.get_timestamp_period() as f64 * 1e-9;
    let stamps: Vec<u64> = data[0]
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    Ok(stamps
        .chunks_exact(2)
        .map(|p| p[1].saturating_sub(p[0]) as f64 * period)
        .collect())
}
