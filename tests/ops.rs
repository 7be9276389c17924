//! The ops of the Transformer on the CPU and the GPU: reductions against f64 references within
//! their stated bounds, everything else bit-identical across devices, and errors that name the
//! shapes, dtypes and devices involved.

mod common;

use common::{gpu, randn};
use wgnn::{ops, DType, Device, Tensor};

fn t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::from_slice(&randn(shape.iter().product(), seed), shape).unwrap()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// f64 reference of `matmul` for contiguous operands with broadcast batches; returns values and
/// the per-element bound `2 · K · 2⁻²⁴ · Σ|a·b|`.
fn matmul_ref(a: &Tensor, b: &Tensor, trans_b: bool, alpha: f64) -> (Vec<f64>, Vec<f64>) {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let n = if trans_b {
        sb[sb.len() - 2]
    } else {
        sb[sb.len() - 1]
    };
    let ba = &sa[..sa.len() - 2];
    let bb = &sb[..sb.len() - 2];
    let out = ops::broadcast_shape(ba, bb).unwrap();
    let (av, bv) = (f32s(a), f32s(b));
    let idx = |batch: &[usize], coord: &[usize]| -> usize {
        let off = coord.len() - batch.len();
        let mut i = 0;
        for d in 0..batch.len() {
            i = i * batch[d] + if batch[d] == 1 { 0 } else { coord[off + d] };
        }
        i
    };
    let nb: usize = out.iter().product();
    let (mut vals, mut bounds) = (Vec::new(), Vec::new());
    for z in 0..nb {
        let mut coord = vec![0; out.len()];
        let mut r = z;
        for d in (0..out.len()).rev() {
            coord[d] = r % out[d];
            r /= out[d];
        }
        let (za, zb) = (idx(ba, &coord), idx(bb, &coord));
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut abs) = (0f64, 0f64);
                for l in 0..k {
                    let x = av[za * m * k + i * k + l] as f64;
                    let y = if trans_b {
                        bv[zb * n * k + j * k + l]
                    } else {
                        bv[zb * k * n + l * n + j]
                    } as f64;
                    s += x * y;
                    abs += (x * y).abs();
                }
                vals.push(s * alpha);
                bounds.push(2.0 * k as f64 * f32::EPSILON as f64 / 2.0 * abs * alpha + 1e-30);
            }
        }
    }
    (vals, bounds)
}

fn assert_within(what: &str, got: &[f32], want: &[f64], bound: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((g, w), b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert!(
            (*g as f64 - w).abs() <= *b,
            "{what}: element {i}: {g} vs {w} (bound {b:e})"
        );
    }
}

