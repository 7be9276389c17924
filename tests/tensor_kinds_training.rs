//! The seed question, answered by training: after `backward` + `step`, trainable parameters
//! changed while a frozen parameter and the buffers did not; unfreezing the frozen one makes it
//! train; BatchNorm's running statistics change in a train-mode forward (never through a
//! gradient) and not in eval; a non-persistent buffer stays out of the state dict. On the CPU and
//! the GPU. Also the optimizers' state dicts and SGD's update rule.

mod common;

use common::gpu;
use wgnn::autograd::no_grad;
use wgnn::nn::{BatchNorm1d, Linear};
use wgnn::optim::{clip_grad_norm_, Adam, SGD};
use wgnn::{ops, Buffer, Device, Forward, ModuleExt, Parameter, Tensor};

#[derive(wgnn::Module)]
struct Kinds {
    lin: Linear,
    norm: BatchNorm1d,
    frozen: Parameter,
    buf: Buffer,
    table: Buffer,
}
impl Kinds {
    fn new(d: &Device) -> Kinds {
        let mut lin = Linear::new(3, 4).and_then(|m| m.to(d)).unwrap();
        lin.weight
            .set_tensor(
                Tensor::from_slice(&common::randn(12, 1), &[4, 3])
                    .unwrap()
                    .to(d)
                    .unwrap(),
            )
            .unwrap();
        // Zero, as `Linear::new` used to make it (the test's numbers predate PyTorch's init).
        wgnn::nn::init::zeros_(lin.bias.as_mut().unwrap()).unwrap();
        Kinds {
            lin,
            norm: BatchNorm1d::new(4).and_then(|m| m.to(d)).unwrap(),
            frozen: Parameter::frozen(Tensor::full(&[4], 0.5f32, d).unwrap()),
            buf: Buffer::new(Tensor::full(&[4], 2f32, d).unwrap()),
            table: Buffer::non_persistent(Tensor::full(&[4], 1f32, d).unwrap()),
        }
    }
    fn loss(&mut self, x: &Tensor) -> Tensor {
        let h = self.norm.forward(&self.lin.forward(x).unwrap()).unwrap();
        let h = ops::broadcast_add(&h, self.frozen.tensor()).unwrap();
        let h = ops::broadcast_add(&h, self.buf.tensor()).unwrap();
        let h = ops::broadcast_add(&h, self.table.tensor()).unwrap();
        ops::mean(&ops::relu(&h).unwrap()).unwrap()
    }
}

fn values(m: &Kinds) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<(String, Vec<f32>)> = m
        .named_parameters()
        .into_iter()
        .map(|(n, p)| (n, p.tensor().to_vec::<f32>().unwrap()))
        .collect();
    for (n, b) in m.named_buffers() {
        if b.tensor().dtype() == wgnn::DType::F32 {
            v.push((n, b.tensor().to_vec::<f32>().unwrap()));
        }
    }
    v
}

fn changed(before: &[(String, Vec<f32>)], after: &[(String, Vec<f32>)], name: &str) -> bool {
    let get = |v: &[(String, Vec<f32>)]| v.iter().find(|e| e.0 == name).unwrap().1.clone();
    get(before) != get(after)
}

