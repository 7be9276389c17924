//! The tutorial 5 ResNet from its published checkpoint: BatchNorm's buffers where they matter.
//!
//! cargo run --release --example resnet -- [--checkpoint FILE] [--device cpu|gpu|software]
//!     [--inputs FILE] [--save FILE] [--train-steps N] [--half]
//!
//! Loads the shipped `ResNet.ckpt` (or any of the tutorial's ResNet checkpoints: the block type
//! and sizes come from its hyper-parameters, `PreActResNetBlock` included), moves it to the
//! device in one call, prints the module summary (the 19 BatchNorm layers' running statistics
//! are persistent buffers, `num_batches_tracked` an int64 one), classifies a batch (`--inputs`:
//! a safetensors file with `x [N, 3, 32, 32]`, normalised as the tutorial normalises CIFAR-10;
//! else the 16 CIFAR-like test images shipped with the tests) and prints CIFAR-10's names and
//! the time per batch. `--save` writes `logits` f32 `[N, 10]` and `preds` int64 `[N]`.
//! `--train-steps N` then takes N SGD steps in train mode (the checkpoint's optimizer: lr 0.1,
//! momentum 0.9, weight decay 1e-4) and shows what each step changed: the running statistics
//! through the forward, the weights through the optimizer, `num_batches_tracked` counting.
//! The labels come from `y` (int64 `[N]`) in the inputs file, or with the shipped images from
//! the tests' training batches. `--half` runs everything in float16.

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::process::exit;
use std::time::Instant;

use clap::Parser;
use common::DeviceArg;