#[test]
fn matmul_is_within_its_bound_on_cpu_and_gpu_for_every_shape_kind() {
    let g = gpu();
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3], &[3, 4]),
        (&[65, 33], &[33, 67]),   // crosses tile edges
        (&[130, 70], &[70, 129]), // several tiles
        (&[3, 17, 19], &[19, 5]), // batch folded into rows
        (&[2, 3, 5, 7], &[2, 3, 7, 4]),
        (&[2, 1, 5, 7], &[1, 3, 7, 4]),       // two broadcast levels
        (&[2, 1, 2, 5, 7], &[1, 3, 1, 7, 4]), // needs an expansion
        (&[5, 7], &[4, 7, 3]),                // a broadcast over b's batch
        (&[1, 300], &[300, 1]),               // long K
        (&[4, 0], &[0, 3]),                   // K = 0: zeros
    ];
    for (i, (sa, sb)) in cases.iter().enumerate() {
        let (a, b) = (t(sa, i as u64 + 1), t(sb, i as u64 + 100));
        let (want, bound) = matmul_ref(&a, &b, false, 1.0);
        let cpu = ops::matmul(&a, &b).unwrap();
        assert_within(&format!("cpu {sa:?}·{sb:?}"), &f32s(&cpu), &want, &bound);
        let gpu_out = ops::matmul(&a.to(&g).unwrap(), &b.to(&g).unwrap()).unwrap();
        assert_eq!(gpu_out.shape(), cpu.shape());
        assert_within(
            &format!("gpu {sa:?}·{sb:?}"),
            &f32s(&gpu_out),
            &want,
            &bound,
        );
    }
    // a·bᵀ scaled, as attention uses it.
    let (a, b) = (t(&[2, 3, 9, 8], 5), t(&[2, 3, 11, 8], 6));
    let alpha = (1.0 / 8f64.sqrt()) as f32;
    let (want, bound) = matmul_ref(&a, &b, true, alpha as f64);
    for d in [Device::Cpu, g.clone()] {
        let y = ops::matmul_nt(&a.to(&d).unwrap(), &b.to(&d).unwrap(), alpha).unwrap();
        assert_eq!(y.shape(), [2, 3, 9, 11]);
        assert_within(&format!("matmul_nt on {d}"), &f32s(&y), &want, &bound);
    }
    // 1-D operands are promoted and squeezed, as torch.matmul.
    let (v, m) = (t(&[7], 1), t(&[7, 3], 2));
    assert_eq!(ops::matmul(&v, &m).unwrap().shape(), [3]);
    assert_eq!(
        ops::matmul(
            &m.to(&g).unwrap().reshape([3, 7]).unwrap(),
            &v.to(&g).unwrap()
        )
        .unwrap()
        .shape(),
        [3]
    );
    assert_eq!(ops::matmul(&v, &v).unwrap().shape(), [] as [usize; 0]);
}

#[test]
fn linear_adds_the_bias_and_works_without_one() {
    let g = gpu();
    let (x, w, b) = (t(&[2, 3, 6], 1), t(&[4, 6], 2), t(&[4], 3));
    let (prod, bound) = matmul_ref(&x, &w, true, 1.0);
    let bias = f32s(&b);
    let want: Vec<f64> = prod
        .iter()
        .enumerate()
        .map(|(i, v)| v + bias[i % 4] as f64)
        .collect();
    let bound: Vec<f64> = bound
        .iter()
        .zip(&want)
        .map(|(b, w)| b + w.abs() * 1.2e-7)
        .collect();
    for d in [Device::Cpu, g] {
        let (xd, wd, bd) = (x.to(&d).unwrap(), w.to(&d).unwrap(), b.to(&d).unwrap());
        let y = ops::linear(&xd, &wd, Some(&bd)).unwrap();
        assert_eq!(y.shape(), [2, 3, 4]);
        assert_within(&format!("linear on {d}"), &f32s(&y), &want, &bound);
        let y = ops::linear(&xd, &wd, None).unwrap();
        assert_within(
            &format!("linear without bias on {d}"),
            &f32s(&y),
            &prod,
            &matmul_ref(&x, &w, true, 1.0).1,
        );
    }
}

