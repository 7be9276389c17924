//! The first pieces of training, against PyTorch's recorded steps
//! (`tests/fixtures/reverse_train_subset.safetensors`, cut from the tutorial 6 fixtures): the
//! cross-entropy loss of the reverse task from its initial weights, and the learning-rate
//! schedule.

mod common;

use common::{fixture, gpu};
use wgnn::optim::CosineWarmupScheduler;
use wgnn::tutorial6::{Hparams, TransformerPredictor};
use wgnn::{ops, Device, ModuleExt, StateDict, Tensor};

#[test]
fn the_loss_of_the_first_two_steps_matches_pytorch_on_cpu_and_gpu() {
    let fx = StateDict::load(fixture("reverse_train_subset.safetensors")).unwrap();
    let init = StateDict::load(fixture("reverse_init.safetensors")).unwrap();
    let want = fx.get("loss").unwrap().to_vec::<f32>().unwrap();
    let inputs = fx.get("inputs").unwrap().to_vec::<i64>().unwrap();
    let labels = fx.get("labels").unwrap().to_vec::<i64>().unwrap();
    for d in [Device::Cpu, gpu()] {
        let mut m = TransformerPredictor::new(&Hparams::reverse_task(), &Device::Cpu).unwrap();
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
            let loss = ops::cross_entropy(&logits.reshape(&[n, 10]).unwrap(), &y).unwrap();
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
    let fx = StateDict::load(fixture("reverse_train_subset.safetensors")).unwrap();
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
