//! The figures of DESIGN.md "Performance", measured side by side in one run: every figure is a
//! median after a warm-up, reported next to its baseline on the same device, as a ratio.
//!
//! cargo run --release --example bench -- [--quick] [--json] [--full] [--profile]
//!
//! The default run fits in under two minutes on a 2-core machine with lavapipe, even with a
//! build running beside it: the d512 model runs a `[4, 256]` batch (`--full`: the `[32, 256]`
//! batch of the issues' tables, about 27 s per GPU forward on lavapipe) and figures whose one
//! run takes over a second are medians of 3. Each figure's time goes to stderr as it finishes.
//! `--profile` adds per-op tables (`wgnn::profile`) of the reverse-task forward, the d512
//! forward, a training step and the tutorial 5 ResNet's forward, on the GPU and the CPU (in
//! `--json` as `profiles`). The vision figures: conv2d on the ResNet's three 3 × 3 shapes and
//! the ResNet's eval forward, batch 128 (`--quick`: 16).

use std::time::Instant;

use clap::Parser;

use wgnn::ops::{self, add_positional, positional_table};
use wgnn::optim::{clip_grad_norm_, Adam};
use wgnn::Forward;
use wgnn::{Buffer, DType, Device, DynModule, GpuDevice, ModuleExt, PositionalEncoding, Tensor};
use wgnn_ports::tutorial5::ResNet;
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

struct Figure {
    name: String,
    what: String,
    value: f64,
    unit: &'static str,
    baseline_name: &'static str,
    baseline: f64,
    /// value / baseline for rates, baseline / value for times: above 1 is better than baseline.
    ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds of `f` over `runs` runs counting `first`, a run the caller already timed
/// after warming up (so a slow figure costs no run more than its median needs).
fn time_after(
    first: f64,
    runs: usize,
    mut f: impl FnMut() -> wgnn::Result<()>,
) -> wgnn::Result<f64> {
    let mut v = vec![first];
    for _ in 1..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

/// Median seconds of `f` over `runs` runs, after one warm-up run.
fn time(runs: usize, mut f: impl FnMut() -> wgnn::Result<()>) -> wgnn::Result<f64> {
    f()?;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64());
    }
    Ok(median(v))
}

/// Runs for a figure whose single run takes `one` seconds: `runs`, or 3 past a second.
fn runs_for(one: f64, runs: usize) -> usize {
    if one > 1.0 {
        runs.min(3)
    } else {
        runs
    }
}

/// How many repetitions per submission make one submission last about 50 ms.
fn repeats_for(one: f64) -> usize {
    ((0.05 / one.max(1e-6)) as usize).clamp(1, 200)
}

/// `copy_buffer_to_buffer` of `src` into `dst`, `repeats` times in one submission, waited for.
fn gpu_copy(g: &GpuDevice, src: &Tensor, dst: &Tensor, repeats: usize) -> wgnn::Result<()> {
    let (Some(s), Some(d)) = (src.wgpu_buffer(), dst.wgpu_buffer()) else {
        return Err(wgnn::Error::InvalidArgument(
            "gpu_copy needs GPU tensors".into(),
        ));
    };
    let size = src.nbytes().min(dst.nbytes()) as u64;
    let mut e = g
        .wgpu_device()
        .create_command_encoder(&wgnn::wgpu::CommandEncoderDescriptor { label: None });
    for _ in 0..repeats {
        e.copy_buffer_to_buffer(s, 0, d, 0, size);
    }
    let idx = g.wgpu_queue().submit([e.finish()]);
    g.wgpu_device()
        .poll(wgnn::wgpu::PollType::Wait {
            submission_index: Some(idx),
            timeout: None,
        })
        .map(|_| ())
        .map_err(|e| wgnn::Error::InvalidArgument(e.to_string()))
}