#[test]
fn softmax_and_layer_norm_are_within_their_bounds() {
    let g = gpu();
    for (rows, width) in [(5usize, 1usize), (7, 16), (3, 100), (2, 513)] {
        let mut v = randn(rows * width, width as u64);
        v.iter_mut().for_each(|x| *x *= 8.0);
        if width > 1 {
            v[0] = -9e15; // a masked logit
        }
        let x = Tensor::from_slice(&v, &[rows, width]).unwrap();
        let mut sm = Vec::new();
        let mut ln = Vec::new();
        for r in 0..rows {
            let row: Vec<f64> = v[r * width..(r + 1) * width]
                .iter()
                .map(|&x| x as f64)
                .collect();
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = row.iter().map(|x| (x - m).exp()).sum();
            sm.extend(row.iter().map(|x| (x - m).exp() / s));
            let mean = row.iter().sum::<f64>() / width as f64;
            let var = row.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / width as f64;
            ln.extend(row.iter().map(|x| (x - mean) / (var + 1e-5).sqrt()));
        }
        let lmax = ln.iter().fold(0f64, |m, v| m.max(v.abs())).max(1.0);
        for d in [Device::Cpu, g.clone()] {
            let xd = x.to(&d).unwrap();
            let y = f32s(&ops::softmax(&xd).unwrap());
            for (a, b) in y.iter().zip(&sm) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-6 * b.max(1e-3),
                    "softmax {width} on {d}: {a} vs {b}"
                );
            }
            if width > 1 {
                let y = f32s(&ops::layer_norm(&xd, &[width], None, None, 1e-5).unwrap());
                for (a, b) in y.iter().zip(&ln) {
                    assert!(
                        (*a as f64 - b).abs() <= 2e-6 * lmax,
                        "layer_norm {width} on {d}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn elementwise_layout_and_index_ops_give_the_same_bits_on_cpu_and_gpu() {
    let g = gpu();
    let x = t(&[2, 3, 4, 5], 11);
    let mask = Tensor::from_slice(&[1f32, 0., 1., 1., 0.], &[5]).unwrap();
    let idx = Tensor::from_slice(&[3i64, 0, 9, 9, 1, 5], &[2, 3]).unwrap();
    let mut ties = randn(4 * 6, 3);
    ties[1] = 5.0;
    ties[4] = 5.0; // tie in row 0: first wins
    ties[7] = f32::NAN; // NaN wins row 1
    let am = Tensor::from_slice(&ties, &[4, 6]).unwrap();
    let run = |d: &Device| -> Vec<Vec<u8>> {
        let (x, mask, idx, am) = (
            x.to(d).unwrap(),
            mask.to(d).unwrap(),
            idx.to(d).unwrap(),
            am.to(d).unwrap(),
        );
        let mut out = vec![
            ops::relu(&x).unwrap(),
            ops::scale(&x, 0.17677669).unwrap(),
            ops::masked_fill(&x, &mask, -9e15).unwrap(),
            ops::permute(&x, &[0, 2, 1, 3]).unwrap(),
            ops::transpose(&x, 3, 1).unwrap(),
            ops::narrow(&x, 2, 1, 2).unwrap(),
            ops::expand(&mask, &[3, 5]).unwrap(),
            ops::permute(&idx, &[1, 0]).unwrap(), // int64, two words an element
            ops::one_hot(&idx, 10).unwrap(),
            ops::argmax(&am).unwrap(),
            ops::embedding(&idx, &t(&[10, 3], 4).to(d).unwrap()).unwrap(),
        ];
        out.extend(ops::chunk(&x, 3, 3).unwrap());
        out.iter().map(|t| t.to_bytes().unwrap()).collect()
    };
    let (cpu, gpu_out) = (run(&Device::Cpu), run(&g));
    for (i, (a, b)) in cpu.iter().zip(&gpu_out).enumerate() {
        assert_eq!(a, b, "result {i} differs between CPU and GPU");
    }
    // And they are the right values.
    let argmax: Vec<i64> = bytemuck::pod_collect_to_vec(&cpu[9]);
    assert_eq!(argmax[..2], [1, 1]);
    let chunks = ops::chunk(&x, 3, 3).unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.shape()[3]).collect::<Vec<_>>(),
        [2, 2, 1]
    );
    let p = ops::permute(&x, &[3, 0, 1, 2]).unwrap();
    assert_eq!(p.shape(), [5, 2, 3, 4]);
    let (xs, ps) = (f32s(&x), f32s(&p));
    // p[c3, c0, c1, c2] = x[c0, c1, c2, c3]; strides: p [24, 12, 4, 1], x [60, 20, 5, 1].
    let at = |c: [usize; 4]| {
        (
            ps[c[3] * 24 + c[0] * 12 + c[1] * 4 + c[2]],
            xs[c[0] * 60 + c[1] * 20 + c[2] * 5 + c[3]],
        )
    };
    for c in [[0, 2, 3, 1], [1, 1, 0, 4], [1, 2, 3, 0]] {
        let (a, b) = at(c);
        assert_eq!(a, b, "{c:?}");
    }
    let oh = f32s(&ops::one_hot(&idx, 10).unwrap());
    assert_eq!(oh[..10], [0., 0., 0., 1., 0., 0., 0., 0., 0., 0.]);
    let relu = f32s(&ops::relu(&x).unwrap());
    assert!(relu.iter().zip(&xs).all(|(r, x)| *r == x.max(0.0)));
}

#[test]
fn ops_refuse_bad_input_with_errors_that_name_it() {
    let g = gpu();
    let msg = |r: wgnn::Result<Tensor>| r.unwrap_err().to_string();
    let e = msg(ops::matmul(&t(&[3, 7], 1), &t(&[6, 2], 2)));
    assert!(e.contains("[3, 7]") && e.contains("[6, 2]"), "{e}");
    let e = msg(ops::matmul(&t(&[2, 3, 4], 1), &t(&[5, 4, 2], 2)));
    assert!(e.contains("broadcast"), "{e}");
    let e = msg(ops::linear(&t(&[2, 5], 1), &t(&[3, 4], 2), None));
    assert!(e.contains("[2, 5]") && e.contains("[3, 4]"), "{e}");
    let e = msg(ops::linear(
        &t(&[2, 4], 1),
        &t(&[3, 4], 2),
        Some(&t(&[4], 3)),
    ));
    assert!(e.contains("bias"), "{e}");
    let i = Tensor::from_slice(&[1i64, 2], &[2]).unwrap();
    let e = msg(ops::softmax(&i));
    assert!(e.contains("int64") && e.contains("float32"), "{e}");
    let e = msg(ops::one_hot(&t(&[2], 1), 3));
    assert!(e.contains("int64"), "{e}");
    let e = msg(ops::one_hot(&Tensor::from_slice(&[3i64], &[1]).unwrap(), 3));
    assert!(e.contains("out of range"), "{e}");
    let e = msg(ops::masked_fill(&t(&[2, 4, 4], 1), &t(&[3, 4], 2), 0.0));
    assert!(e.contains("[3, 4]") && e.contains("[2, 4, 4]"), "{e}");
    let e = msg(ops::matmul(&t(&[2, 2], 1), &t(&[2, 2], 2).to(&g).unwrap()));
    assert!(
        e.to_lowercase().contains("device") && e.contains("cpu"),
        "{e}"
    );
    let e = msg(ops::permute(&t(&[2, 3], 1), &[0, 0]));
    assert!(e.contains("permutation"), "{e}");
    let e = msg(ops::narrow(&t(&[2, 3], 1), 1, 2, 2));
    assert!(e.contains("size 3"), "{e}");
    let e = msg(ops::layer_norm(&t(&[2, 3], 1), &[4], None, None, 1e-5));
    assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
    // A permuted view costs no kernel whatever its dtype; copying a 1-byte one on the GPU
    // is an error naming the dtype (2-byte ones, float16 and bfloat16, copy: tests/half.rs).
    let bytes = Tensor::zeros(&[2, 2], DType::U8, &Device::Cpu)
        .unwrap()
        .to(&g)
        .unwrap();
    let e = msg(ops::permute(&bytes, &[1, 0]).and_then(|v| v.contiguous()));
    assert!(e.contains("uint8"), "{e}");
}

#[test]
fn empty_tensors_go_through_every_op_without_a_panic() {
    for d in [Device::Cpu, gpu()] {
        let z = |s: &[usize]| Tensor::zeros(s, DType::F32, &d).unwrap();
        assert_eq!(
            ops::matmul(&z(&[0, 3]), &z(&[3, 4])).unwrap().shape(),
            [0, 4]
        );
        assert_eq!(
            ops::matmul(&z(&[2, 0, 3]), &z(&[3, 0])).unwrap().shape(),
            [2, 0, 0]
        );
        assert_eq!(ops::softmax(&z(&[0, 5])).unwrap().shape(), [0, 5]);
        assert_eq!(ops::softmax(&z(&[2, 0])).unwrap().shape(), [2, 0]);
        assert_eq!(
            ops::layer_norm(&z(&[0, 4]), &[4], None, None, 1e-5)
                .unwrap()
                .shape(),
            [0, 4]
        );
        assert_eq!(ops::permute(&z(&[0, 2]), &[1, 0]).unwrap().shape(), [2, 0]);
        assert_eq!(ops::chunk(&z(&[4, 0]), 2, 1).unwrap().len(), 0);
        let idx = Tensor::zeros(&[0], DType::I64, &d).unwrap();
        assert_eq!(ops::one_hot(&idx, 3).unwrap().shape(), [0, 3]);
        assert_eq!(ops::argmax(&z(&[0, 3])).unwrap().shape(), [0]);
        assert!(ops::argmax(&z(&[3, 0])).is_err());
    }
}

#[test]
fn masks_may_be_float_bool_or_bytes_with_the_same_result_everywhere() {
    let g = gpu();
    let x = t(&[2, 3, 5], 4);
    let keep = [
        true, false, true, true, false, false, true, true, false, true, true, true, false, true,
        true,
    ];
    let as_f32: Vec<f32> = keep
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            if k {
                1.0 + i as f32
            } else if i % 2 == 0 {
                0.0
            } else {
                -0.0
            }
        })
        .collect();
    let as_u8: Vec<u8> = keep.iter().map(|&k| if k { 7 } else { 0 }).collect();
    let masks = [
        Tensor::from_slice(&as_f32, &[3, 5]).unwrap(),
        Tensor::from_slice(&keep, &[3, 5]).unwrap(),
        Tensor::from_slice(&as_u8, &[3, 5]).unwrap(),
    ];
    let want = f32s(&ops::masked_fill(&x, &masks[0], -9e15).unwrap());
    let xs = f32s(&x);
    for (i, w) in want.iter().enumerate() {
        assert_eq!(*w, if keep[i % 15] { xs[i] } else { -9e15 }, "element {i}");
    }
    for m in &masks {
        for d in [Device::Cpu, g.clone()] {
            let y = ops::masked_fill(&x.to(&d).unwrap(), &m.to(&d).unwrap(), -9e15).unwrap();
            assert_eq!(f32s(&y), want, "{} mask on {d}", m.dtype());
        }
    }
    let e = ops::masked_fill(&x, &Tensor::from_slice(&[1i64; 5], &[5]).unwrap(), 0.0).unwrap_err();
    assert!(e.to_string().contains("int64"), "{e}");
}

