//! Every matrix-product kernel (the tiled one; the direct ones: scalar, vec4 along K, vec4
//! along N with the invocations across columns or rows, outer products of vec4s along M and
//! N; each on C = A·B and on Cᵀ = Bᵀ·Aᵀ)
//! on every layout the ops produce: plain, transposed operands (x·Wᵀ, q·kᵀ), batches (own
//! and broadcast), permuted outputs, bias, alpha, odd sizes and sizes past a tile. Each is
//! held within the matrix product's bound of the CPU's GEMM, and the kernel asked for is the
//! kernel that ran wherever it can take the product.

mod common;

use wgnn::__ForcedMatmul as F;
use wgnn::{ops, Device, Tensor};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((((i + seed) * 2654435761usize) % 10007) as f32 / 10007.0 - 0.5) * 2.0)
        .collect()
}

/// The products of one case on `dev`, as (name, vector).
fn case(dev: &Device, (m, k, n): (usize, usize, usize)) -> Vec<(String, Vec<f32>)> {
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_slice(&v, s).unwrap().to(dev).unwrap();
    let a = t(values(m * k, 1), &[m, k]);
    let b = t(values(k * n, 2), &[k, n]);
    let bt = t(values(n * k, 3), &[n, k]);
    let bias = t(values(n, 4), &[n]);
    let a3 = t(values(3 * m * k, 5), &[3, m, k]);
    let b3 = t(values(3 * k * n, 6), &[3, k, n]);
    // [2, m, 2, k] viewed as [2, 2, m, k]: batch strides that are not the dense ones.
    let ap = ops::permute(&t(values(4 * m * k, 7), &[2, m, 2, k]), &[0, 2, 1, 3]).unwrap();
    let v = |y: Tensor| y.to_vec::<f32>().unwrap();
    vec![
        ("a·b".into(), v(ops::matmul(&a, &b).unwrap())),
        ("a·btᵀ".into(), v(ops::matmul_nt(&a, &bt, 0.5).unwrap())),
        (
            "linear".into(),
            v(ops::linear(&a, &bt, Some(&bias)).unwrap()),
        ),
        (
            "aᵀᵀ·b".into(),
            v(ops::matmul(
                &ops::t(&ops::t(&a).unwrap().contiguous().unwrap()).unwrap(),
                &b,
            )
            .unwrap()),
        ),
        (
            // Both operands column-major: the only layout Cᵀ = Bᵀ·Aᵀ reads with vec4 along N.
            "aᵀᵀ·btᵀ".into(),
            v(ops::matmul_nt(
                &ops::t(&ops::t(&a).unwrap().contiguous().unwrap()).unwrap(),
                &bt,
                1.0,
            )
            .unwrap()),
        ),
        ("batched".into(), v(ops::matmul(&a3, &b3).unwrap())),
        ("broadcast".into(), v(ops::matmul(&a3, &b).unwrap())),
        ("strided batch".into(), v(ops::matmul(&ap, &b).unwrap())),
        (
            "permuted out".into(),
            v(ops::matmul_permuted(&a3, &b3, &[1, 0, 2]).unwrap()),
        ),
    ]
}

const KERNELS: [(&str, F); 11] = [
    ("matmul", F::Tiled),
    ("matmul_direct", F::Direct { transposed: false }),
    ("matmul_direct", F::Direct { transposed: true }),
    ("matmul_k4", F::K4 { transposed: false }),
    ("matmul_k4", F::K4 { transposed: true }),
    (
        "matmul_n4",
        F::N4 {
            transposed: false,
            rows: false,
        },
    ),
    (
        "matmul_n4",
        F::N4 {
            transposed: false,
            rows: true,
        },
    ),
    (
        "matmul_n4",
        F::N4 {
            transposed: true,
            rows: false,
        },
    ),
    (
        "matmul_n4",
        F::N4 {
            transposed: true,
            rows: true,
        },
    ),
    ("matmul_t4", F::T4 { transposed: false }),
    ("matmul_t4", F::T4 { transposed: true }),
];

