//! The test device. GPU tests never skip: with no adapter they fail and say how to get one.
#![allow(dead_code)]

pub mod models;

use std::path::PathBuf;

use wgnn::Device;

/// The GPU the tests run on: `Device::gpu()`, so `WGPU_BACKEND=vulkan|gl` picks the backend.
pub fn gpu() -> Device {
    let _ = env_logger::builder().is_test(true).try_init();
    match Device::gpu() {
        Ok(d) => {
            eprintln!("test device: {}", d.as_gpu().map(|g| g.adapter()).unwrap_or_default());
            d
        }
        Err(e) => panic!(
            "GPU tests need an adapter and found none: {e}\n\
             On Debian/Ubuntu: `apt-get install mesa-vulkan-drivers` (lavapipe, WGPU_BACKEND=vulkan) \
             or Mesa's llvmpipe (WGPU_BACKEND=gl)."
        ),
    }
}

/// A GPU opened with explicit limits (to exercise splitting at small sizes).
pub fn gpu_with_limits(f: impl FnOnce(&mut wgpu::Limits)) -> Device {
    let base = gpu();
    let mut limits = base.as_gpu().unwrap().limits().clone();
    f(&mut limits);
    let mut opts = wgnn::GpuOptions::from_env();
    opts.limits = Some(limits);
    Device::gpu_with(&opts).expect("opening the GPU with lowered limits")
}

/// The binary of example `name`, built first (once per test run, with every other example, so
/// a stale binary is never tested: `cargo test --test X` alone does not build examples).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success(), "could not build the examples");
    });
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// Runs example `name` with `args`: (exit code, stdout, stderr).
pub fn run_example(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(example(name))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Deterministic pseudo-random f32s in [-1, 1) (xorshift).
pub fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
