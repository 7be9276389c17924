//! The row kernels' two paths (one workgroup per row; one invocation per row, chosen by
//! `gpu::tuning`) add in one order: softmax, layer_norm and their
//! gradients give the same bits on both, and stay within their bounds of the CPU's.

mod common;

use wgnn::{ops, Device, Parameter, Tensor};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((((i + seed) * 2654435761usize) % 10007) as f32 / 10007.0 - 0.5) * 6.0)
        .collect()
}

/// softmax(x), layer_norm(x) (with and without weight and bias), and the gradients of x for
/// each under a given output gradient, as vectors.
fn run(dev: &Device, shape: &[usize]) -> Vec<Vec<f32>> {
    let n: usize = shape.iter().product();
    let w = *shape.last().unwrap();
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_slice(&v, s).unwrap().to(dev).unwrap();
    let g = t(values(n, 7), shape);
    let weight = t(values(w, 3), &[w]);
    let bias = t(values(w, 5), &[w]);
    let mut out = Vec::new();
    for case in 0..3 {
        let x = Parameter::new(t(values(n, case), shape));
        let y = match case {
            0 => ops::softmax(x.tensor()).unwrap(),
            1 => ops::layer_norm(x.tensor(), &[w], Some(&weight), Some(&bias), 1e-5).unwrap(),
            _ => ops::layer_norm(x.tensor(), &[w], None, None, 1e-5).unwrap(),
        };
        y.backward_with(&g).unwrap();
        out.push(y.to_vec::<f32>().unwrap());
        out.push(x.grad().unwrap().to_vec::<f32>().unwrap());
    }
    out
}

#[test]
fn short_rows_match_the_workgroup_path_bit_for_bit() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    for shape in [
        vec![1, 1],
        vec![3, 5],
        vec![130, 16],
        vec![2, 67, 32],
        vec![9, 63],
        vec![70, 64],
        vec![5, 65],
        vec![300, 200],
        vec![2, 130, 1000],
    ] {
        g.__tune_as_gpu(false);
        let as_cpu_adapter = run(&gpu, &shape);
        g.__tune_as_gpu(true);
        let as_gpu = run(&gpu, &shape);
        g.__tune_as_gpu(false);
        let cpu = run(&Device::Cpu, &shape);
        for (i, ((a, b), c)) in as_cpu_adapter.iter().zip(&as_gpu).zip(&cpu).enumerate() {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(a),
                bits(b),
                "{shape:?} output {i}: the two paths differ"
            );
            let max = c.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            let err = a
                .iter()
                .zip(c)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            // exp and inverseSqrt are WGSL's, not exactly rounded: the ops' stated bounds.
            assert!(
                err <= 4e-6 * max,
                "{shape:?} output {i}: GPU {err} from the CPU (max {max})"
            );
        }
    }
}

/// A sum over leading dimensions reads the columns in place (no transposing copy) and adds in
/// the order of the row path: the same bits as the sum of the transposed copy, on both devices.
#[test]
fn leading_sums_read_columns_in_the_row_order() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    for (shape, lead) in [
        (vec![70, 5, 3], 1),
        (vec![70, 5, 3], 2),
        (vec![2, 300, 4], 2),
        (vec![1, 1], 1),
    ] {
        let n: usize = shape.iter().product();
        let x = Tensor::from_slice(&values(n, 11), &shape).unwrap();
        let r = shape.len();
        // The reduced dimensions moved last, as a dense copy.
        let order: Vec<usize> = (lead..r).chain(0..lead).collect();
        let moved = ops::permute(&x, &order).unwrap().contiguous().unwrap();
        let dims: Vec<usize> = (0..lead).collect();
        let moved_dims: Vec<usize> = (r - lead..r).collect();
        let mut bits = Vec::new();
        for dev in [Device::Cpu, gpu.clone()] {
            let copies = g.dispatch_count(Some("strided_copy"));
            let a = ops::sum(&x.to(&dev).unwrap(), &dims, false).unwrap();
            if !dev.is_cpu() {
                assert_eq!(g.dispatch_count(Some("strided_copy")), copies, "no copy");
            }
            let b = ops::sum(&moved.to(&dev).unwrap(), &moved_dims, false).unwrap();
            let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
            let to_bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(to_bits(&a), to_bits(&b), "{shape:?} over {dims:?} on {dev}");
            bits.push(to_bits(&a));
        }
        assert_eq!(bits[0], bits[1], "{shape:?}: CPU and GPU");
    }
}