/// `matmul_permuted` is `permute(matmul(a, b), perm).contiguous()` to the bit (the product
/// writes in the permuted order), on the CPU and the GPU, whether its batch levels can address
/// the order directly or it falls back to a copy.
#[test]
fn matmul_permuted_equals_matmul_then_permute() {
    for d in [Device::Cpu, gpu()] {
        let a = t(&[2, 3, 5, 4], 21).to(&d).unwrap();
        let b = t(&[2, 3, 4, 6], 22).to(&d).unwrap();
        // A view as b, as attention's v is.
        let wide = t(&[2, 3, 4, 12], 23).to(&d).unwrap();
        let bv = ops::narrow(&wide, 3, 6, 6).unwrap();
        for (b, perm) in [
            (&b, &[0, 2, 1, 3][..]),
            (&bv, &[0, 2, 1, 3]),
            (&b, &[1, 0, 2, 3]),
            (&b, &[2, 1, 0, 3]),
            (&b, &[0, 1, 2, 3]),
        ] {
            let got = ops::matmul_permuted(&a, b, perm).unwrap();
            let want = ops::permute(&ops::matmul(&a, b).unwrap(), perm)
                .unwrap()
                .contiguous()
                .unwrap();
            assert!(got.is_contiguous() && got.shape() == want.shape());
            assert_eq!(f32s(&got), f32s(&want), "perm {perm:?} on {d}");
        }
        let e = ops::matmul_permuted(&a, &b, &[0, 1, 3, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("last one last"), "{e}");
    }
}