fn four_kinds(d: &Device) {
    let mut m = Kinds::new(d);
    let x = Tensor::from_slice(&common::randn(6 * 3, 2), &[6, 3])
        .unwrap()
        .to(d)
        .unwrap();
    let mut opt = Adam::new(&m, 0.1);
    // Adam is handed every parameter, the frozen one too (as `model.parameters()` does).
    assert_eq!(opt.parameter_names().len(), 5);
    let before = values(&m);
    m.train();
    let loss = m.loss(&x);
    // Forward alone already moved BatchNorm's running statistics (buffers).
    let after_forward = values(&m);
    assert!(changed(&before, &after_forward, "norm.running_mean"));
    assert!(changed(&before, &after_forward, "norm.running_var"));
    loss.backward().unwrap();
    assert!(m.lin.weight.grad().is_some() && m.norm.weight.grad().is_some());
    assert!(
        m.frozen.grad().is_none(),
        "a frozen parameter gets no gradient"
    );
    clip_grad_norm_(&mut m, 1.0).unwrap();
    opt.step(&mut m).unwrap();
    let after = values(&m);
    for p in ["lin.weight", "lin.bias", "norm.weight", "norm.bias"] {
        assert!(changed(&before, &after, p), "{p} should have trained");
    }
    assert!(!changed(&before, &after, "frozen"), "frozen parameter");
    assert!(!changed(&before, &after, "buf"), "buffer");
    assert!(!changed(&before, &after, "table"), "non-persistent buffer");
    // The optimizer did not touch the running statistics: only forward did.
    assert!(!changed(&after_forward, &after, "norm.running_mean"));
    assert_eq!(
        m.norm.num_batches_tracked.tensor().to_vec::<i64>().unwrap(),
        [1]
    );
    // Unfreezing makes it train.
    m.frozen.set_requires_grad(true);
    m.zero_grad();
    m.loss(&x).backward().unwrap();
    assert!(m.frozen.grad().is_some());
    let before_unfrozen = values(&m);
    opt.step(&mut m).unwrap();
    assert!(changed(&before_unfrozen, &values(&m), "frozen"));
    // Eval: BatchNorm uses and keeps its running statistics.
    m.eval();
    let before_eval = values(&m);
    no_grad(|| m.loss(&x));
    assert!(!changed(&before_eval, &values(&m), "norm.running_mean"));
    // The non-persistent buffer is not in the state dict; the rest is.
    let sd = m.state_dict().unwrap();
    assert!(sd.get("table").is_none());
    for k in [
        "frozen",
        "buf",
        "lin.weight",
        "norm.running_mean",
        "norm.num_batches_tracked",
    ] {
        assert!(sd.get(k).is_some(), "{k}");
    }
}

#[test]
fn the_four_kinds_behave_as_pytorch_says_on_cpu() {
    four_kinds(&Device::Cpu);
}

#[test]
fn the_four_kinds_behave_as_pytorch_says_on_gpu() {
    four_kinds(&gpu());
}

/// `loss = mean(x·wᵀ)` for x = [3, 4]: the gradient of w [1, 2] is exactly [3, 4].
fn sgd_case(d: &Device) -> (Linear, Tensor) {
    let mut l = Linear::no_bias(2, 1).and_then(|m| m.to(d)).unwrap();
    l.weight
        .set_tensor(
            Tensor::from_slice(&[1f32, 2.], &[1, 2])
                .unwrap()
                .to(d)
                .unwrap(),
        )
        .unwrap();
    (
        l,
        Tensor::from_slice(&[3f32, 4.], &[1, 2])
            .unwrap()
            .to(d)
            .unwrap(),
    )
}

#[test]
fn sgd_with_momentum_follows_pytorch_and_its_state_round_trips() {
    for d in [Device::Cpu, gpu()] {
        let (mut l, x) = sgd_case(&d);
        let mut opt = SGD::new(&l, 0.1, 0.9);
        let g = [3f32, 4.];
        // PyTorch: b = g on the first step, then b = μ·b + g; p = p + (-lr)·b (float32).
        let (mut p, mut b) = ([1f32, 2.], [0f32; 2]);
        for step in 0..3 {
            l.zero_grad();
            ops::mean(&l.forward(&x).unwrap())
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&mut l).unwrap();
            for i in 0..2 {
                b[i] = if step == 0 {
                    g[i]
                } else {
                    b[i] * 0.9f32 + g[i]
                };
                p[i] += -0.1f32 * b[i];
            }
            assert_eq!(
                l.weight.tensor().to_vec::<f32>().unwrap(),
                p,
                "step {step} on {d}"
            );
        }
        // Save, load into a fresh optimizer, and both take the same next step.
        let sd = opt.state_dict().unwrap();
        let (mut l2, _) = sgd_case(&d);
        l2.weight.set_tensor(l.weight.tensor().clone()).unwrap();
        let mut opt2 = SGD::new(&l2, 0.5, 0.0);
        opt2.load_state_dict(&sd, &d).unwrap();
        assert_eq!((opt2.lr, opt2.momentum), (0.1, 0.9));
        for (lin, o) in [(&mut l, &mut opt), (&mut l2, &mut opt2)] {
            lin.zero_grad();
            ops::mean(&lin.forward(&x).unwrap())
                .unwrap()
                .backward()
                .unwrap();
            o.step(lin).unwrap();
        }
        assert_eq!(
            l.weight.tensor().to_vec::<f32>().unwrap(),
            l2.weight.tensor().to_vec::<f32>().unwrap()
        );
    }
}

