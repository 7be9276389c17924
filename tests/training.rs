//! Training against PyTorch's recorded steps (`tests/fixtures/reverse_train_steps.safetensors`,
//! written by PyTorch 2.15 from the tutorial 6 model): from `reverse_init`, 20 fixed batches of
//! the reverse task with Adam, `clip_grad_norm_(5)` and the tutorial's CosineWarmupScheduler —
//! every loss, the raw gradients of step 1, the weights after steps 2 and 20 and Adam's state
//! after step 20, on the CPU and the GPU. Also the cross-entropy of the first batches and the
//! schedule.

mod common;

use common::{fixture, gpu};
use std::collections::BTreeMap;

use wgnn::optim::{clip_grad_norm_, Adam, CosineWarmupScheduler};
use wgnn::{ops, Device, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

#[test]
fn the_loss_of_the_first_two_steps_matches_pytorch_on_cpu_and_gpu() {
    let fx = StateDict::load(fixture("reverse_train_steps.safetensors")).unwrap();
    let init = StateDict::load(fixture("reverse_init.safetensors")).unwrap();
    let want = fx.get("loss").unwrap().to_vec::<f32>().unwrap();
    let inputs = fx.get("inputs").unwrap().to_vec::<i64>().unwrap();
    let labels = fx.get("labels").unwrap().to_vec::<i64>().unwrap();
    for d in [Device::Cpu, gpu()] {
        let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
        m.load_state_dict(&init, true).unwrap();
        m.to_device(&d).unwrap();
        // Training mode, as the recorded steps ran (dropout is 0 in the reverse task).
        m.train();
        for step in 0..2 {
            let n = 128 * 16;
            let x = Tensor::from_slice(&inputs[step * n..(step + 1) * n], &[128, 16])
                .unwrap()
                .to(&d)
                .unwrap();
            let y = Tensor::from_slice(&labels[step * n..(step + 1) * n], &[n])
                .unwrap()
                .to(&d)
                .unwrap();
            let logits = m
                .forward(&ops::one_hot(&x, 10).unwrap(), None, true)
                .unwrap();
            let loss = ops::cross_entropy(&logits.reshape([n, 10]).unwrap(), &y).unwrap();
            let got = loss.item::<f32>().unwrap();
            let rel = ((got - want[step]) / want[step]).abs();
            eprintln!(
                "loss of step {} on {d}: {got} vs PyTorch {} (relative {rel:.2e})",
                step + 1,
                want[step]
            );
            assert!(rel <= 1e-5, "step {}: {got} vs {}", step + 1, want[step]);
        }
    }
    // Misuse.
    let logits = Tensor::zeros(&[2, 3], wgnn::DType::F32, &Device::Cpu).unwrap();
    let bad = Tensor::from_slice(&[0i64, 3], &[2]).unwrap();
    assert!(ops::cross_entropy(&logits, &bad)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(ops::cross_entropy(&logits, &Tensor::from_slice(&[0i64], &[1]).unwrap()).is_err());
}

#[test]
fn the_schedule_is_the_tutorials_for_every_step() {
    let fx = StateDict::load(fixture("reverse_train_steps.safetensors")).unwrap();
    let factors = fx.get("lr_factor").unwrap().to_vec::<f64>().unwrap();
    let s = CosineWarmupScheduler::new(50, 3900);
    let mut exact = 0;
    for (e, &want) in factors.iter().enumerate() {
        let got = s.lr_factor(e);
        assert!(
            (got - want).abs() <= 2.0 * f64::EPSILON * want.abs(),
            "epoch {e}: {got} vs {want}"
        );
        exact += (got == want) as usize;
    }
    eprintln!("lr_factor: {exact}/{} bit-equal to numpy's", factors.len());
    let lrs = fx.get("lr").unwrap().to_vec::<f64>().unwrap();
    for (k, &want) in lrs.iter().enumerate() {
        assert!(
            (s.lr(5e-4, k) - want).abs() <= 2.0 * f64::EPSILON * want.abs(),
            "step {}",
            k + 1
        );
    }
}

/// max |a - b| and max |b| over two tensors' values.
fn diff(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    (d, b.iter().map(|v| v.abs()).fold(0f32, f32::max))
}

/// The 20 recorded steps on `d`, checked as they go; returns the measured maxima by name.
fn twenty_steps(d: &Device) -> BTreeMap<&'static str, f32> {
    let fx = StateDict::load(fixture("reverse_train_steps.safetensors")).unwrap();
    let init = StateDict::load(fixture("reverse_init.safetensors")).unwrap();
    let losses = fx.get("loss").unwrap().to_vec::<f32>().unwrap();
    let lrs = fx.get("lr").unwrap().to_vec::<f64>().unwrap();
    let inputs = fx.get("inputs").unwrap().to_vec::<i64>().unwrap();
    let labels = fx.get("labels").unwrap().to_vec::<i64>().unwrap();
    let order: Vec<String> = serde_json::from_str(&fx.metadata()["param_order"]).unwrap();
    let mut m = TransformerPredictor::new(&Hparams::reverse_task()).unwrap();
    m.load_state_dict(&init, true).unwrap();
    m.to_device(d).unwrap();
    m.train();
    let mut opt = Adam::new(&m, 5e-4);
    assert_eq!(
        opt.parameter_names(),
        order.as_slice(),
        "PyTorch's parameter order"
    );
    let sched = CosineWarmupScheduler::new(50, 3900);
    let mut worst: BTreeMap<&'static str, f32> = BTreeMap::new();
    let mut note = |k: &'static str, v: f32| {
        let e = worst.entry(k).or_insert(0.0);
        *e = e.max(v);
    };
    let n = 128 * 16;
    for step in 0..20 {
        m.zero_grad();
        let x = Tensor::from_slice(&inputs[step * n..(step + 1) * n], &[128, 16])
            .unwrap()
            .to(d)
            .unwrap();
        let y = Tensor::from_slice(&labels[step * n..(step + 1) * n], &[n])
            .unwrap()
            .to(d)
            .unwrap();
        let logits = m
            .forward(&ops::one_hot(&x, 10).unwrap(), None, true)
            .unwrap();
        let loss = ops::cross_entropy(&logits.reshape([n, 10]).unwrap(), &y).unwrap();
        loss.backward().unwrap();
        let got = loss.item::<f32>().unwrap();
        let rel = ((got - losses[step]) / losses[step]).abs();
        assert!(
            rel <= 1e-5,
            "step {}: loss {got} vs PyTorch {}",
            step + 1,
            losses[step]
        );
        note("loss (relative)", rel);
        if step == 0 {
            for (name, p) in m.named_parameters() {
                let g = p.grad().unwrap_or_else(|| panic!("{name} has no gradient"));
                let (dd, mx) = diff(&g, fx.get(&format!("grad1.{name}")).unwrap());
                assert!(dd <= 1e-5 * mx, "grad1.{name}: {dd:e} vs max {mx:e}");
                note("grad1 (relative to max|grad|)", dd / mx);
            }
        }
        let norm = clip_grad_norm_(&mut m, 5.0).unwrap();
        let gn = fx.get("grad_norm").unwrap().to_vec::<f32>().unwrap()[step];
        let gn_rel = ((norm.value().unwrap() - gn) / gn).abs();
        assert!(
            gn_rel <= 1e-5,
            "step {}: grad norm {} vs {gn}",
            step + 1,
            norm.value().unwrap()
        );
        note("grad_norm (relative)", gn_rel);
        opt.lr = sched.lr(5e-4, step);
        assert_eq!(opt.lr, lrs[step], "the lr of step {}", step + 1);
        opt.step(&mut m).unwrap();
        // The key bias (elements 32..64 of qkv_proj.bias, one head) has a gradient that is
        // zero in exact arithmetic (softmax ignores a shift shared by all keys): PyTorch's and
        // ours are both rounding noise (|grad| ~ 3e-11), which Adam scales up to steps of ±lr.
        // It is compared apart, against how far Adam could have moved it.
        let check = |prefix: &str,
                     bound: f32,
                     key: &'static str,
                     worst: &mut dyn FnMut(&'static str, f32)| {
            let sd = m.state_dict().unwrap();
            let mut at = (0f32, String::new());
            for (k, t) in sd.iter() {
                if k.ends_with("num_batches_tracked") {
                    continue;
                }
                let want = fx
                    .get(&format!("{prefix}{k}"))
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap();
                let got = t.to_vec::<f32>().unwrap();
                let noise = |i: usize| k.ends_with("qkv_proj.bias") && (32..64).contains(&i);
                let mut dd = 0f32;
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    if noise(i) {
                        let moved: f64 = lrs[..=step].iter().sum();
                        assert!((a - b).abs() as f64 <= 2.0 * moved, "{prefix}{k}[{i}]");
                        worst("key bias (noise-driven, absolute)", (a - b).abs());
                    } else {
                        dd = dd.max((a - b).abs());
                    }
                }
                assert!(dd <= bound, "{prefix}{k}: {dd:e}");
                worst(key, dd);
                if dd > at.0 {
                    at = (dd, k.to_string());
                }
            }
            eprintln!(
                "{prefix}: the largest difference, {:.2e}, is in {}",
                at.0, at.1
            );
        };
        if step == 1 {
            check("after2.", 1e-6, "after2 (absolute)", &mut note);
        }
        if step == 19 {
            check("after20.", 1e-6, "after20 (absolute)", &mut note);
        }
    }
    for (i, name) in order.iter().enumerate() {
        let st = opt.state(i).unwrap();
        assert_eq!(st.step, 20);
        let (dm, mm) = diff(
            &st.exp_avg,
            fx.get(&format!("adam20.exp_avg.{name}")).unwrap(),
        );
        let (dv, mv) = diff(
            &st.exp_avg_sq,
            fx.get(&format!("adam20.exp_avg_sq.{name}")).unwrap(),
        );
        assert!(
            dm <= 1e-5 * mm && dv <= 1e-5 * mv,
            "adam20 {name}: {dm:e}/{mm:e} {dv:e}/{mv:e}"
        );
        note("adam20.exp_avg (relative to max)", dm / mm);
        note("adam20.exp_avg_sq (relative to max)", dv / mv);
    }
    for (k, v) in &worst {
        eprintln!("{d}: {k}: {v:.3e}");
    }
    worst
}

#[test]
fn twenty_adam_steps_match_pytorch_on_cpu() {
    twenty_steps(&Device::Cpu);
}

#[test]
fn twenty_adam_steps_match_pytorch_on_gpu() {
    twenty_steps(&gpu());
}
