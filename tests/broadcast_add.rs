//! `broadcast_add` and `add_positional`: GPU equals CPU bit for bit on every path (vec4 rows,
//! scalar rows, general strided), and outputs past one dispatch or one binding are split.

mod common;

use wgnn::ops::{add_positional, broadcast_add};
use wgnn::{DType, Device, Error, Tensor};

fn t(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_slice(&common::randn(n, seed), shape).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// Runs `x + b` on the CPU and on `gpu`, checks the CPU against a naive loop, and the GPU
/// against the CPU bit for bit.
fn check(gpu: &Device, xs: &[usize], bs: &[usize]) {
    let (x, b) = (t(xs, 1), t(bs, 2));
    let cpu = broadcast_add(&x, &b).unwrap();
    let g = broadcast_add(&x.to(gpu).unwrap(), &b.to(gpu).unwrap()).unwrap();
    assert!(g.is_on(gpu));
    assert_eq!(g.shape(), cpu.shape());
    let (c, gv) = (cpu.to_vec::<f32>().unwrap(), g.to_vec::<f32>().unwrap());
    // naive reference
    let out = cpu.shape().to_vec();
    let (xv, bv) = (x.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let idx = |s: &[usize], coord: &[usize]| {
        let off = coord.len() - s.len();
        let mut i = 0;
        for (k, &d) in s.iter().enumerate() {
            i = i * d + if d == 1 { 0 } else { coord[off + k] };
        }
        i
    };
    let mut coord = vec![0; out.len()];
    for (flat, &cv) in c.iter().enumerate() {
        let mut f = flat;
        for k in (0..out.len()).rev() {
            coord[k] = f % out[k];
            f /= out[k];
        }
        assert_eq!(
            cv.to_bits(),
            (xv[idx(xs, &coord)] + bv[idx(bs, &coord)]).to_bits(),
            "{xs:?} + {bs:?} at {flat}"
        );
    }
    assert!(same_bits(&c, &gv), "{xs:?} + {bs:?}: GPU and CPU differ");
}

#[test]
fn every_path_is_bit_identical_to_the_cpu() {
    let gpu = common::gpu();
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 5, 8], &[1, 5, 8]),                      // rows, vec4
        (&[3, 7, 5], &[7, 5]),                         // rows, scalar
        (&[1, 1, 4], &[1, 1, 4]),                      // batch 1, seq 1
        (&[6, 4], &[4]),                               // bias
        (&[4, 1, 3], &[1, 5, 1]),                      // general: both broadcast
        (&[2, 3, 1, 5], &[3, 4, 1]),                   // general, rank 4
        (&[5], &[1]),                                  // scalar-like
        (&[], &[]),                                    // 0-d
        (&[0, 4], &[4]),                               // empty
        (&[2, 1, 2, 1, 2, 1, 2], &[2, 1, 2, 1, 2, 1]), // rank 7
    ];
    for (xs, bs) in cases {
        check(&gpu, xs, bs);
    }
}

#[test]
fn positional_add_for_many_shapes() {
    let gpu = common::gpu();
    for (batch, seq, d, max_len) in [
        (1, 1, 4, 10),
        (3, 10, 4, 10),
        (4, 7, 6, 9),
        (1, 9, 6, 9),
        (16, 33, 12, 64),
    ] {
        let x = t(&[batch, seq, d], 3);
        let table = t(&[1, max_len, d], 4);
        let cpu = add_positional(&x, &table).unwrap().to_vec::<f32>().unwrap();
        let xv = x.to_vec::<f32>().unwrap();
        let tv = table.to_vec::<f32>().unwrap();
        for (i, v) in cpu.iter().enumerate() {
            assert_eq!(v.to_bits(), (xv[i] + tv[i % (seq * d)]).to_bits());
        }
        let g = add_positional(&x.to(&gpu).unwrap(), &table.to(&gpu).unwrap()).unwrap();
        assert!(
            same_bits(&cpu, &g.to_vec::<f32>().unwrap()),
            "{batch}x{seq}x{d}"
        );
    }
}

