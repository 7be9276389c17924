//! Devices: choosing an adapter, adopting an application's device, and clear errors for the
//! misuses a user meets first.

mod common;

use wgnn::{DType, Device, Error, GpuOptions, Tensor};

#[test]
fn adapter_name_that_matches_nothing_lists_the_adapters_found() {
    let _gpu = common::gpu(); // an adapter exists, so the list below is not empty
    let opts = GpuOptions {
        adapter_name: Some("no such adapter 1234".into()),
        ..GpuOptions::from_env()
    };
    match Device::gpu_with(&opts) {
        Err(Error::AdapterNotFound { wanted, found, .. }) => {
            assert_eq!(wanted, "no such adapter 1234");
            assert!(!found.is_empty(), "the error lists what was found");
            let msg = Error::AdapterNotFound {
                wanted,
                source_var: "WGPU_ADAPTER_NAME".into(),
                found,
            }
            .to_string();
            assert!(msg.contains("adapters found:"), "{msg}");
        }
        other => panic!("expected AdapterNotFound, got {other:?}"),
    }
}

#[test]
fn adapter_name_that_matches_is_chosen() {
    let gpu = common::gpu();
    let name = gpu.as_gpu().unwrap().adapter_info().name.clone();
    let opts = GpuOptions {
        adapter_name: Some(name[..name.len().min(8)].to_uppercase()),
        ..GpuOptions::from_env()
    };
    let d = Device::gpu_with(&opts).unwrap();
    assert_eq!(d.as_gpu().unwrap().adapter_info().name, name);
    assert!(d
        .as_gpu()
        .unwrap()
        .choice_reason()
        .contains("its name contains"));
}

#[test]
fn software_adapter_is_a_cpu_type_adapter() {
    let d = Device::software().unwrap();
    assert_eq!(
        d.as_gpu().unwrap().adapter_info().device_type,
        wgpu::DeviceType::Cpu
    );
}

#[test]
fn devices_compare_by_identity_and_display_like_pytorch() {
    let a = common::gpu();
    assert_eq!(a, a.clone());
    assert_ne!(a, Device::Cpu);
    assert_eq!(Device::Cpu.to_string(), "cpu");
    assert!(a.to_string().starts_with("gpu:"));
}

#[test]
fn an_applications_own_device_can_be_adopted() {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let adapter = pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .next()
        .expect("an adapter (apt-get install mesa-vulkan-drivers)");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let d = Device::from_wgpu(device.clone(), queue);
    let t = Tensor::from_slice(&[1f32, 2.0, 3.0], &[3])
        .unwrap()
        .to(&d)
        .unwrap();
    // The tensor's buffer lives on the application's device.
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0]);
    let pe = wgnn::PositionalEncoding::on(4, 8, &d).unwrap();
    assert!(pe.pe.tensor().is_on(&d));
    assert_eq!(d.as_gpu().unwrap().wgpu_device(), &device);
}

#[test]
fn a_tensor_beyond_the_buffer_limit_is_an_error_naming_the_limit() {
    let gpu = common::gpu_with_limits(|l| l.max_buffer_size = 1 << 20);
    let t = Tensor::zeros(&[(1 << 20) / 4 + 1], DType::F32, &Device::Cpu).unwrap();
    let e = t.to(&gpu).unwrap_err();
    match &e {
        Error::Limit {
            limit_name,
            limit,
            requested,
            ..
        } => {
            assert_eq!(*limit_name, "max_buffer_size");
            assert_eq!(*limit, 1 << 20);
            assert_eq!(*requested, (1 << 20) + 4);
        }
        other => panic!("expected a Limit error, got {other:?}"),
    }
    assert!(e.to_string().contains("max_buffer_size is 1048576"), "{e}");
    let e = Tensor::zeros(&[(1 << 20) / 4 + 1], DType::F32, &gpu).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
}

#[test]
fn reading_back_from_a_destroyed_device_is_an_error() {
    let gpu = common::gpu();
    let t = Tensor::from_slice(&[1f32, 2.0], &[2])
        .unwrap()
        .to(&gpu)
        .unwrap();
    gpu.as_gpu().unwrap().wgpu_device().destroy();
    let e = t.to_vec::<f32>().unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e:?}");
    assert!(
        e.to_string().contains("Destroyed") && e.to_string().contains("create a new Device"),
        "{e}"
    );
    eprintln!("after destroy: {e}");
    // And every later use says so too, without hanging or panicking.
    let e = Tensor::zeros(&[4], DType::F32, &gpu).unwrap_err();
    assert!(matches!(e, Error::DeviceLost { .. }), "{e:?}");
}