/// `y.copy_from_slice(x)` over rayon's pool, one piece per thread (as the CPU add splits).
fn cpu_copy(x: &[f32], y: &mut [f32]) {
    use rayon::prelude::*;
    let chunk = y.len().div_ceil(rayon::current_num_threads()).max(1);
    y.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

fn gpu_add_vs_copy(g: &GpuDevice, gpu: &Device, mib: usize, runs: usize) -> wgnn::Result<Figure> {
    let (d, seq) = (512usize, 256usize);
    let batch = (mib << 20) / 4 / (seq * d);
    let n = batch * seq * d;
    let x = Tensor::zeros(&[batch, seq, d], DType::F32, gpu)?;
    let y = Tensor::zeros(&[batch, seq, d], DType::F32, gpu)?;
    let table = positional_table(seq, d, gpu)?;
    // The public op, `r` times per submission: outputs come back to the pool and are reused.
    let add = |r: usize| -> wgnn::Result<()> {
        for _ in 0..r {
            add_positional(&x, &table)?;
        }
        g.synchronize()
    };
    let r = repeats_for(time(1, || add(1))?);
    let t_add = time(runs, || add(r))? / r as f64;
    let t_copy = time(runs, || gpu_copy(g, &x, &y, r))? / r as f64;
    let add_bytes = (2 * n + seq * d) as f64 * 4.0;
    let copy_bytes = 2.0 * n as f64 * 4.0;
    let (a, c) = (add_bytes / t_add / 1e9, copy_bytes / t_copy / 1e9);
    Ok(Figure {
        name: "gpu_add".into(),
        what: format!(
            "x[{batch},{seq},{d}] + pe[:, :{seq}] ({} MiB in, {} MiB out), {r} per submission",
            mib, mib
        ),
        value: a,
        unit: "GB/s",
        baseline_name: "copy_buffer_to_buffer, same bytes",
        baseline: c,
        ratio: a / c,
    })
}

fn cpu_add_vs_memcpy(mib: usize, runs: usize) -> wgnn::Result<Figure> {
    let (d, seq) = (512usize, 256usize);
    let n = (mib << 20) / 4 / (seq * d) * seq * d;
    let xs: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let x = Tensor::from_slice(&xs, &[n / (seq * d), seq, d])?;
    let t = positional_table(seq, d, &Device::Cpu)?;
    let mut y = vec![0f32; n];
    // The public op, output allocation included.
    let t_add = time(runs, || add_positional(&x, &t).map(|_| ()))?;
    let t_copy = time(runs, || {
        cpu_copy(&xs, &mut y);
        Ok(())
    })?;
    let (a, c) = (
        (2 * n + seq * d) as f64 * 4.0 / t_add / 1e9,
        2.0 * n as f64 * 4.0 / t_copy / 1e9,
    );
    Ok(Figure {
        name: "cpu_add".into(),
        what: format!(
            "{mib} MiB + table rows, {} threads",
            rayon::current_num_threads()
        ),
        value: a,
        unit: "GB/s",
        baseline_name: "memcpy, same threads and bytes",
        baseline: c,
        ratio: a / c,
    })
}

fn table_gpu_vs_cpu_upload(g: &GpuDevice, gpu: &Device, runs: usize) -> wgnn::Result<Figure> {
    let (d, len) = (512, 5000);
    let t_gpu = time(runs, || {
        let _pe = PositionalEncoding::on(d, len, gpu)?;
        g.synchronize()
    })?;
    let t_cpu = time(runs, || {
        let _t = positional_table(len, d, &Device::Cpu)?.to(gpu)?;
        g.synchronize()
    })?;
    Ok(Figure {
        name: "table".into(),
        what: format!("PositionalEncoding({d}, {len}) generated on the GPU"),
        value: t_gpu * 1e3,
        unit: "ms",
        baseline_name: "generated on the CPU + uploaded",
        baseline: t_cpu * 1e3,
        ratio: t_cpu / t_gpu,
    })
}

fn tree_vs_one_upload(
    g: &GpuDevice,
    gpu: &Device,
    mib: usize,
    runs: usize,
) -> wgnn::Result<Figure> {
    let count = 1000;
    let each = (mib << 20) / 4 / count;
    let tensors: Vec<Tensor> = (0..count)
        .map(|i| Tensor::from_slice(&vec![i as f32; each], &[each]))
        .collect::<wgnn::Result<_>>()?;
    let one = Tensor::from_slice(&vec![1f32; each * count], &[each * count])?;
    let t_tree = time(runs, || {
        let mut m = DynModule::new("Tree");
        for (i, t) in tensors.iter().enumerate() {
            m.register_buffer(format!("b{i}"), Buffer::new(t.clone()))?;
        }
        m.to_device(gpu)?;
        g.synchronize()
    })?;
    let t_one = time(runs, || {
        let _t = one.to(gpu)?;
        g.synchronize()
    })?;
    Ok(Figure {
        name: "to_device".into(),
        what: format!("to_device of a tree of {count} tensors, {mib} MiB in all"),
        value: t_tree * 1e3,
        unit: "ms",
        baseline_name: "one upload of the same bytes",
        baseline: t_one * 1e3,
        ratio: t_one / t_tree,
    })
}

/// Microseconds per tiny op: a `[1,1,4]` positional forward (then synchronize), and a chain of
/// 32 of them (one synchronize), next to an empty submit + wait on the same device.
fn op_overhead(g: &GpuDevice, gpu: &Device, runs: usize) -> wgnn::Result<Vec<Figure>> {
    let pe = PositionalEncoding::on(4, 8, gpu)?;
    let x = Tensor::from_slice(&[0.5f32; 4], &[1, 1, 4])?.to(gpu)?;
    let reps = 200;
    let t_empty = time(runs, || {
        for _ in 0..reps {
            let idx = g.wgpu_queue().submit([]);
            g.wgpu_device()
                .poll(wgnn::wgpu::PollType::Wait {
                    submission_index: Some(idx),
                    timeout: None,
                })
                .map_err(|e| wgnn::Error::InvalidArgument(e.to_string()))?;
        }
        Ok(())
    })? / reps as f64;
    let t_one = time(runs, || {
        for _ in 0..reps {
            let _y = pe.forward(&x)?;
            g.synchronize()?;
        }
        Ok(())
    })? / reps as f64;
    let chain = 32;
    let t_chain = time(runs, || {
        for _ in 0..reps / 10 {
            let mut y = x.clone();
            for _ in 0..chain {
                y = pe.forward(&y)?;
            }
            g.synchronize()?;
        }
        Ok(())
    })? / (reps / 10) as f64;
    // Host time to record one op (what per-call setup costs), the GPU's work excluded.
    let mut rec = Vec::new();
    for _ in 0..runs.max(3) {
        let mut y = x.clone();
        let t = std::time::Instant::now();
        for _ in 0..chain {
            y = pe.forward(&y)?;
        }
        rec.push(t.elapsed().as_secs_f64() / chain as f64);
        g.synchronize()?;
    }
    let t_rec = median(rec);
    Ok(vec![
        Figure {
            name: "op_record".into(),
            what: "host time to record one [1,1,4] forward (no submit, no wait)".into(),
            value: t_rec * 1e6,
            unit: "us",
            baseline_name: "empty submit + wait",
            baseline: t_empty * 1e6,
            ratio: t_empty / t_rec,
        },
        Figure {
            name: "op_1".into(),
            what: "PositionalEncoding forward of x[1,1,4], then synchronize".into(),
            value: t_one * 1e6,
            unit: "us",
            baseline_name: "empty submit + wait",
            baseline: t_empty * 1e6,
            ratio: t_empty / t_one,
        },
        Figure {
            name: "op_32".into(),
            what: format!("a chain of {chain} such forwards, then one synchronize"),
            value: t_chain * 1e6,
            unit: "us",
            baseline_name: "empty submit + wait",
            baseline: t_empty * 1e6,
            ratio: t_empty / t_chain,
        },
    ])
}

/// GFLOP/s of `[m×k]·[k×n]` on the GPU (the tiled kernel) next to the CPU path (the `gemm`
/// crate on every core), same operands, outputs included.
fn matmul_gpu_vs_cpu(
    g: &GpuDevice,
    gpu: &Device,
    (m, k, n): (usize, usize, usize),
    runs: usize,
) -> wgnn::Result<Figure> {
    let a = Tensor::from_slice(&vec![0.5f32; m * k], &[m, k])?;
    let b = Tensor::from_slice(&vec![0.25f32; k * n], &[k, n])?;
    let (ga, gb) = (a.to(gpu)?, b.to(gpu)?);
    let flops = 2.0 * (m * k * n) as f64;
    // The kernel's pipeline is built by a small product; then one run sizes the rest.
    let small = Tensor::from_slice(&[0.5f32; 16], &[4, 4])?.to(gpu)?;
    ops::matmul(&small, &small)?;
    g.synchronize()?;
    let t = Instant::now();
    ops::matmul(&ga, &gb)?;
    g.synchronize()?;
    let one = t.elapsed().as_secs_f64();
    let runs = runs_for(one, runs);
    let r = repeats_for(one);
    let many = || {
        for _ in 0..r {
            ops::matmul(&ga, &gb)?;
        }
        g.synchronize()
    };
    let t_gpu = if r == 1 {
        time_after(one, runs, many)?
    } else {
        time(runs, many)? / r as f64
    };
    let t_cpu = time(runs, || ops::matmul(&a, &b).map(|_| ()))?;
    let (vg, vc) = (flops / t_gpu / 1e9, flops / t_cpu / 1e9);
    Ok(Figure {
        name: format!("matmul_{m}x{k}x{n}"),
        what: format!("[{m}x{k}]·[{k}x{n}], {r} per submission"),
        value: vg,
        unit: "GF/s",
        baseline_name: "CPU GEMM (gemm crate, all cores)",
        baseline: vc,
        ratio: vg / vc,
    })
}

/// Times `f` on `dev` (waiting for a GPU): one sizing run, then the median of `runs` (3 past a
/// second).
fn time_on(
    dev: &Device,
    runs: usize,
    mut f: impl FnMut() -> wgnn::Result<()>,
) -> wgnn::Result<f64> {
    let mut wait_f = || -> wgnn::Result<()> {
        f()?;
        match dev.as_gpu() {
            Some(g) => g.synchronize(),
            None => Ok(()),
        }
    };
    wait_f()?;
    let t = Instant::now();
    wait_f()?;
    let one = t.elapsed().as_secs_f64();
    time_after(one, runs_for(one, runs), wait_f)
}

/// A deterministic filler in [-0.5, 0.5).
fn filler(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 31 + seed * 7) % 97) as f32 / 97.0) - 0.5)
        .collect()
}

