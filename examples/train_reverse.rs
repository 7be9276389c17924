//! Trains the tutorial's reverse task from scratch, on the GPU (or the CPU), as the tutorial does:
//! `ReverseDataset(10, 16)`, one-hot inputs, the tutorial's hyper-parameters, Adam with the
//! CosineWarmupScheduler stepped per batch, `clip_grad_norm_(5)`.
//!
//! cargo run --release --example train_reverse -- [--steps N] [--device cpu|gpu|software]
//!     [--seed S] [--batch B] [--eval-every N] [--save FILE]
//!
//! Every `--eval-every` steps the model is evaluated on a fixed test set of 256 sequences; the
//! last line is `test accuracy: <percent>% after <steps> steps`. `--save` writes the model's
//! state dict as safetensors with PyTorch's keys (and the hyper-parameters in the metadata), which
//! the `reverse` example and PyTorch's `TransformerPredictor.load_state_dict` load.
//!
//! Alongside, a small demonstration model trains on the same batches to show what training does
//! to each kind of tensor — the tutorial's model has no frozen parameter, no persistent buffer
//! and no BatchNorm: `embed` and `head` are trainable, `offset` is a frozen parameter, `prior` a
//! buffer, `norm` a BatchNorm1d (running statistics are buffers changed by forward) and `table` a
//! non-persistent buffer. It predicts each token on its own, so it cannot learn the reversal;
//! its job is the report printed at the end.

#[path = "common/mod.rs"]
mod common;

use std::process::exit;
use std::time::Instant;

use clap::Parser;
use common::DeviceArg;

use indicatif::{ProgressBar, ProgressStyle};
use wgnn::autograd::no_grad;
use wgnn::nn::{BatchNorm1d, Linear};
use wgnn::optim::{clip_grad_norm_, Adam, CosineWarmupScheduler};
use wgnn::{ops, Buffer, Device, Forward, Module, ModuleExt, Parameter, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

const SEQ: usize = 16;
const CLASSES: usize = 10;
const TEST: usize = 256;

/// Trains the tutorial's reverse task from scratch and reports what training does to each kind
/// of tensor.
#[derive(Parser, Debug)]
#[command(name = "train_reverse")]
struct Args {
    /// Optimizer steps (batches).
    #[arg(long, value_name = "N", default_value = "1200", value_parser = common::positive)]
    steps: usize,
    /// Where the models train.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// Seed of the weights and the batches.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Sequences per batch (at least 2: BatchNorm needs two samples).
    #[arg(long, value_name = "B", default_value = "128", value_parser = at_least_two)]
    batch: usize,
    /// Evaluates on the 256 test sequences every N steps.
    #[arg(long = "eval-every", value_name = "N", default_value = "100", value_parser = common::positive)]
    eval_every: usize,
    /// Writes the trained model's state dict (PyTorch's keys, hparams metadata) as safetensors.
    #[arg(long, value_name = "FILE")]
    save: Option<String>,
}

fn at_least_two(s: &str) -> Result<usize, String> {
    match common::positive(s)? {
        1 => Err("must be at least 2".into()),
        n => Ok(n),
    }
}

/// SplitMix64: the example's own stream of tokens (not PyTorch's `randint`).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// `n` sequences of `ReverseDataset(10, 16)`: tokens, and the tokens reversed as labels.
    fn batch(&mut self, n: usize) -> (Vec<i64>, Vec<i64>) {
        let x: Vec<i64> = (0..n * SEQ)
            .map(|_| (self.next() % CLASSES as u64) as i64)
            .collect();
        let y = x
            .chunks(SEQ)
            .flat_map(|s| s.iter().rev().copied())
            .collect();
        (x, y)
    }
}

/// The demonstration model (see the module docs).
#[derive(Module)]
struct KindsDemo {
    embed: Linear,
    table: Buffer,
    norm: BatchNorm1d,
    head: Linear,
    offset: Parameter,
    prior: Buffer,
}

impl KindsDemo {
    /// Built on the CPU as PyTorch builds it (the layers initialised from the global
    /// generator), then moved in one call.
    fn new(device: &Device) -> wgnn::Result<Self> {
        let cpu = &Device::Cpu;
        KindsDemo {
            embed: Linear::new(CLASSES, 16)?,
            table: Buffer::non_persistent(ops::positional_table(SEQ, 16, cpu)?),
            norm: BatchNorm1d::new(16)?,
            head: Linear::new(16, CLASSES)?,
            offset: Parameter::frozen(Tensor::full(&[CLASSES], 0.5f32, cpu)?),
            prior: Buffer::new(Tensor::full(&[CLASSES], -0.25f32, cpu)?),
        }
        .to(device)
    }
    /// Logits `[B·S, 10]` from one-hot `[B, S, 10]`.
    fn forward(&mut self, x: &Tensor) -> wgnn::Result<Tensor> {
        let (b, s) = (x.shape()[0], x.shape()[1]);
        let h = ops::add_positional(&self.embed.forward(x)?, self.table.tensor())?;
        let h = ops::relu(&self.norm.forward(&h.reshape([b * s, 16])?)?)?;
        let logits = ops::broadcast_add(&self.head.forward(&h)?, self.offset.tensor())?;
        ops::broadcast_add(&logits, self.prior.tensor())
    }
}