/// Issue 19, defect 1: the timeout detects a GPU that makes no progress; it does not bound a
/// job. Seconds of healthy work (a chain of 100 matrix products, recorded without a read-back)
/// complete under a timeout of one second, because they go to the GPU in pieces of bounded
/// work and each piece is waited for on its own.
#[test]
fn long_healthy_work_completes_under_a_short_timeout() {
    let base = common::gpu();
    let opts = GpuOptions {
        timeout: std::time::Duration::from_secs(1),
        ..GpuOptions::from_env()
    };
    let gpu = Device::gpu_with(&opts).unwrap();
    assert_eq!(
        gpu.as_gpu().unwrap().adapter(),
        base.as_gpu().unwrap().adapter()
    );
    let n = 512;
    // An orthogonal-ish step keeps the values bounded: w = I / 2 + (shift by one) / 2.
    let mut w = vec![0f32; n * n];
    for i in 0..n {
        w[i * n + i] = 0.5;
        w[i * n + (i + 1) % n] = 0.5;
    }
    let w = Tensor::from_slice(&w, &[n, n]).unwrap();
    let x0 = Tensor::from_slice(&common::randn(n * n, 3), &[n, n]).unwrap();
    let (wg, mut y) = (w.to(&gpu).unwrap(), x0.to(&gpu).unwrap());
    let g = gpu.as_gpu().unwrap();
    let before = g.submission_count();
    let t = std::time::Instant::now();
    for _ in 0..100 {
        y = wgnn::ops::matmul(&y, &wg).unwrap();
    }
    let got = y
        .to_vec::<f32>()
        .expect("long work finished without a timeout");
    let secs = t.elapsed().as_secs_f64();
    let submissions = g.submission_count() - before;
    eprintln!("100 matmuls of {n}³: {secs:.2} s in {submissions} submissions");
    assert!(submissions >= 10, "{submissions} submissions");
    // Each step averages neighbours exactly (halves of sums of two floats round the same
    // way on every device) up to the sum's rounding: compare with the CPU chain.
    let mut c = x0;
    for _ in 0..100 {
        c = wgnn::ops::matmul(&c, &w).unwrap();
    }
    assert_eq!(got, c.to_vec::<f32>().unwrap());
}

/// Issue 19, defect 3: a device opened with a tiny `max_buffer_size` ran no op at all (the
/// uniform ring was allocated at 64 KiB whatever the limit). Now ops run within the limit and
/// match the CPU, and a limit under which nothing can run is refused when the device opens.
#[test]
fn tiny_buffer_limits_still_run_ops_or_are_refused_up_front() {
    use wgnn::ops;
    let gpu = common::gpu_with_limits(|l| {
        l.max_buffer_size = 4096;
        l.max_storage_buffer_binding_size = 4096;
    });
    let x_host = common::randn(2 * 5 * 8, 11);
    let w_host = common::randn(8 * 6, 12);
    let run = |d: &Device| -> Vec<Vec<f32>> {
        let x = Tensor::from_slice(&x_host, &[2, 5, 8])
            .unwrap()
            .to(d)
            .unwrap();
        let w = Tensor::from_slice(&w_host, &[6, 8]).unwrap().to(d).unwrap();
        let pe = wgnn::PositionalEncoding::on(8, 16, d).unwrap();
        let a = pe.forward(&x).unwrap();
        let b = ops::relu(&ops::scale(&a, 0.5).unwrap()).unwrap();
        let h = ops::linear(&b, &w, None).unwrap();
        let n = ops::softmax(&ops::layer_norm(&h, &[6], None, None, 1e-5).unwrap()).unwrap();
        // Many small ops: more dispatches than the smaller ring has slots.
        let mut c = b.clone();
        for _ in 0..40 {
            c = ops::scale(&c, 1.0).unwrap();
        }
        [a, b, h, n, c]
            .iter()
            .map(|t| t.to_vec().unwrap())
            .collect()
    };
    let (g, c) = (run(&gpu), run(&Device::Cpu));
    assert_eq!(g[0], c[0]);
    assert_eq!(g[1], c[1]);
    assert_eq!(g[4], c[4]);
    for (gv, cv) in g[2..4].iter().zip(&c[2..4]) {
        for (a, b) in gv.iter().zip(cv) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
    // Past the limit: an error naming it, not a validation panic.
    let big = Tensor::zeros(&[2048], DType::F32, &gpu);
    assert!(
        matches!(
            big,
            Err(Error::Limit {
                limit_name: "max_buffer_size",
                ..
            })
        ),
        "{big:?}"
    );
    // A buffer that cannot hold one params slot: refused when the device opens.
    let mut opts = GpuOptions::from_env();
    let mut limits = common::gpu().as_gpu().unwrap().limits().clone();
    limits.max_buffer_size = 128;
    limits.max_storage_buffer_binding_size = 128;
    opts.limits = Some(limits);
    match Device::gpu_with(&opts) {
        Err(e @ Error::Limit { .. }) => {
            let m = e.to_string();
            assert!(m.contains("max_buffer_size") && m.contains("256"), "{m}");
        }
        other => panic!("expected a limit error, got {other:?}"),
    }
}

/// A validation error wgpu reports only when the command encoder is finished names the op
/// that recorded the faulty command, not whichever op happens to submit next; and the device
/// goes on working for the ops after it.
#[test]
fn a_deferred_validation_error_names_the_op_that_recorded_it() {
    let d = common::gpu();
    let g = d.as_gpu().unwrap();
    let x = Tensor::from_slice(&[1f32, -2., 3.], &[3])
        .unwrap()
        .to(&d)
        .unwrap();
    let e = g
        .__record_faulty_dispatch("faulty_op")
        .expect_err("a dispatch beyond the limits must be an error")
        .to_string();
    assert!(e.contains("faulty_op"), "{e}");
    let y = wgnn::ops::relu(&x).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), [1., 0., 3.]);
    // Between two good ops, too.
    let a = wgnn::ops::neg(&x).unwrap();
    let e = g
        .__record_faulty_dispatch("second_faulty_op")
        .unwrap_err()
        .to_string();
    assert!(e.contains("second_faulty_op") && !e.contains("neg"), "{e}");
    let b = wgnn::ops::relu(&a).unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap(), [0., 2., 0.]);
    // The same fault again is caught again: a shape that failed is never trusted.
    let e = g.__record_faulty_dispatch("third").unwrap_err().to_string();
    assert!(e.contains("third"), "{e}");
    assert_eq!(
        wgnn::ops::neg(&b).unwrap().to_vec::<f32>().unwrap(),
        [0., -2., 0.]
    );
}