/// conv2d GF/s of the ResNet's 3 × 3 shape `[batch, c, hw, hw] * [c, c, 3, 3]` (padding 1):
/// the GPU's implicit GEMM next to the CPU path, and next to the GPU matrix product of the same
/// FLOPs (`[batch·hw², 9c]·[9c, c]`).
fn conv_figures(
    g: &GpuDevice,
    gpu: &Device,
    (batch, c, hw): (usize, usize, usize),
    runs: usize,
) -> wgnn::Result<Vec<Figure>> {
    let x = Tensor::from_slice(&filler(batch * c * hw * hw, 1), &[batch, c, hw, hw])?;
    let w = Tensor::from_slice(&filler(c * c * 9, 2), &[c, c, 3, 3])?;
    let (gx, gw) = (x.to(gpu)?, w.to(gpu)?);
    let o = ops::ConvOptions::default().padding(1);
    let flops = 2.0 * (batch * hw * hw * c * 9 * c) as f64;
    let t_gpu = time_on(gpu, runs, || ops::conv2d(&gx, &gw, None, &o).map(|_| ()))?;
    let t_cpu = time_on(&Device::Cpu, runs, || {
        ops::conv2d(&x, &w, None, &o).map(|_| ())
    })?;
    let (m, k) = (batch * hw * hw, 9 * c);
    let a = Tensor::from_slice(&filler(m * k, 3), &[m, k])?.to(gpu)?;
    let b = Tensor::from_slice(&filler(k * c, 4), &[k, c])?.to(gpu)?;
    let t_mm = time_on(gpu, runs, || ops::matmul(&a, &b).map(|_| ()))?;
    let _ = g;
    let (vg, vc, vm) = (flops / t_gpu / 1e9, flops / t_cpu / 1e9, flops / t_mm / 1e9);
    let shape = format!("[{batch},{c},{hw},{hw}]*[{c},{c},3,3] pad 1");
    Ok(vec![
        Figure {
            name: format!("conv2d_{c}x{hw}"),
            what: format!("{shape} ({:.2} GFLOP)", flops / 1e9),
            value: vg,
            unit: "GF/s",
            baseline_name: "CPU conv2d (gemm crate, all cores)",
            baseline: vc,
            ratio: vg / vc,
        },
        Figure {
            name: format!("conv2d_{c}x{hw}_vs_matmul"),
            what: format!("the GPU conv2d next to the GPU matmul [{m}x{k}]·[{k}x{c}] (same FLOPs)"),
            value: vg,
            unit: "GF/s",
            baseline_name: "GPU matmul of the same FLOPs",
            baseline: vm,
            ratio: vg / vm,
        },
    ])
}