use wgnn::optim::SGD;
use wgnn::Forward;
use wgnn::{ops, DType, Device, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial5::ResNet;

/// CIFAR-10's class names, in label order.
const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tutorial5");

/// The tutorial 5 ResNet from its published checkpoint, on the GPU.
#[derive(Parser, Debug)]
#[command(name = "resnet")]
struct Args {
    /// One of the tutorial's ResNet checkpoints (Lightning .ckpt).
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tutorial5/ResNet.ckpt"))]
    checkpoint: String,
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// A safetensors file with `x` [N, 3, 32, 32] (normalised images) and optionally `y` [N]
    /// int64 labels for --train-steps.
    #[arg(long, value_name = "FILE")]
    inputs: Option<String>,
    /// Writes `logits` f32 [N, 10] and `preds` int64 [N] as safetensors.
    #[arg(long, value_name = "FILE")]
    save: Option<String>,
    /// SGD steps to take in train mode after classifying.
    #[arg(long = "train-steps", value_name = "N", default_value_t = 0)]
    train_steps: usize,
    /// Runs in float16 (weights, running statistics and inputs; the counters stay int64).
    #[arg(long)]
    half: bool,
}

fn bad(msg: String) -> wgnn::Error {
    wgnn::Error::InvalidArgument(msg)
}

/// `x` (and `y` when present) of an inputs file, checked.
fn read_inputs(path: &str) -> wgnn::Result<(Tensor, Option<Tensor>)> {
    let f = StateDict::load(path)?;
    let x = f
        .get("x")
        .ok_or_else(|| bad(format!("{path} has no tensor x")))?;
    if !x.dtype().is_float() || x.shape().len() != 4 || x.shape()[1] != 3 || x.shape()[0] == 0 {
        return Err(bad(format!(
            "{path}: x must be a float [N, 3, H, W] batch of images, got {} {:?}",
            x.dtype().name(),
            x.shape()
        )));
    }
    let y = match f.get("y") {
        None => None,
        Some(y) if y.dtype() == DType::I64 && y.shape() == [x.shape()[0]] => Some(y.clone()),
        Some(y) => {
            return Err(bad(format!(
                "{path}: y must be int64 [{}], got {} {:?}",
                x.shape()[0],
                y.dtype().name(),
                y.shape()
            )))
        }
    };
    Ok((x.to_dtype(DType::F32)?, y))
}

/// Every state-dict entry's bits, to see what a step changed.
fn snapshot(model: &ResNet) -> wgnn::Result<BTreeMap<String, Vec<u8>>> {
    let sd = model.state_dict()?;
    sd.iter()
        .map(|(k, t)| Ok((k.to_string(), t.to(&Device::Cpu)?.to_bytes()?)))
        .collect()
}

fn changed(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// "57 tensors: 19 running_mean, 19 running_var, 19 num_batches_tracked".
fn describe(keys: &[String]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for k in keys {
        *by.entry(k.rsplit('.').next().unwrap_or(k)).or_default() += 1;
    }
    let parts: Vec<String> = by.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} tensors ({})", keys.len(), parts.join(", "))
}

fn run(a: Args) -> wgnn::Result<()> {
    let device = a.device.open()?;
    println!(
        "device: {}",
        device
            .as_gpu()
            .map_or_else(|| "cpu (multi-threaded)".to_string(), |g| g.adapter())
    );
    let t = Instant::now();
    let mut model = ResNet::from_checkpoint(&a.checkpoint)?;
    let hp = model.hparams.clone();
    println!(
        "checkpoint: {} ({} tensors): {} blocks of {}, channels {:?}, activation {}, read in {:.1} ms",
        a.checkpoint,
        model.state_dict()?.len(),
        hp.num_blocks.iter().sum::<usize>(),
        hp.block_name,
        hp.c_hidden,
        hp.act_fn_name,
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    model.to_device(&device)?;
    if a.half {
        model.to_dtype(DType::F16)?;
    }
    println!(
        "moved to {device}{} in one call: {:.1} ms\n",
        if a.half { " as float16" } else { "" },
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("{}", model.summary());
    let bns = model
        .named_buffers()
        .iter()
        .filter(|(n, _)| n.ends_with(".running_mean"))
        .count();
    println!(
        "{bns} BatchNorm2d layers: running_mean and running_var are persistent buffers (in the \
         state dict, moved with the model, never trained); num_batches_tracked is an int64 \
         buffer counting the training steps\n"
    );

    let (x, y) = match &a.inputs {
        Some(path) => read_inputs(path)?,
        None => (
            StateDict::load(format!("{FIXTURES}/resnet_io.safetensors"))?
                .get("x")
                .cloned()
                .ok_or_else(|| bad("the shipped images are missing".into()))?,
            None,
        ),
    };
    let n = x.shape()[0];
    let dtype = if a.half { DType::F16 } else { DType::F32 };
    let xd = x.to(&device)?.to_dtype(dtype)?;
    let classify = |model: &mut ResNet| -> wgnn::Result<(Tensor, Vec<i64>)> {
        let logits = wgnn::autograd::no_grad(|| model.forward(&xd))?;
        let preds = ops::argmax(&logits)?.to_vec::<i64>()?;
        Ok((logits, preds))
    };
    model.eval();
    // The first batch builds the pipelines; the second is the time per batch.
    classify(&mut model)?;
    let t = Instant::now();
    let (logits, preds) = classify(&mut model)?;
    let dt = t.elapsed().as_secs_f64();
    for (i, &p) in preds.iter().enumerate().take(16) {
        println!(
            "image {i:>2}: {}",
            CIFAR10_CLASSES.get(p as usize).copied().unwrap_or("?")
        );
    }
    if n > 16 {
        println!("… {} more", n - 16);
    }
    println!(
        "time per batch of {n}: {:.2} ms ({:.0} images/s)",
        dt * 1e3,
        n as f64 / dt
    );
    if let Some(path) = &a.save {
        let mut out = StateDict::new();
        out.insert("logits", logits.to_dtype(DType::F32)?.to(&Device::Cpu)?);
        out.insert("preds", Tensor::from_slice(&preds, &[n])?);
        out.save(path)?;
        println!("saved logits and preds to {path}");
    }

    if a.train_steps > 0 {
        let batches: Vec<(Tensor, Tensor)> = match (&a.inputs, y) {
            (Some(_), Some(y)) => vec![(x.clone(), y)],
            (Some(path), None) => {
                return Err(bad(format!(
                    "--train-steps needs labels: {path} has no int64 y [N]"
                )))
            }
            (None, _) => {
                let f = StateDict::load(format!("{FIXTURES}/resnet_train_steps.safetensors"))?;
                (0..3)
                    .map(|i| {
                        let get = |k: String| {
                            f.get(&k)
                                .cloned()
                                .ok_or_else(|| bad(format!("the shipped batch {k} is missing")))
                        };
                        Ok((get(format!("batch.{i}.x"))?, get(format!("batch.{i}.y"))?))
                    })
                    .collect::<wgnn::Result<_>>()?
            }
        };
        model.train();
        let mut opt = SGD::new(&model, 0.1, 0.9);
        opt.weight_decay = 1e-4;
        println!("\ntraining (train mode, SGD lr 0.1, momentum 0.9, weight decay 1e-4):");
        for step in 0..a.train_steps {
            let (bx, by) = &batches[step % batches.len()];
            let (bx, by) = (bx.to(&device)?.to_dtype(dtype)?, by.to(&device)?);
            let before = snapshot(&model)?;
            model.zero_grad();
            let loss = ops::cross_entropy(&model.forward(&bx)?, &by)?;
            let after_forward = snapshot(&model)?;
            loss.backward()?;
            opt.step(&mut model)?;
            let after_step = snapshot(&model)?;
            let by_forward = changed(&before, &after_forward);
            let by_optimizer = changed(&after_forward, &after_step);
            let counter = model
                .named_buffers()
                .iter()
                .find(|(n, _)| n.ends_with("num_batches_tracked"))
                .map(|(_, b)| b.tensor().to_vec::<i64>())
                .transpose()?
                .and_then(|v| v.first().copied());
            println!(
                "step {}: loss {:.6}\n  the forward changed {}\n  the optimizer changed {}\n  \
                 num_batches_tracked is now {}",
                step + 1,
                loss.to_dtype(DType::F32)?.to_vec::<f32>()?[0],
                describe(&by_forward),
                describe(&by_optimizer),
                counter.map_or("?".to_string(), |c| c.to_string())
            );
        }
        model.eval();
        let (_, preds) = classify(&mut model)?;
        let names: Vec<&str> = preds
            .iter()
            .take(8)
            .map(|&p| CIFAR10_CLASSES.get(p as usize).copied().unwrap_or("?"))
            .collect();
        println!("after training, eval mode: {} …", names.join(", "));
    }
    Ok(())
}

fn main() {
    env_logger::init();
    let a = Args::parse();
    if let Err(e) = run(a) {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        exit(1);
    }
}