#[test]
fn small_limits_force_every_kind_of_split() {
    // 4 KiB bindings and 4 workgroups per dimension: every path must split rows, batches and
    // general outputs into many dispatches and still give the CPU's bits.
    let gpu = common::gpu_with_limits(|l| {
        l.max_storage_buffer_binding_size = 4096;
        l.max_compute_workgroups_per_dimension = 4;
    });
    let cases: &[(&[usize], &[usize])] = &[
        (&[9, 100, 16], &[1, 100, 16]), // vec4 rows longer than a binding
        (&[9, 100, 15], &[100, 15]),    // scalar rows longer than a binding
        (&[300, 4], &[4]),              // many short rows: batch chunks
        (&[1100, 3], &[1, 3]),          // more rows than 4 workgroups in y
    ];
    for (xs, bs) in cases {
        check(&gpu, xs, bs);
    }
    check(&gpu, &[4, 3, 1], &[1, 3, 300]); // general path: 3600 outputs over 4 KiB bindings
                                           // A general-path *input* larger than one binding cannot be split: the error names the limit.
    let e = broadcast_add(
        &t(&[4, 3, 1], 5).to(&gpu).unwrap(),
        &t(&[1, 3, 800], 6).to(&gpu).unwrap(),
    )
    .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Limit {
                limit_name: "max_storage_buffer_binding_size",
                limit: 4096,
                ..
            }
        ),
        "{e}"
    );
    // The table kernel splits by rows the same way (odd width too).
    for d in [10, 7] {
        let table = wgnn::ops::positional_table(300, d, &gpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let want = wgnn::ops::positional_table(300, d, &Device::Cpu)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert!(same_bits(&table, &want), "d_model {d}");
    }
    // A row wider than a binding cannot be split: the error names the limit.
    let e = wgnn::ops::positional_table(2, 2000, &gpu).unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Limit {
                limit_name: "max_storage_buffer_binding_size",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn outputs_past_one_dispatch_and_past_128_mib_at_real_limits() {
    let gpu = common::gpu();
    // Scalar row path: 16,777,279 elements > 65535 * 256 invocations in one dimension.
    let (x, b) = (t(&[1, 16_777, 1_001], 7), t(&[1, 16_777, 1_001], 8));
    let cpu = broadcast_add(&x, &b).unwrap().to_vec::<f32>().unwrap();
    let g = broadcast_add(&x.to(&gpu).unwrap(), &b.to(&gpu).unwrap()).unwrap();
    assert!(
        same_bits(&cpu, &g.to_vec::<f32>().unwrap()),
        "output past one dispatch"
    );
    // 3 x 4096 x 2800 f32 = 137.6 MB > 128 MiB.
    let (x, table) = (t(&[3, 4096, 2800], 9), t(&[1, 4096, 2800], 10));
    let cpu = add_positional(&x, &table).unwrap().to_vec::<f32>().unwrap();
    let g = add_positional(&x.to(&gpu).unwrap(), &table.to(&gpu).unwrap()).unwrap();
    assert!(
        same_bits(&cpu, &g.to_vec::<f32>().unwrap()),
        "output past 128 MiB"
    );
}

#[test]
fn errors_name_shapes_dtypes_and_devices() {
    let cpu = Device::Cpu;
    let e = broadcast_add(&t(&[2, 3], 1), &t(&[4], 2)).unwrap_err();
    assert!(
        e.to_string()
            .contains("size of x (3) must match the size of b (4) at dimension 1"),
        "{e}"
    );
    let i = Tensor::zeros(&[3], DType::I32, &cpu).unwrap();
    let e = broadcast_add(&t(&[3], 1), &i).unwrap_err();
    assert!(
        matches!(e, Error::Dtype { .. }) && e.to_string().contains("int32"),
        "{e}"
    );
    let gpu = common::gpu();
    let e = broadcast_add(&t(&[3], 1), &t(&[3], 1).to(&gpu).unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("different devices (cpu and gpu:"),
        "{e}"
    );
    let e = broadcast_add(&t(&[1; 9], 1), &t(&[1, 1], 1)).unwrap();
    assert_eq!(
        e.shape(),
        [1; 9],
        "rank 9 with a row-broadcast b takes the row path"
    );
    let e = broadcast_add(&t(&[2, 1, 1, 1, 1, 1, 1, 1, 1], 1), &t(&[3, 1], 1)).unwrap_err();
    assert!(e.to_string().contains("rank 9"), "{e}");
}