/// The published ResNet (tutorial 5) in eval mode, `no_grad`: images per second of a batch, GPU
/// next to CPU.
fn resnet_gpu_vs_cpu(gpu: &Device, batch: usize, runs: usize) -> wgnn::Result<Figure> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tutorial5/ResNet.ckpt"
    );
    let mut cpu_model = ResNet::from_checkpoint(path)?;
    let mut gpu_model = ResNet::from_checkpoint(path)?;
    gpu_model.to_device(gpu)?;
    let x = Tensor::from_slice(&filler(batch * 3 * 32 * 32, 5), &[batch, 3, 32, 32])?;
    let gx = x.to(gpu)?;
    let t_gpu = time_on(gpu, runs, || {
        wgnn::autograd::no_grad(|| gpu_model.forward(&gx)).map(|_| ())
    })?;
    let t_cpu = time_on(&Device::Cpu, runs, || {
        wgnn::autograd::no_grad(|| cpu_model.forward(&x)).map(|_| ())
    })?;
    let (vg, vc) = (batch as f64 / t_gpu, batch as f64 / t_cpu);
    Ok(Figure {
        name: format!("resnet_b{batch}"),
        what: format!(
            "tutorial 5 ResNet (published weights), eval, batch {batch}: GPU {:.1} ms, CPU {:.1} ms",
            t_gpu * 1e3,
            t_cpu * 1e3
        ),
        value: vg,
        unit: "img/s",
        baseline_name: "same model on the CPU",
        baseline: vc,
        ratio: vg / vc,
    })
}

/// Sequences per second of the tutorial's model in eval mode, GPU next to CPU.
fn model_gpu_vs_cpu(
    g: &GpuDevice,
    gpu: &Device,
    hp: &Hparams,
    (batch, seq): (usize, usize),
    runs: usize,
) -> wgnn::Result<Figure> {
    let mut cpu_model = filled_model(hp, &Device::Cpu)?;
    let mut gpu_model = filled_model(hp, gpu)?;
    let x: Vec<f32> = (0..batch * seq * hp.input_dim)
        .map(|i| ((i * 31) % 17) as f32 / 17.0)
        .collect();
    let x = Tensor::from_slice(&x, &[batch, seq, hp.input_dim])?;
    let gx = x.to(gpu)?;
    // Warm-up on one sequence builds every pipeline; one full run sizes the rest.
    let x1 = ops::narrow(&x, 0, 0, 1)?;
    wgnn::autograd::no_grad(|| gpu_model.forward(&x1.to(gpu)?, None, true))?;
    wgnn::autograd::no_grad(|| cpu_model.forward(&x1, None, true))?;
    g.synchronize()?;
    let t = Instant::now();
    wgnn::autograd::no_grad(|| gpu_model.forward(&gx, None, true))?;
    g.synchronize()?;
    let first = t.elapsed().as_secs_f64();
    let runs = runs_for(first, runs);
    let t_gpu = time_after(first, runs, || {
        wgnn::autograd::no_grad(|| gpu_model.forward(&gx, None, true))?;
        g.synchronize()
    })?;
    let t_cpu = time(runs, || {
        wgnn::autograd::no_grad(|| cpu_model.forward(&x, None, true)).map(|_| ())
    })?;
    let (vg, vc) = (batch as f64 / t_gpu, batch as f64 / t_cpu);
    Ok(Figure {
        name: format!("model_d{}_b{batch}_s{seq}", hp.model_dim),
        what: format!(
            "TransformerPredictor d{} h{} l{}, batch {batch} x seq {seq}, eval forward under no_grad",
            hp.model_dim, hp.num_heads, hp.num_layers
        ),
        value: vg,
        unit: "seq/s",
        baseline_name: "the same model on the CPU",
        baseline: vc,
        ratio: vg / vc,
    })
}