/// Long reductions over few rows (a loss's mean, a gradient's norm) run as pieces' sums in
/// many workgroups, then one sum of the pieces: the same bits on both devices, within the sum
/// bound of the exact value.
#[test]
fn long_reductions_split_into_pieces() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    for n in [8192usize, 65536 + 64, 100_000, 5000] {
        let v = values(n, 5);
        let exact: f64 = v.iter().map(|&x| x as f64).sum();
        let abs: f64 = v.iter().map(|&x| x.abs() as f64).sum();
        let mut got = Vec::new();
        for dev in [Device::Cpu, gpu.clone()] {
            let x = Tensor::from_slice(&v, &[n]).unwrap().to(&dev).unwrap();
            let before = g.dispatch_count(Some("row_sum"));
            let s = ops::sum(&x, &[], false).unwrap().item::<f32>().unwrap();
            if !dev.is_cpu() {
                let passes = g.dispatch_count(Some("row_sum")) - before;
                let split = n % 8 == 0 && n >= 8192;
                assert_eq!(passes, 1 + split as u64, "n = {n}");
            }
            let m = ops::mean(&x).unwrap().item::<f32>().unwrap();
            assert!(
                ((s as f64) - exact).abs() <= n as f64 * 2f64.powi(-24) * abs,
                "n = {n}: sum {s} against {exact}"
            );
            assert!(((m as f64) - exact / n as f64).abs() <= 2f64.powi(-24) * abs);
            got.push((s.to_bits(), m.to_bits()));
        }
        assert_eq!(got[0], got[1], "n = {n}: CPU and GPU bits");
    }
}

/// Cross entropy's rows (loss and gradient) on both paths: the same bits, and the CPU's
/// numbers within the ops' bound.
#[test]
fn cross_entropy_rows_match_on_both_paths() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    for (rows, classes) in [(2048, 10), (300, 100), (5, 70), (1, 3)] {
        let run = |dev: &Device| {
            let x = Parameter::new(
                Tensor::from_slice(&values(rows * classes, 3), &[rows, classes])
                    .unwrap()
                    .to(dev)
                    .unwrap(),
            );
            let t: Vec<i64> = (0..rows).map(|r| ((r * 7) % classes) as i64).collect();
            let t = Tensor::from_slice(&t, &[rows]).unwrap().to(dev).unwrap();
            let loss = ops::cross_entropy(x.tensor(), &t).unwrap();
            loss.backward().unwrap();
            (
                loss.to_vec::<f32>().unwrap(),
                x.grad().unwrap().to_vec::<f32>().unwrap(),
            )
        };
        g.__tune_as_gpu(false);
        let a = run(&gpu);
        g.__tune_as_gpu(true);
        let b = run(&gpu);
        g.__tune_as_gpu(false);
        let c = run(&Device::Cpu);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.0), bits(&b.0), "[{rows}, {classes}] loss");
        assert_eq!(bits(&a.1), bits(&b.1), "[{rows}, {classes}] gradient");
        assert!((a.0[0] - c.0[0]).abs() <= 2e-6 * c.0[0].abs().max(1.0));
        let max = c.1.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err =
            a.1.iter()
                .zip(&c.1)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
        assert!(err <= 2e-6 * max, "[{rows}, {classes}] gradient: {err}");
    }
}