#[test]
fn every_kernel_on_every_layout_matches_the_cpu() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap().clone();
    let shapes = [
        (1, 1, 1),
        (5, 3, 7),
        (8, 4, 4),
        (33, 12, 8),
        (64, 32, 96),
        (7, 16, 260),
        (520, 8, 12),
        (9, 20, 5),
    ];
    let mut ran = std::collections::HashMap::<&str, u64>::new();
    for shape in shapes {
        let want = case(&Device::Cpu, shape);
        for (name, kernel) in KERNELS {
            g.__force_matmul(Some(kernel));
            let before = g.dispatch_count(Some(name));
            let got = case(&gpu, shape);
            *ran.entry(name).or_default() += g.dispatch_count(Some(name)) - before;
            g.__force_matmul(None);
            for ((what, w), (_, x)) in want.iter().zip(&got) {
                let k = shape.1 as f32;
                let max = w.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
                let err = w
                    .iter()
                    .zip(x)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                // Products of K terms in another order than the CPU GEMM's.
                assert!(
                    err <= 4.0 * k * f32::EPSILON * max,
                    "{kernel:?} on {what} {shape:?}: {err}"
                );
            }
        }
    }
    // Every kernel ran on some of the cases (none is left untested by falling back).
    for (name, _) in KERNELS {
        assert!(ran[name] > 0, "{name} never ran: {ran:?}");
    }
}

/// The shapes' automatic choice: the vec4 kernels take the products they can.
#[test]
fn linear_and_products_pick_the_vec4_kernels() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    let t = |s: &[usize]| {
        Tensor::from_slice(&values(s.iter().product(), 0), s)
            .unwrap()
            .to(&gpu)
            .unwrap()
    };
    let count = |name: &str| g.dispatch_count(Some(name));
    let k4 = count("matmul_k4");
    ops::linear(&t(&[2048, 32]), &t(&[96, 32]), None).unwrap();
    assert_eq!(count("matmul_k4") - k4, 1, "x·Wᵀ reads both along K");
    let n4 = count("matmul_n4");
    ops::matmul(&t(&[512, 512]), &t(&[512, 512])).unwrap();
    assert_eq!(count("matmul_n4") - n4, 1, "a dense a·b");
    let t4 = count("matmul_t4");
    ops::matmul(&ops::t(&t(&[2048, 96])).unwrap(), &t(&[2048, 32])).unwrap();
    assert_eq!(count("matmul_t4") - t4, 1, "a weight's gradient gᵀ·x");
    g.synchronize().unwrap();
}

/// A small output over a long K (a weight's gradient) is split along K into partial products
/// summed by a second pass, within the same bound; a K with no fitting divisor is not split.
#[test]
fn long_k_products_split_along_k() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    // As a discrete GPU chooses: a CPU rasteriser's few cores are busy with 12 tiles already.
    g.__tune_as_gpu(true);
    for (k, splits) in [(2048usize, true), (1000, true), (257, false), (128, false)] {
        let gt = Tensor::from_slice(&values(k * 96, 1), &[k, 96]).unwrap();
        let x = Tensor::from_slice(&values(k * 32, 2), &[k, 32]).unwrap();
        let want = ops::matmul(&ops::t(&gt).unwrap(), &x)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let sums = g.dispatch_count(Some("row_sum"));
        let y = ops::matmul(
            &ops::t(&gt.to(&gpu).unwrap()).unwrap(),
            &x.to(&gpu).unwrap(),
        )
        .unwrap();
        assert_eq!(y.shape(), [96, 32]);
        assert_eq!(
            g.dispatch_count(Some("row_sum")) - sums,
            splits as u64,
            "K = {k}: split"
        );
        let got = y.to_vec::<f32>().unwrap();
        let max = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err <= 4.0 * k as f32 * f32::EPSILON * max, "K = {k}: {err}");
    }
    g.__tune_as_gpu(false);
}