/// Dispatches one encoder block of the d512 model records in eval under no_grad (the fused
/// ops), next to the same block recording a gradient (the separate ops).
fn block_dispatches(g: &GpuDevice, gpu: &Device, hp: &Hparams) -> wgnn::Result<Figure> {
    let mut m = filled_model(hp, gpu)?;
    let h = Tensor::zeros(&[2, 64, hp.model_dim], DType::F32, gpu)?;
    let block = m
        .transformer
        .layers
        .get_mut(0)
        .ok_or_else(|| wgnn::Error::InvalidArgument("no layer".into()))?;
    let count = |f: &mut dyn FnMut() -> wgnn::Result<Tensor>| -> wgnn::Result<u64> {
        let before = g.dispatch_count(None);
        f()?;
        g.synchronize()?;
        Ok(g.dispatch_count(None) - before)
    };
    let fused = count(&mut || wgnn::autograd::no_grad(|| block.forward(&h, None)))?;
    let apart = count(&mut || block.forward(&h, None))?;
    Ok(Figure {
        name: "dispatches_per_block".into(),
        what: format!(
            "kernels one encoder block (d{} h{}) records in eval under no_grad",
            hp.model_dim, hp.num_heads
        ),
        value: fused as f64,
        unit: "disp",
        baseline_name: "the same block recording a gradient",
        baseline: apart as f64,
        ratio: apart as f64 / fused.max(1) as f64,
    })
}