/// Every tensor of a module (state dict and non-persistent buffers) as host values by path.
fn snapshot(m: &impl ModuleExt) -> wgnn::Result<Vec<(String, Vec<f32>)>> {
    let mut out = Vec::new();
    for (name, p) in m.named_parameters() {
        out.push((name, p.tensor().to_dtype(wgnn::DType::F32)?.to_vec()?));
    }
    for (name, b) in m.named_buffers() {
        if b.tensor().dtype() == wgnn::DType::F32 {
            out.push((name, b.tensor().to_vec()?));
        }
    }
    Ok(out)
}

fn max_change(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Fraction of test tokens the model reverses correctly (eval mode, no graph).
fn test_accuracy(model: &mut TransformerPredictor, x: &Tensor, y: &[i64]) -> wgnn::Result<f64> {
    model.eval();
    let preds = no_grad(|| -> wgnn::Result<Vec<i64>> {
        let logits = model.forward(&ops::one_hot(x, CLASSES)?, None, true)?;
        ops::argmax(&logits)?.to_vec::<i64>()
    })?;
    model.train();
    let right = preds.iter().zip(y).filter(|(a, b)| a == b).count();
    Ok(right as f64 / y.len() as f64)
}

fn run(a: Args) -> wgnn::Result<()> {
    let device = a.device.open()?;
    println!(
        "device: {}",
        device
            .as_gpu()
            .map_or_else(|| "cpu (multi-threaded)".to_string(), |g| g.adapter())
    );
    let hp = Hparams::reverse_task();
    println!(
        "reverse task: ReverseDataset({CLASSES}, {SEQ}), batch {}, {} steps; model_dim {}, heads {}, layers {}, Adam lr {} with warm-up {} of a {}-step cosine, clip_grad_norm_ 5",
        a.batch, a.steps, hp.model_dim, hp.num_heads, hp.num_layers, hp.lr, hp.warmup, hp.max_iters
    );
    // torch.manual_seed(seed): every device starts from the same weights.
    wgnn::manual_seed(a.seed);
    let mut model = TransformerPredictor::new(&hp)?.to(&device)?;
    model.train();
    let mut demo = KindsDemo::new(&device)?;
    demo.train();
    let (model0, demo0) = (snapshot(&model)?, snapshot(&demo)?);

    let mut opt = Adam::new(&model, hp.lr);
    let mut demo_opt = Adam::new(&demo, 1e-2);
    let sched = CosineWarmupScheduler::new(hp.warmup, hp.max_iters);
    let mut data = Rng(a.seed.wrapping_mul(2).wrapping_add(1));
    let (tx, ty) = Rng(4321).batch(TEST);
    let test_x = Tensor::from_slice(&tx, &[TEST, SEQ])?.to(&device)?;

    let bar = ProgressBar::new(a.steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .map_err(|e| wgnn::Error::InvalidArgument(e.to_string()))?,
    );
    let start = Instant::now();
    let mut first_100: Option<(usize, f64)> = None;
    let mut acc = 0.0;
    let n = a.batch * SEQ;
    for step in 0..a.steps {
        let (x, y) = data.batch(a.batch);
        let x = ops::one_hot(
            &Tensor::from_slice(&x, &[a.batch, SEQ])?.to(&device)?,
            CLASSES,
        )?;
        let labels = Tensor::from_slice(&y, &[n])?.to(&device)?;

        model.zero_grad();
        let logits = model.forward(&x, None, true)?.reshape([n, CLASSES])?;
        let loss = ops::cross_entropy(&logits, &labels)?;
        loss.backward()?;
        clip_grad_norm_(&mut model, 5.0)?;
        opt.lr = sched.lr(hp.lr, step);
        opt.step(&mut model)?;

        demo.zero_grad();
        let demo_loss = ops::cross_entropy(&demo.forward(&x)?, &labels)?;
        demo_loss.backward()?;
        demo_opt.step(&mut demo)?;

        let done = step + 1;
        if done % 10 == 0 || done == a.steps {
            // Reading the loss back waits for the step: only every 10 steps.
            let l = loss.item::<f32>()?;
            let preds = ops::argmax(&logits)?.to_vec::<i64>()?;
            let right = preds.iter().zip(&y).filter(|(p, t)| p == t).count();
            let secs = start.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {l:.4}  batch accuracy {:.1}%  {:.1} steps/s",
                100.0 * right as f64 / n as f64,
                done as f64 / secs
            ));
        }
        bar.set_position(done as u64);
        if done % a.eval_every == 0 || done == a.steps {
            acc = test_accuracy(&mut model, &test_x, &ty)?;
            let secs = start.elapsed().as_secs_f64();
            let line = format!(
                "step {done:>5}: test accuracy {:.2}%  ({secs:.1} s)",
                100.0 * acc
            );
            // A hidden bar (output not a terminal) prints nothing itself.
            if bar.is_hidden() {
                println!("{line}");
            } else {
                bar.println(line);
            }
            if acc == 1.0 && first_100.is_none() {
                first_100 = Some((done, secs));
            }
        }
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "trained {} steps in {secs:.1} s ({:.1} steps/s, both models)",
        a.steps,
        a.steps as f64 / secs
    );
    match first_100 {
        Some((s, t)) => println!("the test set was first reversed 100% at step {s} ({t:.1} s)"),
        None => println!(
            "the test set was not reversed 100% within {} steps",
            a.steps
        ),
    }

    // What happened to each kind of tensor.
    println!("\nwhat training did to each kind of tensor:");
    let (model1, demo1) = (snapshot(&model)?, snapshot(&demo)?);
    let changed = model0
        .iter()
        .zip(&model1)
        .filter(|(a, b)| a.0 != "positional_encoding.pe" && max_change(&a.1, &b.1) > 0.0)
        .count();
    println!(
        "  tutorial model: {changed} of {} trainable parameters changed (Adam, from their gradients)",
        model.named_parameters().len()
    );
    let pe = model0
        .iter()
        .zip(&model1)
        .find(|(a, _)| a.0 == "positional_encoding.pe");
    if let Some((p0, p1)) = pe {
        println!(
            "  tutorial model: positional_encoding.pe (non-persistent buffer): {}, no gradient",
            if max_change(&p0.1, &p1.1) == 0.0 {
                "unchanged"
            } else {
                "CHANGED"
            }
        );
    }
    let kinds: Vec<(String, wgnn::TensorKind)> = demo
        .tensor_infos()
        .into_iter()
        .map(|i| (i.path, i.kind))
        .collect();
    for ((name, v0), (_, v1)) in demo0.iter().zip(&demo1) {
        let kind = kinds
            .iter()
            .find(|k| &k.0 == name)
            .map_or("?".to_string(), |k| k.1.to_string());
        let d = max_change(v0, v1);
        let how = match (kind.as_str(), d > 0.0) {
            ("parameter", true) => "changed: it had a gradient and Adam stepped it".to_string(),
            ("frozen parameter", false) => format!(
                "unchanged: no gradient ({}), so Adam skipped it",
                if demo.offset.grad().is_none() {
                    "grad is None"
                } else {
                    "GRAD SET"
                }
            ),
            ("buffer", true) => {
                "changed by forward in training mode (running statistics), never by the optimizer"
                    .into()
            }
            ("buffer", false) => "unchanged: a buffer gets no gradient and no optimizer".into(),
            ("non-persistent buffer", false) => "unchanged, and not in the state dict".into(),
            (_, true) => "CHANGED (unexpected)".into(),
            (_, false) => "UNCHANGED (unexpected)".into(),
        };
        println!("  demo {name:<22} {kind:<22} {how}");
    }
    let batches = demo.norm.num_batches_tracked.tensor().to_vec::<i64>()?[0];
    let rm = demo.norm.running_mean.tensor().to_vec::<f32>()?;
    demo.eval();
    no_grad(|| demo.forward(&ops::one_hot(&test_x, CLASSES)?))?;
    let unchanged_in_eval = demo.norm.running_mean.tensor().to_vec::<f32>()? == rm;
    println!(
        "  demo norm: num_batches_tracked = {batches} (one per train-mode forward); an eval-mode forward {} the running statistics",
        if unchanged_in_eval { "did not change" } else { "CHANGED" }
    );
    let demo_sd = demo.state_dict()?;
    println!(
        "  demo state dict: {} ({} entries, no `table`: it is non-persistent)",
        demo_sd.keys().join(", "),
        demo_sd.len()
    );

    if let Some(path) = &a.save {
        let mut sd = model.state_dict()?;
        let json = format!(
            "{{\"input_dim\": {}, \"model_dim\": {}, \"num_classes\": {}, \"num_heads\": {}, \"num_layers\": {}, \"lr\": {}, \"warmup\": {}, \"max_iters\": {}, \"dropout\": {}, \"input_dropout\": {}}}",
            hp.input_dim, hp.model_dim, hp.num_classes, hp.num_heads, hp.num_layers, hp.lr,
            hp.warmup, hp.max_iters, hp.dropout, hp.input_dropout
        );
        sd.set_metadata("hparams", json);
        sd.set_metadata("steps", a.steps.to_string());
        sd.set_metadata("test_acc", acc.to_string());
        sd.save(path)?;
        let back = StateDict::load(path)?;
        println!(
            "saved {} tensors to {path}; positional_encoding.pe is {} the file",
            back.len(),
            if back.get("positional_encoding.pe").is_some() {
                "IN"
            } else {
                "not in"
            }
        );
    }
    println!("test accuracy: {:.2}% after {} steps", 100.0 * acc, a.steps);
    Ok(())
}

fn main() {
    let a = Args::parse();
    if let Err(e) = run(a) {
        eprintln!("error: {e}");
        exit(1);
    }
}
