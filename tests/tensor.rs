//! Tensors: round trips for every dtype, edge shapes, large tensors, display, errors.

mod common;

use wgnn::{DType, Device, Error, Tensor};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

#[test]
fn round_trip_every_dtype_and_edge_shape_bit_exact() {
    let gpu = common::gpu();
    let shapes: [&[usize]; 5] = [&[], &[0, 4], &[7], &[3, 5], &[2, 3, 1, 5]];
    for dtype in DType::ALL {
        for shape in shapes {
            let n: usize = shape.iter().product::<usize>() * dtype.size();
            let mut bytes = pattern(n);
            if dtype == DType::Bool {
                bytes.iter_mut().for_each(|b| *b &= 1);
            }
            let t = Tensor::from_bytes(&bytes, shape, dtype).unwrap();
            let g = t.to(&gpu).unwrap();
            assert!(g.is_on(&gpu));
            assert_eq!(g.shape(), shape);
            assert_eq!(g.dtype(), dtype);
            let back = g.to(&Device::Cpu).unwrap();
            assert_eq!(back.to_bytes().unwrap(), bytes, "{dtype} {shape:?}");
        }
    }
}

#[test]
fn odd_f16_and_u8_counts_survive_the_4_byte_copy_alignment() {
    let gpu = common::gpu();
    let h: Vec<half::f16> = (0..7)
        .map(|i| half::f16::from_f32(i as f32 * 0.5 - 1.0))
        .collect();
    let t = Tensor::from_slice(&h, &[7]).unwrap().to(&gpu).unwrap();
    assert_eq!(t.to_vec::<half::f16>().unwrap(), h);
    let u: Vec<u8> = (0..13).collect();
    let t = Tensor::from_slice(&u, &[13]).unwrap().to(&gpu).unwrap();
    assert_eq!(t.to_vec::<u8>().unwrap(), u);
}

#[test]
fn gpu_to_gpu_across_two_devices() {
    let a = common::gpu();
    let b = common::gpu();
    assert_ne!(a, b, "two opened devices are two devices");
    let v = common::randn(1001, 3);
    let t = Tensor::from_slice(&v, &[1001]).unwrap().to(&a).unwrap();
    let u = t.to(&b).unwrap();
    assert!(u.is_on(&b) && !u.is_on(&a));
    assert_eq!(u.to_vec::<f32>().unwrap(), v);
}

#[test]
fn tensor_larger_than_128_mib_round_trips() {
    let gpu = common::gpu();
    let n = (129 << 20) / 4 + 3; // 129 MiB + 12 bytes of f32
    let v: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2654435761)).collect();
    let t = Tensor::from_slice(&v, &[n]).unwrap();
    let back = t.to(&gpu).unwrap().to_vec::<u32>().unwrap();
    assert!(back == v, "129 MiB round trip differs");
}

#[test]
fn data_length_mismatch_is_an_error() {
    let e = Tensor::from_slice(&[1f32, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert_eq!(
        e,
        Error::DataLength {
            shape: vec![2, 2],
            dtype: "float32",
            expected: 4,
            expected_bytes: 16,
            got_bytes: 12
        }
    );
    assert!(
        e.to_string().contains("shape [2, 2] holds 4 element(s)"),
        "{e}"
    );
}

#[test]
fn to_vec_with_wrong_type_is_an_error() {
    let t = Tensor::from_slice(&[1i64, 2], &[2]).unwrap();
    let e = t.to_vec::<f32>().unwrap_err();
    assert!(matches!(e, Error::Dtype { .. }), "{e}");
}

#[test]
fn display_is_summarised_with_shape_dtype_device() {
    let t =
        Tensor::from_slice(&(0..2000).map(|i| i as f32).collect::<Vec<_>>(), &[2, 1000]).unwrap();
    let s = t.to_string();
    assert!(
        s.starts_with("tensor([[0.0000, 1.0000, 2.0000, ..., 997.0000, 998.0000, 999.0000],"),
        "{s}"
    );
    assert!(
        s.ends_with("shape=[2, 1000], dtype=float32, device=cpu)"),
        "{s}"
    );
    let small = Tensor::from_slice(&[1i64, -2], &[2]).unwrap();
    assert_eq!(
        small.to_string(),
        "tensor([1, -2], shape=[2], dtype=int64, device=cpu)"
    );
    assert_eq!(
        format!("{small:?}"),
        "Tensor { shape: [2], dtype: int64, device: Device::Cpu }"
    );
}

#[test]
fn dtype_conversion_widens_floats_and_refuses_lossy_ones() {
    let h = [half::bf16::from_f32(1.5), half::bf16::from_f32(-0.0078125)];
    let t = Tensor::from_slice(&h, &[2])
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), [1.5, -0.0078125]);
    let f = Tensor::from_slice(&[1.5f32], &[1]).unwrap();
    assert!(matches!(f.to_dtype(DType::I64), Err(Error::Dtype { .. })));
    let big = Tensor::from_slice(&[300i64], &[1]).unwrap();
    let e = big.to_dtype(DType::U8).unwrap_err();
    assert!(e.to_string().contains("300"), "{e}");
}
