//! The profiler: per-op calls, dispatches, bytes, FLOPs and times, on the CPU and on the GPU
//! with each timing the adapter offers.

mod common;

use wgnn::profile::Timing;
use wgnn::{ops, DType, Device, Tensor};

/// A matmul then a softmax of its output then a relu, on `dev`.
fn work(dev: &Device) -> wgnn::Result<Tensor> {
    let a = Tensor::from_slice(
        &(0..64 * 48)
            .map(|i| (i % 7) as f32 * 0.1)
            .collect::<Vec<_>>(),
        &[64, 48],
    )?
    .to(dev)?;
    let b = Tensor::from_slice(
        &(0..48 * 32)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect::<Vec<_>>(),
        &[48, 32],
    )?
    .to(dev)?;
    let y = ops::matmul(&a, &b)?;
    let s = ops::softmax(&y)?;
    ops::relu(&s)
}

fn check(p: &wgnn::profile::Profile, gpu: bool) {
    let mm = p.op("matmul").expect("matmul in the profile");
    assert_eq!(mm.calls, 1);
    assert_eq!(mm.flops, 2 * 64 * 48 * 32);
    assert_eq!(mm.bytes_read, (64 * 48 + 48 * 32) * 4);
    assert_eq!(mm.bytes_written, 64 * 32 * 4);
    for name in ["matmul", "softmax", "relu"] {
        let o = p
            .op(name)
            .unwrap_or_else(|| panic!("{name} missing from\n{p}"));
        assert_eq!(o.calls, 1, "{name}");
        assert!(
            o.time > std::time::Duration::ZERO,
            "{name} took no time\n{p}"
        );
        assert_eq!(o.dispatches >= 1, gpu, "{name} dispatches");
    }
    assert!(p.op_time() <= p.wall, "{p}");
    // Largest time first, and the table names every op.
    assert!(p.ops.windows(2).all(|w| w[0].time >= w[1].time));
    let table = p.to_string();
    for o in &p.ops {
        assert!(table.contains(&o.name), "{table}");
    }
}

#[test]
fn cpu_profile_counts_each_op() {
    let (y, p) = Device::Cpu.profile(|| work(&Device::Cpu)).unwrap();
    assert_eq!(y.shape(), [64, 32]);
    assert_eq!(p.timing, Timing::Cpu);
    check(&p, false);
    // Work outside a profile is not recorded in the next one.
    let (_, p2) = Device::Cpu
        .profile(|| ops::relu(&Tensor::zeros(&[4], DType::F32, &Device::Cpu)?))
        .unwrap();
    assert_eq!(p2.calls(), 1, "{p2}");
}

#[test]
fn profiles_do_not_nest() {
    let err = Device::Cpu
        .profile(|| Device::Cpu.profile(|| Ok(())).map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("do not nest"), "{err}");
    // The outer profile ended; a new one starts.
    Device::Cpu.profile(|| Ok(())).unwrap();
}

#[test]
fn gpu_profile_with_each_timing() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap().clone();
    let expected = work(&Device::Cpu).unwrap().to_vec::<f32>().unwrap();
    let mut timings = vec![Timing::HostSync];
    if g.has_timestamps() {
        timings.push(Timing::GpuTimestamps);
    } else {
        let err = g
            .profile_with(Timing::GpuTimestamps, || Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("TIMESTAMP_QUERY"), "{err}");
    }
    for timing in timings {
        let (y, p) = g.profile_with(timing, || work(&gpu)).unwrap();
        assert_eq!(p.timing, timing);
        check(&p, true);
        // Profiling changes no result.
        let got = y.to_vec::<f32>().unwrap();
        let err = got
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-5, "{timing:?}: {err}");
    }
    // The default picks timestamps where the adapter has them.
    let (_, p) = g.profile(|| work(&gpu)).unwrap();
    let want = if g.has_timestamps() {
        Timing::GpuTimestamps
    } else {
        Timing::HostSync
    };
    assert_eq!(p.timing, want);
    // More passes than one query set holds (2048 pairs) still resolve.
    let x = Tensor::zeros(&[8], DType::F32, &gpu).unwrap();
    let (_, p) = g
        .profile(|| {
            let mut y = x.clone();
            for _ in 0..2100 {
                y = ops::relu(&y)?;
            }
            Ok(y)
        })
        .unwrap();
    let relu = p.op("relu").unwrap();
    assert_eq!((relu.calls, relu.dispatches), (2100, 2100));
    assert!(relu.time > std::time::Duration::ZERO);
    // A GPU profile ignores the CPU device's ops, and a profile that fails still ends.
    let (_, p) = g.profile(|| work(&Device::Cpu)).unwrap();
    assert_eq!(p.calls(), 0, "{p}");
    assert!(g
        .profile(|| -> wgnn::Result<()> { Err(wgnn::Error::InvalidArgument("mine".into())) })
        .is_err());
    g.profile(|| Ok(())).unwrap();
}
