//! The async API every target has (the browser has nothing else): the blocking API is a thin
//! `pollster` wrapper over it natively, and these tests drive the async forms themselves, on
//! the GPU and the CPU. Loading from bytes: the same dicts and errors as loading from files.

mod common;

use pollster::block_on;
use wgnn::{ops, Device, StateDict, Tensor};

#[test]
fn the_async_forms_give_what_the_blocking_ones_give() {
    let gpu = block_on(Device::gpu_async()).expect("a GPU through the async constructor");
    let g = gpu.as_gpu().unwrap();
    let xs: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
    for d in [Device::Cpu, gpu.clone()] {
        let x = Tensor::from_slice(&xs, &[10, 100]).unwrap().to(&d).unwrap();
        let y = ops::softmax(&ops::relu(&x).unwrap()).unwrap();
        let v = block_on(y.to_vec_async::<f32>()).unwrap();
        assert_eq!(v, y.to_vec::<f32>().unwrap(), "{d}");
        // A view reads back dense, asynchronously too.
        let t = ops::t(&y).unwrap();
        assert!(
            block_on(t.to_bytes_async()).unwrap() == t.to_bytes().unwrap(),
            "{d}"
        );
        let s = ops::sum(&x, &[0, 1], false).unwrap();
        assert_eq!(
            block_on(s.item_async::<f32>()).unwrap(),
            s.item::<f32>().unwrap()
        );
        let e = block_on(x.item_async::<f32>()).unwrap_err().to_string();
        assert!(e.contains("not one"), "{e}");
    }
    block_on(g.synchronize_async()).unwrap();
    let listed = block_on(wgnn::enumerate_adapters_async(wgpu::Backends::all()));
    assert_eq!(listed, wgnn::enumerate_adapters(wgpu::Backends::all()));
    assert!(!listed.is_empty());
}

#[test]
fn state_dicts_load_from_bytes_as_from_files() {
    let gpu = common::gpu();
    for file in [
        "reverse_trained.safetensors",
        "reverse_state_dict.pt",
        "reverse.ckpt",
        "reverse_legacy.pt",
    ] {
        let path = common::fixture(file);
        let from_file = StateDict::load(&path).unwrap();
        let from_bytes = StateDict::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(from_file.keys(), from_bytes.keys(), "{file}");
        for k in from_file.keys() {
            let (a, b) = (from_file.get(k).unwrap(), from_bytes.get(k).unwrap());
            assert_eq!(a.shape(), b.shape(), "{file} {k}");
            assert!(a.to_bytes().unwrap() == b.to_bytes().unwrap(), "{file} {k}");
        }
        // Saved bytes round-trip, and the async form (GPU tensors read back by awaiting) writes
        // the same file.
        let same = |bytes: &[u8]| {
            let back = StateDict::from_bytes(bytes).unwrap();
            let sorted = |sd: &StateDict| {
                let mut k: Vec<String> = sd.keys().iter().map(|s| s.to_string()).collect();
                k.sort();
                k
            };
            // safetensors orders its entries itself; the set is what must survive.
            assert_eq!(sorted(&back), sorted(&from_file), "{file}");
            for k in from_file.keys() {
                let (a, b) = (from_file.get(k).unwrap(), back.get(k).unwrap());
                assert!(a.to_bytes().unwrap() == b.to_bytes().unwrap(), "{file} {k}");
            }
        };
        same(&from_bytes.to_bytes().unwrap());
        let on_gpu = from_bytes.to_device(&gpu).unwrap();
        same(&block_on(on_gpu.to_bytes_async()).unwrap());
    }
    // A bad file: the error `load` gives, but for the path.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    let junk = b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 12}      ".to_vec();
    std::fs::write(&bad, &junk).unwrap();
    let from_file = StateDict::load(&bad).unwrap_err().to_string();
    let from_bytes = StateDict::from_bytes(&junk).unwrap_err().to_string();
    assert!(from_file.contains("bad.safetensors"), "{from_file}");
    // "invalid checkpoint data in PATH: why" against "invalid checkpoint data: why".
    let without_path = from_file.replace(&format!(" in {}", bad.display()), "");
    assert_eq!(without_path, from_bytes);
    // The browser test (`web/tests/browser.rs`) asserts this same text.
    assert_eq!(from_bytes, "invalid checkpoint data: invalid header length");
    assert!(from_bytes.contains("header"), "{from_bytes}");
}
