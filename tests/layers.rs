//! The layers' forward passes and modes: BatchNorm1d against PyTorch's train steps
//! (`tests/fixtures/batchnorm_train.safetensors`, both momentum modes, buffers updated on the
//! device), dropout's statistics, `train()` / `eval()` through a tree, Sequential, Embedding.

mod common;

use common::{fixture, gpu};
use wgnn::nn::{BatchNorm1d, Dropout, Embedding, LayerNorm, Linear, ReLU};
use wgnn::{ops, DType, Device, Forward, ModuleExt, Sequential, StateDict, Tensor};

fn devices() -> Vec<Device> {
    vec![Device::Cpu, gpu()]
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

/// max |got - want| / max |want|.
fn rel_err(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.shape(), want.shape());
    let (g, w) = (f32s(got), f32s(want));
    let scale = w
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    g.iter()
        .zip(&w)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

#[test]
fn batchnorm_train_steps_match_pytorch_with_buffers_updated_on_the_device() {
    let fx = StateDict::load(fixture("batchnorm_train.safetensors")).unwrap();
    let get = |k: &str| fx.get(k).unwrap_or_else(|| panic!("{k}")).clone();
    for d in devices() {
        for (tag, momentum) in [("default", Some(0.1)), ("cumulative", None)] {
            let mut bn = BatchNorm1d::new(8).unwrap();
            bn.momentum = momentum;
            let mut init = StateDict::new();
            for k in ["weight", "bias"] {
                init.insert(k, get(&format!("{tag}.{k}")));
            }
            for k in ["running_mean", "running_var", "num_batches_tracked"] {
                init.insert(k, get(&format!("{tag}.init.{k}")));
            }
            bn.load_state_dict(&init, true).unwrap();
            bn.to_device(&d).unwrap();
            assert!(bn.is_training(), "modules start in training mode");
            let inputs: Vec<Tensor> = (0..3)
                .map(|s| get(&format!("{tag}.step{s}.input")).to(&d).unwrap())
                .collect();
            let submissions = d.as_gpu().map(|g| g.submission_count());
            // Three train steps: each output with the buffers it left behind.
            let mut steps = Vec::new();
            for x in &inputs {
                let y = bn.forward(x).unwrap();
                steps.push((
                    y,
                    bn.running_mean.tensor().clone(),
                    bn.running_var.tensor().clone(),
                    bn.num_batches_tracked.tensor().clone(),
                ));
            }
            // The buffers are new tensors on the module's device, computed there: nothing was
            // read back or submitted during the three steps.
            assert!(bn.running_mean.tensor().is_on(&d));
            assert!(bn.num_batches_tracked.tensor().is_on(&d));
            if let (Some(before), Some(g)) = (submissions, d.as_gpu()) {
                assert_eq!(g.submission_count(), before, "{tag} on {d}: no submission");
            }
            let mut worst = (0f32, 0f32);
            for (step, (y, mean, var, count)) in steps.iter().enumerate() {
                let p = format!("{tag}.step{step}.");
                let e_out = rel_err(y, &get(&format!("{p}output")));
                let e_mean = rel_err(mean, &get(&format!("{p}running_mean")));
                let e_var = rel_err(var, &get(&format!("{p}running_var")));
                assert!(e_out <= 1e-5, "{p}output on {d}: {e_out:e}");
                assert!(
                    e_mean <= 1e-6 && e_var <= 1e-6,
                    "{p} running stats on {d}: {e_mean:e} {e_var:e}"
                );
                assert_eq!(
                    count.to_vec::<i64>().unwrap(),
                    get(&format!("{p}num_batches_tracked"))
                        .to_vec::<i64>()
                        .unwrap()
                );
                worst = (worst.0.max(e_out), worst.1.max(e_mean.max(e_var)));
            }
            bn.eval();
            let y = bn
                .forward(&get(&format!("{tag}.eval.input")).to(&d).unwrap())
                .unwrap();
            let e_eval = rel_err(&y, &get(&format!("{tag}.eval.output")));
            assert!(e_eval <= 1e-5, "{tag} eval on {d}: {e_eval:e}");
            // Eval mode leaves the buffers alone.
            assert_eq!(
                bn.num_batches_tracked.tensor().to_vec::<i64>().unwrap(),
                [3]
            );
            let sd = bn.state_dict().unwrap();
            for k in ["running_mean", "running_var"] {
                let e = rel_err(sd.get(k).unwrap(), &get(&format!("{tag}.state_dict.{k}")));
                assert!(e <= 1e-6, "{tag} state_dict {k} on {d}: {e:e}");
            }
            eprintln!(
                "batchnorm {tag} on {d}: outputs {:.2e}, running stats {:.2e}, eval {e_eval:.2e}",
                worst.0, worst.1
            );
        }
    }
}

#[test]
fn batchnorm_refuses_what_pytorch_refuses() {
    let mut bn = BatchNorm1d::new(4).unwrap();
    let one = Tensor::zeros(&[1, 4], DType::F32, &Device::Cpu).unwrap();
    let e = bn.forward(&one).unwrap_err().to_string();
    assert!(e.contains("more than 1 value per channel"), "{e}");
    let wrong = Tensor::zeros(&[3, 5], DType::F32, &Device::Cpu).unwrap();
    let e = bn.forward(&wrong).unwrap_err().to_string();
    assert!(e.contains("[3, 5]") && e.contains('4'), "{e}");
    let rank4 = Tensor::zeros(&[2, 4, 1, 1], DType::F32, &Device::Cpu).unwrap();
    assert!(bn
        .forward(&rank4)
        .unwrap_err()
        .to_string()
        .contains("2D or 3D"));
    // Nothing changed on failure.
    assert_eq!(
        bn.num_batches_tracked.tensor().to_vec::<i64>().unwrap(),
        [0]
    );
}

#[test]
fn dropout_zeroes_a_fraction_p_and_scales_the_rest_the_same_on_cpu_and_gpu() {
    let n = 200_000;
    let x = Tensor::from_slice(&vec![1f32; n], &[n]).unwrap();
    let mut masks = Vec::new();
    for d in devices() {
        let mut drop = Dropout::with_seed(0.3, 7);
        let y = f32s(&drop.forward(&x.to(&d).unwrap()).unwrap());
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        // Binomial: sd = sqrt(0.3 · 0.7 / n) ≈ 0.001; 5 sd.
        assert!((zeros - 0.3).abs() < 0.005, "fraction zeroed {zeros}");
        let scale = (1.0 / 0.7f64) as f32;
        assert!(
            y.iter().all(|&v| v == 0.0 || v == scale),
            "kept values are x / (1 - p)"
        );
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!(
            (mean - 1.0).abs() < 0.01,
            "inverted dropout keeps the mean: {mean}"
        );
        // A second call draws a new mask.
        let y2 = f32s(&drop.forward(&x.to(&d).unwrap()).unwrap());
        assert_ne!(y, y2);
        assert_eq!(drop.generator.offset(), 2 * n as u64);
        drop.eval();
        assert_eq!(
            f32s(&drop.forward(&x.to(&d).unwrap()).unwrap()),
            vec![1f32; n],
            "eval is identity"
        );
        masks.push(y);
    }
    assert_eq!(masks[0], masks[1], "the same stream on CPU and GPU");
    assert!(ops::dropout(&x, 1.5, true, &mut ops::Generator::new(0)).is_err());
}

#[test]
fn train_and_eval_reach_every_module_of_a_tree() {
    let d = Device::Cpu;
    let mut net = Sequential::new()
        .push(Linear::new(4, 4).and_then(|m| m.to(&d)).unwrap())
        .push(Dropout::new(0.5))
        .push(
            Sequential::new()
                .push(BatchNorm1d::new(4).and_then(|m| m.to(&d)).unwrap())
                .push(ReLU { inplace: false }),
        );
    assert!(net.is_training());
    net.eval();
    assert!(!net.is_training());
    let flags: Vec<Option<bool>> = net
        .named_modules()
        .iter()
        .map(|(_, m)| m.training())
        .collect();
    assert_eq!(flags, [None, None, Some(false), None, Some(false), None]);
    net.train();
    assert!(net
        .named_modules()
        .iter()
        .all(|(_, m)| m.training() != Some(false)));
}

#[test]
fn sequential_linear_layernorm_relu_and_embedding_run_on_cpu_and_gpu_alike() {
    let dev = Device::Cpu;
    let mut sd = StateDict::new();
    let w1: Vec<f32> = common::randn(6 * 5, 1);
    let b1: Vec<f32> = common::randn(6, 2);
    sd.insert("0.weight", Tensor::from_slice(&w1, &[6, 5]).unwrap());
    sd.insert("0.bias", Tensor::from_slice(&b1, &[6]).unwrap());
    sd.insert(
        "1.weight",
        Tensor::from_slice(&common::randn(6, 3), &[6]).unwrap(),
    );
    sd.insert(
        "1.bias",
        Tensor::from_slice(&common::randn(6, 4), &[6]).unwrap(),
    );
    sd.insert(
        "3.weight",
        Tensor::from_slice(&common::randn(12, 5), &[2, 6]).unwrap(),
    );
    let build = || {
        let mut net = Sequential::new()
            .push(Linear::new(5, 6).and_then(|m| m.to(&dev)).unwrap())
            .push(LayerNorm::new(6).and_then(|m| m.to(&dev)).unwrap())
            .push(ReLU { inplace: true })
            .push(Linear::no_bias(6, 2).and_then(|m| m.to(&dev)).unwrap());
        net.load_state_dict(&sd, true).unwrap();
        net
    };
    assert!(build()
        .repr()
        .contains("Linear(in_features=6, out_features=2, bias=False)"));
    let x = Tensor::from_slice(&common::randn(3 * 4 * 5, 9), &[3, 4, 5]).unwrap();
    let mut cpu = build();
    let y_cpu = cpu.forward(&x).unwrap();
    assert_eq!(y_cpu.shape(), [3, 4, 2]);
    // An f64 reference of the same network.
    let xs = f32s(&x);
    let (g, b) = (
        f32s(sd.get("1.weight").unwrap()),
        f32s(sd.get("1.bias").unwrap()),
    );
    let w2 = f32s(sd.get("3.weight").unwrap());
    let mut want = Vec::new();
    for r in 0..12 {
        let h: Vec<f64> = (0..6)
            .map(|o| {
                b1[o] as f64
                    + (0..5)
                        .map(|i| xs[r * 5 + i] as f64 * w1[o * 5 + i] as f64)
                        .sum::<f64>()
            })
            .collect();
        let mean = h.iter().sum::<f64>() / 6.0;
        let var = h.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 6.0;
        let n: Vec<f64> = (0..6)
            .map(|i| ((h[i] - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64).max(0.0))
            .collect();
        for o in 0..2 {
            want.push((0..6).map(|i| n[i] * w2[o * 6 + i] as f64).sum::<f64>());
        }
    }
    let got = f32s(&y_cpu);
    let err = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    assert!(err < 1e-5, "cpu vs f64 reference {err:e}");
    let g = gpu();
    let mut on_gpu = build();
    on_gpu.to_device(&g).unwrap();
    let y_gpu = f32s(&on_gpu.forward(&x.to(&g).unwrap()).unwrap());
    let err = got
        .iter()
        .zip(&y_gpu)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-5, "cpu vs gpu {err:e}");

    // Embedding: rows by index, identical everywhere (a copy).
    let mut emb = Embedding::new(4, 3).and_then(|m| m.to(&dev)).unwrap();
    let mut esd = StateDict::new();
    esd.insert(
        "weight",
        Tensor::from_slice(&(0..12).map(|v| v as f32).collect::<Vec<_>>(), &[4, 3]).unwrap(),
    );
    emb.load_state_dict(&esd, true).unwrap();
    let idx = Tensor::from_slice(&[3i64, 0, 2], &[3]).unwrap();
    let want = [9f32, 10., 11., 0., 1., 2., 6., 7., 8.];
    assert_eq!(f32s(&emb.forward(&idx).unwrap()), want);
    emb.to_device(&g).unwrap();
    assert_eq!(f32s(&emb.forward(&idx.to(&g).unwrap()).unwrap()), want);
    let bad = Tensor::from_slice(&[4i64], &[1]).unwrap();
    emb.to_device(&dev).unwrap();
    assert!(emb
        .forward(&bad)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
}
