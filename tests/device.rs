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
    let pe = wgnn::PositionalEncoding::new(4, 8, &d).unwrap();
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
