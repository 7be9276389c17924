//! Fused kernels against the unfused ops they replace, on the CPU and the GPU: attention in
//! one pass (online softmax on the GPU, per (batch, head) on the CPU).

mod common;

use wgnn::{autograd, ops, DType, Device, Tensor};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((((i + seed) * 2654435761usize) % 10007) as f32 / 10007.0 - 0.5) * 4.0)
        .collect()
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

/// The tutorial's unfused attention on a packed qkv: views, weights, weights · v.
fn unfused(qkv: &Tensor, heads: usize, mask: Option<&Tensor>) -> Tensor {
    let (b, s, w) = (qkv.shape()[0], qkv.shape()[1], qkv.shape()[2]);
    let d = w / 3 / heads;
    let m = mask.map(|m| wgnn::nn::expand_mask(m).unwrap());
    let x = qkv.reshape([b, s, heads, 3 * d]).unwrap();
    let x = ops::permute(&x, &[0, 2, 1, 3]).unwrap();
    let x = ops::chunk(&x, 3, 3).unwrap();
    let (vals, _) = wgnn::nn::scaled_dot_product(&x[0], &x[1], &x[2], m.as_ref()).unwrap();
    let vals = ops::permute(&vals, &[0, 2, 1, 3]).unwrap();
    vals.contiguous()
        .unwrap()
        .reshape([b, s, heads * d])
        .unwrap()
}

#[test]
fn fused_attention_matches_the_unfused_ops() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    // (batch, seq, heads, head_dim): one head, several, D past a vec4 multiple (the GPU runs
    // those unfused), D at the kernel's 128, a sequence past one workgroup.
    for (b, s, h, d) in [
        (1, 1, 1, 4),
        (2, 16, 1, 32),
        (3, 7, 4, 8),
        (2, 70, 2, 64),
        (1, 5, 2, 128),
        (2, 9, 3, 6),
    ] {
        let w = 3 * h * d;
        let data = values(b * s * w, b + s + h + d);
        for with_mask in [false, true] {
            // A causal [S, S] mask with a fully masked first row (all -9e15: uniform weights,
            // as PyTorch gives) and a [B, 1, S, S] one.
            let causal: Vec<f32> = (0..s * s)
                .map(|k| ((k / s > 0) && (k % s <= k / s)) as u8 as f32)
                .collect();
            let per_batch: Vec<f32> = (0..b * s * s)
                .map(|k| ((k * 7) % 3 != 0) as u8 as f32)
                .collect();
            let mask_cases: Vec<Option<(Vec<f32>, Vec<usize>)>> = if with_mask {
                vec![
                    Some((causal, vec![s, s])),
                    Some((per_batch, vec![b, 1, s, s])),
                ]
            } else {
                vec![None]
            };
            for mc in mask_cases {
                for dev in [Device::Cpu, gpu.clone()] {
                    let qkv = Tensor::from_slice(&data, &[b, s, w])
                        .unwrap()
                        .to(&dev)
                        .unwrap();
                    let mask = mc
                        .as_ref()
                        .map(|(v, sh)| Tensor::from_slice(v, sh).unwrap().to(&dev).unwrap());
                    let before = g.dispatch_count(Some("attention"));
                    let got =
                        autograd::no_grad(|| ops::fused_attention(&qkv, h, mask.as_ref())).unwrap();
                    let ran = g.dispatch_count(Some("attention")) - before;
                    if !dev.is_cpu() {
                        assert_eq!(ran, (d % 4 == 0) as u64, "{b} {s} {h} {d}: kernel runs");
                    }
                    let want = unfused(&qkv, h, mask.as_ref()).to_vec::<f32>().unwrap();
                    let got = got.to_vec::<f32>().unwrap();
                    let err = got
                        .iter()
                        .zip(&want)
                        .map(|(x, y)| (x - y).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        err <= 2e-6 * max_abs(&want).max(1.0),
                        "{dev} [{b}, {s}, {h}, {d}] mask {:?}: {err}",
                        mc.as_ref().map(|m| &m.1)
                    );
                }
            }
        }
    }
}

/// Where a gradient is recorded the op is the unfused ops, and differentiates as they do.
#[test]
fn fused_attention_differentiates_through_the_unfused_ops() {
    let gpu = common::gpu();
    let (b, s, h, d) = (2, 5, 2, 4);
    let data = values(b * s * 3 * h * d, 3);
    let mut grads = Vec::new();
    for dev in [Device::Cpu, gpu.clone()] {
        let p = wgnn::Parameter::new(
            Tensor::from_slice(&data, &[b, s, 3 * h * d])
                .unwrap()
                .to(&dev)
                .unwrap(),
        );
        let y = ops::fused_attention(p.tensor(), h, None).unwrap();
        assert!(y.requires_grad());
        let g = Tensor::from_slice(&values(b * s * h * d, 9), &[b, s, h * d])
            .unwrap()
            .to(&dev)
            .unwrap();
        y.backward_with(&g).unwrap();
        grads.push(p.grad().unwrap().to_vec::<f32>().unwrap());
    }
    let err = grads[0]
        .iter()
        .zip(&grads[1])
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max_abs(&grads[0]) > 0.0);
    assert!(err <= 1e-5 * max_abs(&grads[0]), "{err}");
}