/// The tutorial's model on `dev` in eval mode, with deterministic non-zero weights (so every
/// op does real work).
fn filled_model(hp: &Hparams, dev: &Device) -> wgnn::Result<TransformerPredictor> {
    let mut cpu_model = TransformerPredictor::new(hp)?;
    let mut sd = cpu_model.state_dict()?;
    let keys: Vec<String> = sd.keys().iter().map(|k| k.to_string()).collect();
    for (i, k) in keys.iter().enumerate() {
        let t = sd
            .get(k)
            .cloned()
            .ok_or_else(|| wgnn::Error::Internal(k.clone()))?;
        let v: Vec<f32> = (0..t.numel())
            .map(|j| (((j * 7919 + i * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.1)
            .collect();
        sd.insert(k.clone(), Tensor::from_slice(&v, t.shape())?);
    }
    cpu_model.load_state_dict(&sd, true)?;
    cpu_model.to_device(dev)?;
    cpu_model.eval();
    Ok(cpu_model)
}

/// `--profile`: per-op tables of the reverse-task forward, the d512 forward and a training
/// step of the reverse task, on the GPU and on the CPU, each after one warm-up run.
fn profiles(
    gpu: &Device,
    big: &Hparams,
    big_shape: (usize, usize),
    resnet_batch: usize,
) -> wgnn::Result<Vec<(String, wgnn::profile::Profile)>> {
    let mut out = Vec::new();
    for dev in [gpu, &Device::Cpu] {
        let wait = || match dev.as_gpu() {
            Some(g) => g.synchronize(),
            None => Ok(()),
        };
        for (name, hp, (batch, seq)) in [
            ("reverse-task forward", Hparams::reverse_task(), (128, 16)),
            ("d512 forward", big.clone(), big_shape),
        ] {
            let mut m = filled_model(&hp, dev)?;
            let x: Vec<f32> = (0..batch * seq * hp.input_dim)
                .map(|i| ((i * 31) % 17) as f32 / 17.0)
                .collect();
            let x = Tensor::from_slice(&x, &[batch, seq, hp.input_dim])?.to(dev)?;
            wgnn::autograd::no_grad(|| m.forward(&x, None, true))?;
            wait()?;
            let (_, p) = dev.profile(|| wgnn::autograd::no_grad(|| m.forward(&x, None, true)))?;
            out.push((format!("{name} [{batch}, {seq}], eval, no_grad"), p));
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tutorial5/ResNet.ckpt"
        );
        let mut resnet = ResNet::from_checkpoint(path)?;
        resnet.to_device(dev)?;
        let x = Tensor::from_slice(
            &filler(resnet_batch * 3 * 32 * 32, 5),
            &[resnet_batch, 3, 32, 32],
        )?
        .to(dev)?;
        wgnn::autograd::no_grad(|| resnet.forward(&x))?;
        wait()?;
        let (_, p) = dev.profile(|| wgnn::autograd::no_grad(|| resnet.forward(&x)))?;
        out.push((
            format!("ResNet forward [{resnet_batch}, 3, 32, 32], eval, no_grad"),
            p,
        ));
        let hp = Hparams::reverse_task();
        let mut m = wgnn::nn::init::with_generator(&mut wgnn::ops::Generator::new(0), || {
            TransformerPredictor::new(&hp)
        })?
        .to(dev)?;
        m.train();
        let mut opt = Adam::new(&m, hp.lr);
        let x: Vec<i64> = (0..128 * 16)
            .map(|i| ((i * 7 + i / 16) % 10) as i64)
            .collect();
        let xt = ops::one_hot(&Tensor::from_slice(&x, &[128, 16])?.to(dev)?, 10)?;
        let y = Tensor::from_slice(&x, &[128 * 16])?.to(dev)?;
        let mut step = || -> wgnn::Result<()> {
            m.zero_grad();
            let logits = m.forward(&xt, None, true)?;
            let loss = ops::cross_entropy(&logits.reshape([128 * 16, 10])?, &y)?;
            loss.backward()?;
            clip_grad_norm_(&mut m, 5.0)?;
            opt.step(&mut m)
        };
        step()?;
        wait()?;
        let (_, p) = dev.profile(&mut step)?;
        out.push(("reverse-task training step [128, 16]".to_string(), p));
    }
    Ok(out)
}

/// The same model's eval forward on the GPU in float16 (`to_dtype(F16)`) against float32: what
/// half precision costs or saves per op today (each op widens its half inputs to float32 and
/// rounds its output back: half the bytes at rest, two conversion passes per op).
fn half_vs_float(
    g: &GpuDevice,
    gpu: &Device,
    hp: &Hparams,
    (batch, seq): (usize, usize),
    runs: usize,
) -> wgnn::Result<Figure> {
    let mut m32 = TransformerPredictor::new(hp).and_then(|m| m.to(gpu))?;
    m32.eval();
    let mut m16 = TransformerPredictor::new(hp).and_then(|m| m.to(gpu))?;
    m16.load_state_dict(&m32.state_dict()?, true)?;
    m16.to_dtype(DType::F16)?;
    m16.eval();
    let x: Vec<f32> = (0..batch * seq * hp.input_dim)
        .map(|i| ((i * 31) % 17) as f32 / 17.0)
        .collect();
    let x32 = Tensor::from_slice(&x, &[batch, seq, hp.input_dim])?.to(gpu)?;
    let x16 = x32.to_dtype(DType::F16)?;
    wgnn::autograd::no_grad(|| m32.forward(&x32, None, true))?;
    wgnn::autograd::no_grad(|| m16.forward(&x16, None, true))?;
    g.synchronize()?;
    let t32 = time(runs, || {
        wgnn::autograd::no_grad(|| m32.forward(&x32, None, true))?;
        g.synchronize()
    })?;
    let t16 = time(runs, || {
        wgnn::autograd::no_grad(|| m16.forward(&x16, None, true))?;
        g.synchronize()
    })?;
    Ok(Figure {
        name: format!("half_d{}_b{batch}_s{seq}", hp.model_dim),
        what: format!(
            "TransformerPredictor d{} eval forward on the GPU in float16 (weights {} KiB \
             against {} KiB)",
            hp.model_dim,
            m16.parameter_bytes() / 1024,
            m32.parameter_bytes() / 1024
        ),
        value: batch as f64 / t16,
        unit: "seq/s",
        baseline_name: "the same model in float32",
        baseline: batch as f64 / t32,
        ratio: t32 / t16,
    })
}

/// Seconds per training step of the reverse task (zero_grad, forward, cross entropy, backward,
/// clip_grad_norm_, Adam) and per forward + loss alone (recording the graph, as training's
/// forward does), on `dev`, waiting for the device at the end of each.
fn train_times(dev: &Device, runs: usize) -> wgnn::Result<(f64, f64)> {
    let hp = Hparams::reverse_task();
    let mut m = wgnn::nn::init::with_generator(&mut wgnn::ops::Generator::new(0), || {
        TransformerPredictor::new(&hp)
    })?
    .to(dev)?;
    m.train();
    let mut opt = Adam::new(&m, hp.lr);
    let x: Vec<i64> = (0..128 * 16)
        .map(|i| ((i * 7 + i / 16) % 10) as i64)
        .collect();
    let xt = ops::one_hot(&Tensor::from_slice(&x, &[128, 16])?.to(dev)?, 10)?;
    let y = Tensor::from_slice(&x, &[128 * 16])?.to(dev)?;
    let wait = || match dev.as_gpu() {
        Some(g) => g.synchronize(),
        None => Ok(()),
    };
    let mut forward = || -> wgnn::Result<Tensor> {
        let logits = m.forward(&xt, None, true)?;
        ops::cross_entropy(&logits.reshape([128 * 16, 10])?, &y)
    };
    let t_forward = time(runs, || {
        forward()?;
        wait()
    })?;
    let t_step = time(runs, || {
        m.zero_grad();
        let logits = m.forward(&xt, None, true)?;
        let loss = ops::cross_entropy(&logits.reshape([128 * 16, 10])?, &y)?;
        loss.backward()?;
        clip_grad_norm_(&mut m, 5.0)?;
        opt.step(&mut m)?;
        wait()
    })?;
    Ok((t_step, t_forward))
}

/// The GPU memory one training step holds at its peak (activations, saved tensors, gradients),
/// next to what is held between steps (weights, gradients, Adam's state), on a `[batch, seq]`
/// batch of one-hot sequences of the model's input size.
fn train_peak(
    g: &GpuDevice,
    gpu: &Device,
    hp: &Hparams,
    (batch, seq): (usize, usize),
) -> wgnn::Result<Figure> {
    let mut m = wgnn::nn::init::with_generator(&mut wgnn::ops::Generator::new(0), || {
        TransformerPredictor::new(hp)
    })?
    .to(gpu)?;
    m.train();
    let mut opt = Adam::new(&m, hp.lr);
    let classes = hp.num_classes.min(hp.input_dim);
    let x: Vec<i64> = (0..batch * seq)
        .map(|i| ((i * 7 + i / seq) % classes) as i64)
        .collect();
    let xt = ops::one_hot(
        &Tensor::from_slice(&x, &[batch, seq])?.to(gpu)?,
        hp.input_dim,
    )?;
    let y = Tensor::from_slice(&x, &[batch * seq])?.to(gpu)?;
    let mut step = || -> wgnn::Result<()> {
        m.zero_grad();
        let logits = m.forward(&xt, None, true)?;
        let loss = ops::cross_entropy(&logits.reshape([batch * seq, hp.num_classes])?, &y)?;
        loss.backward()?;
        clip_grad_norm_(&mut m, 5.0)?;
        opt.step(&mut m)?;
        g.synchronize()
    };
    step()?; // Adam's state and the gradients exist from here on
    g.reset_peak();
    let held = g.stats().live_bytes;
    step()?;
    let peak = g.stats().peak_bytes;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    Ok(Figure {
        name: format!("train_peak_d{}_b{batch}_s{seq}", hp.model_dim),
        what: format!(
            "GPU memory at the peak of one training step, d{} h{} l{}, batch {batch} x seq {seq}",
            hp.model_dim, hp.num_heads, hp.num_layers
        ),
        value: mib(peak),
        unit: "MiB",
        baseline_name: "held between steps (weights, grads, Adam)",
        baseline: mib(held),
        ratio: held as f64 / peak.max(1) as f64,
    })
}

/// Training steps per second on the GPU and the CPU, each next to its forward alone.
fn train_figures(gpu: &Device, runs: usize) -> wgnn::Result<Vec<Figure>> {
    let (gs, gf) = train_times(gpu, runs)?;
    let (cs, cf) = train_times(&Device::Cpu, runs)?;
    let what = "reverse task d32 h1 l1, batch 128 x seq 16: zero_grad, forward, loss, backward, clip, Adam";
    let per = |name: &str, step: f64, fwd: f64, base: &'static str| Figure {
        name: name.to_string(),
        what: format!(
            "{what}; backward + step = {:.2} x forward",
            (step - fwd) / fwd
        ),
        value: 1.0 / step,
        unit: "st/s",
        baseline_name: base,
        baseline: 1.0 / fwd,
        ratio: fwd / step,
    };
    Ok(vec![
        per(
            "train_step_gpu_d32_b128",
            gs,
            gf,
            "forward + loss alone (GPU)",
        ),
        per(
            "train_step_cpu_d32_b128",
            cs,
            cf,
            "forward + loss alone (CPU)",
        ),
        Figure {
            name: "train_gpu_vs_cpu_d32_b128".into(),
            what: what.into(),
            value: 1.0 / gs,
            unit: "st/s",
            baseline_name: "the same training step on the CPU",
            baseline: 1.0 / cs,
            ratio: cs / gs,
        },
    ])
}

/// Performance figures, each next to its baseline measured in the same run.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Args {
    /// Small sizes and 3 runs each (CI).
    #[arg(long)]
    quick: bool,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// The big model at the issues' size, [32, 256] (several minutes on a software adapter).
    #[arg(long, conflicts_with = "quick")]
    full: bool,
    /// Also profile the reverse-task forward, the d512 forward and a training step, per op
    /// (GPU timestamps where the adapter has them), on the GPU and the CPU.
    #[arg(long)]
    profile: bool,
}

/// Runs `f`, says on stderr how long it took, and passes its figures on.
fn timed<T>(what: &str, f: impl FnOnce() -> wgnn::Result<T>) -> wgnn::Result<T> {
    let t = Instant::now();
    let out = f()?;
    eprintln!("bench: {what} took {:.1} s", t.elapsed().as_secs_f64());
    Ok(out)
}

fn main() -> wgnn::Result<()> {
    env_logger::init();
    let args = Args::parse();
    let (quick, json) = (args.quick, args.json);
    let start = Instant::now();
    // Full size: 256 MiB moved per add (128 in, 128 out), out of every cache.
    let (mib, runs) = if quick { (16, 3) } else { (128, 7) };
    let gpu = Device::gpu()?;
    let Some(g) = gpu.as_gpu().cloned() else {
        return Err(wgnn::Error::InvalidArgument("no GPU".into()));
    };
    let mut figures = timed("per-op overhead", || op_overhead(&g, &gpu, runs))?;
    figures.push(timed("GPU add", || gpu_add_vs_copy(&g, &gpu, mib, runs))?);
    figures.push(timed("CPU add", || cpu_add_vs_memcpy(mib, runs))?);
    figures.push(timed("table", || table_gpu_vs_cpu_upload(&g, &gpu, runs))?);
    figures.push(timed("to_device", || {
        tree_vs_one_upload(&g, &gpu, mib / 2, runs)
    })?);
    let shapes: &[(usize, usize, usize)] = if quick {
        &[(2048, 32, 96), (512, 512, 512)]
    } else {
        &[
            (2048, 32, 96),
            (2048, 512, 512),
            (512, 512, 512),
            (8192, 512, 2048),
        ]
    };
    for &(m, k, n) in shapes {
        figures.push(timed(&format!("matmul {m}x{k}x{n}"), || {
            matmul_gpu_vs_cpu(&g, &gpu, (m, k, n), runs)
        })?);
    }
    let conv_batch = if quick { 16 } else { 128 };
    for (c, hw) in [(16, 32), (32, 16), (64, 8)] {
        figures.extend(timed(&format!("conv2d {c}x{hw}"), || {
            conv_figures(&g, &gpu, (conv_batch, c, hw), runs)
        })?);
    }
    figures.push(timed("ResNet", || {
        resnet_gpu_vs_cpu(&gpu, conv_batch, runs)
    })?);
    figures.push(timed("reverse-task model", || {
        model_gpu_vs_cpu(&g, &gpu, &Hparams::reverse_task(), (128, 16), runs)
    })?);
    figures.push(timed("float16 model", || {
        half_vs_float(&g, &gpu, &Hparams::reverse_task(), (128, 16), runs)
    })?);
    let big = Hparams {
        input_dim: 10,
        model_dim: 512,
        num_heads: 8,
        num_layers: 6,
        ..Hparams::reverse_task()
    };
    let big_shape = match (quick, args.full) {
        (true, _) => (2, 64),
        (false, false) => (4, 256),
        (false, true) => (32, 256),
    };
    figures.push(timed("dispatches per block", || {
        block_dispatches(&g, &gpu, &big)
    })?);
    figures.push(timed("d512 model", || {
        model_gpu_vs_cpu(&g, &gpu, &big, big_shape, runs)
    })?);
    figures.extend(timed("training step", || train_figures(&gpu, runs))?);
    figures.push(timed("training memory", || {
        train_peak(&g, &gpu, &Hparams::reverse_task(), (128, 16))
    })?);
    let big_train = if quick { (1, 32) } else { (1, 64) };
    figures.push(timed("training memory, d512", || {
        train_peak(&g, &gpu, &big, big_train)
    })?);
    let profiles = if args.profile {
        timed("profiles", || profiles(&gpu, &big, big_shape, conv_batch))?
    } else {
        Vec::new()
    };
    eprintln!("bench: {:.1} s in all", start.elapsed().as_secs_f64());
    if json {
        let v: Vec<serde_json::Value> = figures
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name, "what": f.what, "value": f.value, "unit": f.unit,
                    "baseline": f.baseline_name, "baseline_value": f.baseline, "ratio": f.ratio,
                })
            })
            .collect();
        let p: Vec<serde_json::Value> = profiles
            .iter()
            .map(|(what, p)| {
                let ops: Vec<serde_json::Value> = p
                    .ops
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "op": o.name, "calls": o.calls, "dispatches": o.dispatches,
                            "seconds": o.time.as_secs_f64(), "bytes_read": o.bytes_read,
                            "bytes_written": o.bytes_written, "flops": o.flops,
                        })
                    })
                    .collect();
                serde_json::json!({
                    "what": what, "device": p.device, "timing": p.timing.to_string(),
                    "wall_seconds": p.wall.as_secs_f64(), "ops": ops,
                })
            })
            .collect();
        let out = serde_json::json!({
            "adapter": g.adapter(), "quick": quick, "runs": runs, "figures": v, "profiles": p,
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "adapter: {}   ({} runs each, medians after a warm-up{})",
        g.adapter(),
        runs,
        if quick { ", --quick sizes" } else { "" }
    );
    println!(
        "{:<24} {:>15}   {:<34} {:>15}   {:>6}   what",
        "figure", "value", "baseline", "", "ratio"
    );
    for f in &figures {
        println!(
            "{:<24} {:>9.2} {:<5}   {:<34} {:>9.2} {:<5}   {:>6.3}   {}",
            f.name, f.value, f.unit, f.baseline_name, f.baseline, f.unit, f.ratio, f.what
        );
    }
    println!("ratio: rate / baseline rate, or baseline time / time: above 1 beats the baseline");
    for (what, p) in &profiles {
        println!("\n## {what}\n{p}");
    }
    Ok(())
}