#[test]
fn adam_state_round_trips_through_a_file_and_refuses_another_model() {
    let d = gpu();
    let (mut l, x) = sgd_case(&d);
    let mut opt = Adam::new(&l, 0.01);
    opt.weight_decay = 0.1;
    let step = |l: &mut Linear, o: &mut Adam| {
        l.zero_grad();
        ops::mean(&l.forward(&x).unwrap())
            .unwrap()
            .backward()
            .unwrap();
        o.step(l).unwrap();
    };
    step(&mut l, &mut opt);
    step(&mut l, &mut opt);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("adam.safetensors");
    opt.state_dict().unwrap().save(&path).unwrap();
    let sd = wgnn::StateDict::load(&path).unwrap();
    assert_eq!(sd.get("state.0.step").unwrap().item::<f32>().unwrap(), 2.0);
    let (mut l2, _) = sgd_case(&d);
    l2.weight.set_tensor(l.weight.tensor().clone()).unwrap();
    let mut opt2 = Adam::new(&l2, 1.0);
    opt2.load_state_dict(&sd, &d).unwrap();
    assert_eq!((opt2.lr, opt2.weight_decay), (0.01, 0.1));
    step(&mut l, &mut opt);
    step(&mut l2, &mut opt2);
    assert_eq!(
        l.weight.tensor().to_vec::<f32>().unwrap(),
        l2.weight.tensor().to_vec::<f32>().unwrap()
    );
    assert_eq!(opt2.state(0).unwrap().step, 3);
    // Another model's parameters: refused, nothing changed.
    let other = Linear::new(2, 1).and_then(|m| m.to(&d)).unwrap();
    let mut opt3 = Adam::new(&other, 0.5);
    let e = opt3.load_state_dict(&sd, &d).unwrap_err().to_string();
    assert!(e.contains("saved for parameters"), "{e}");
    assert_eq!(opt3.lr, 0.5);
    // An SGD state dict is not an Adam one.
    let e = opt3
        .load_state_dict(&SGD::new(&other, 0.1, 0.0).state_dict().unwrap(), &d)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an Adam state dict"), "{e}");
}

#[test]
fn adam_with_weight_decay_follows_pytorchs_update() {
    // PyTorch's single-tensor Adam, written out in float32 with f64 scalars:
    // g += wd·p; m += (1-β1)(g - m); v = v·β2 + ((1-β2)·g)·g;
    // p += -(lr / (1-β1ᵗ)) · m / (√v / √(1-β2ᵗ) + eps).
    for d in [Device::Cpu, gpu()] {
        let (mut l, x) = sgd_case(&d);
        let mut opt = Adam::new(&l, 0.05);
        opt.weight_decay = 0.1;
        let (mut p, mut m, mut v) = ([1f32, 2.], [0f32; 2], [0f32; 2]);
        for t in 1..=3 {
            l.zero_grad();
            ops::mean(&l.forward(&x).unwrap())
                .unwrap()
                .backward()
                .unwrap();
            opt.step(&mut l).unwrap();
            let (b1, b2, lr, eps, wd) = (0.9f64, 0.999f64, 0.05f64, 1e-8f64, 0.1f64);
            let step = (-(lr / (1.0 - b1.powi(t)))) as f32;
            let bc2 = (1.0 - b2.powi(t)).sqrt() as f32;
            for i in 0..2 {
                let g = [3f32, 4.][i] + p[i] * wd as f32;
                m[i] += (1.0 - b1) as f32 * (g - m[i]);
                v[i] = v[i] * b2 as f32 + ((1.0 - b2) as f32 * g) * g;
                p[i] += step * (m[i] / (v[i].sqrt() / bc2 + eps as f32));
            }
            let got = l.weight.tensor().to_vec::<f32>().unwrap();
            for i in 0..2 {
                assert!(
                    (got[i] - p[i]).abs() <= 1e-7 * p[i].abs().max(1.0),
                    "step {t} on {d}: {got:?} vs {p:?}"
                );
            }
        }
    }
}