#[test]
fn fused_attention_refuses_bad_shapes() {
    let x = Tensor::zeros(&[2, 3, 10], DType::F32, &Device::Cpu).unwrap();
    let e = ops::fused_attention(&x, 2, None).unwrap_err().to_string();
    assert!(e.contains("3 ×") && e.contains("2 heads"), "{e}");
    let x = Tensor::zeros(&[2, 3, 12], DType::F32, &Device::Cpu).unwrap();
    let m = Tensor::zeros(&[4, 4], DType::F32, &Device::Cpu).unwrap();
    let e = ops::fused_attention(&x, 2, Some(&m))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not broadcast"), "{e}");
    let e = ops::fused_attention(
        &Tensor::zeros(&[12], DType::F32, &Device::Cpu).unwrap(),
        2,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[batch, seq_len, 3 * embed_dim]"), "{e}");
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

/// linear + ReLU as one product's epilogue, and the residual add inside the norm: the same
/// bits as the separate ops, in one dispatch each on the GPU.
#[test]
fn epilogues_give_the_separate_ops_bits() {
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    for (rows, inf, outf) in [(2048, 32, 64), (7, 12, 5), (33, 64, 300), (5, 10, 32)] {
        for dev in [Device::Cpu, gpu.clone()] {
            let t = |n: usize, seed: usize, s: &[usize]| {
                Tensor::from_slice(&values(n, seed), s)
                    .unwrap()
                    .to(&dev)
                    .unwrap()
            };
            let x = t(rows * inf, 1, &[rows, inf]);
            let w = t(outf * inf, 2, &[outf, inf]);
            let b = t(outf, 3, &[outf]);
            let before = g.dispatch_count(None);
            let fused = autograd::no_grad(|| ops::linear_relu(&x, &w, Some(&b))).unwrap();
            if !dev.is_cpu() {
                assert_eq!(
                    g.dispatch_count(None) - before,
                    1,
                    "linear_relu: one dispatch"
                );
            }
            let apart = ops::relu(&ops::linear(&x, &w, Some(&b)).unwrap()).unwrap();
            assert_eq!(
                bits(&fused),
                bits(&apart),
                "linear_relu {rows}x{inf}x{outf} on {dev}"
            );
            let nobias = autograd::no_grad(|| ops::linear_relu(&x, &w, None)).unwrap();
            let apart = ops::relu(&ops::linear(&x, &w, None).unwrap()).unwrap();
            assert_eq!(bits(&nobias), bits(&apart));

            let r = t(rows * inf, 4, &[rows, inf]);
            let (nw, nb) = (t(inf, 5, &[inf]), t(inf, 6, &[inf]));
            let before = g.dispatch_count(None);
            let fused = autograd::no_grad(|| {
                ops::add_layer_norm(&x, &r, &[inf], Some(&nw), Some(&nb), 1e-5)
            })
            .unwrap();
            if !dev.is_cpu() {
                assert_eq!(
                    g.dispatch_count(None) - before,
                    1,
                    "add_layer_norm: one dispatch"
                );
            }
            let sum = ops::broadcast_add(&x, &r).unwrap();
            let apart = ops::layer_norm(&sum, &[inf], Some(&nw), Some(&nb), 1e-5).unwrap();
            assert_eq!(
                bits(&fused),
                bits(&apart),
                "add_layer_norm {rows}x{inf} on {dev}"
            );
        }
    }
    // Recording a gradient, they are the separate ops (and differentiate as those do).
    let p = wgnn::Parameter::new(Tensor::from_slice(&values(12, 1), &[3, 4]).unwrap());
    let w = Tensor::from_slice(&values(8, 2), &[2, 4]).unwrap();
    let y = ops::linear_relu(p.tensor(), &w, None).unwrap();
    ops::mean(&y).unwrap().backward().unwrap();
    assert!(p.grad().is_some());
    let e = ops::add_layer_norm(
        &Tensor::zeros(&[2, 3], DType::F32, &Device::Cpu).unwrap(),
        &Tensor::zeros(&[2, 4], DType::F32, &Device::Cpu).unwrap(),
        &[3],
        None,
        None,
        1e-5,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("broadcast") || e.contains("shape"), "{e}");
}

/// The tutorial's encoder block in eval under no_grad: 7 dispatches (qkv, attention, output
/// projection, add+norm, linear+ReLU, linear, add+norm), the numbers of the unfused block.
#[test]
fn an_encoder_block_runs_in_seven_dispatches() {
    use wgnn::ModuleExt;
    use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};
    let gpu = common::gpu();
    let g = gpu.as_gpu().unwrap();
    let hp = Hparams {
        num_layers: 2,
        num_heads: 2,
        ..Hparams::reverse_task()
    };
    let mut m = wgnn::nn::init::with_generator(&mut ops::Generator::new(1), || {
        TransformerPredictor::new(&hp)
    })
    .unwrap()
    .to(&gpu)
    .unwrap();
    m.eval();
    let x = Tensor::from_slice(&values(3 * 11 * 10, 2), &[3, 11, 10])
        .unwrap()
        .to(&gpu)
        .unwrap();
    let block = m.transformer.layers.get_mut(0).unwrap();
    let h = Tensor::from_slice(&values(3 * 11 * 32, 3), &[3, 11, 32])
        .unwrap()
        .to(&gpu)
        .unwrap();
    let before = g.dispatch_count(None);
    let fused = autograd::no_grad(|| block.forward(&h, None)).unwrap();
    assert_eq!(g.dispatch_count(None) - before, 7, "dispatches per block");
    let unfused = block.forward(&h, None).unwrap(); // recording: the separate ops
    let (a, b) = (
        fused.to_vec::<f32>().unwrap(),
        unfused.to_vec::<f32>().unwrap(),
    );
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(err <= 2e-5 * max_abs(&b).max(1.0), "{err}");
    let y = autograd::no_grad(|| m.forward(&x, None, true)).unwrap();
    assert_eq!(y.shape(), [3, 11, 10]);
}
