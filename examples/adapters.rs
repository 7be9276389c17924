//! Every adapter wgpu finds (backend, type, driver, key limits), and which one `Device::gpu()`
//! picks, and why. Honours WGPU_BACKEND, WGPU_POWER_PREF and WGPU_ADAPTER_NAME.
//!
//! cargo run --example adapters

use wgnn::{enumerate_adapters, Device, GpuOptions};

/// Every adapter wgpu finds (backend, type, driver, key limits), and which one Device::gpu()
/// picks and why. Honours WGPU_BACKEND, WGPU_POWER_PREF and WGPU_ADAPTER_NAME.
#[derive(clap::Parser, Debug)]
#[command(name = "adapters")]
struct Args {}

fn main() {
    env_logger::init();
    <Args as clap::Parser>::parse();
    let opts = GpuOptions::from_env();
    println!(
        "WGPU_BACKEND={} WGPU_POWER_PREF={} WGPU_ADAPTER_NAME={}",
        std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "(unset: all)".into()),
        std::env::var("WGPU_POWER_PREF").unwrap_or_else(|_| "(unset: high)".into()),
        std::env::var("WGPU_ADAPTER_NAME").unwrap_or_else(|_| "(unset)".into()),
    );
    let all = enumerate_adapters(opts.backends);
    if all.is_empty() {
        println!("no adapters found. On Linux: apt-get install mesa-vulkan-drivers (lavapipe), or WGPU_BACKEND=gl for llvmpipe.");
    }
    for a in &all {
        let l = &a.limits;
        println!(
            "- {a}\n    driver: {}\n    max_buffer_size {} MiB, max_storage_buffer_binding_size {} MiB, \
             max_compute_workgroups_per_dimension {}, max_compute_invocations_per_workgroup {}",
            if a.driver.is_empty() { "(not reported)" } else { &a.driver },
            l.max_buffer_size >> 20,
            l.max_storage_buffer_binding_size >> 20,
            l.max_compute_workgroups_per_dimension,
            l.max_compute_invocations_per_workgroup,
        );
    }
    match Device::gpu() {
        Ok(Device::Gpu(g)) => println!(
            "\nDevice::gpu() picks: {}\n  because: {}",
            g.adapter(),
            g.choice_reason()
        ),
        Ok(Device::Cpu) => println!("\nDevice::gpu() returned the CPU"),
        Err(e) => {
            println!("\nDevice::gpu() fails: {e}");
            std::process::exit(1);
        }
    }
}
