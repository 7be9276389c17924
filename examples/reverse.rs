//! The tutorial's reverse task: a trained checkpoint in, reversed sequences and attention maps
//! out, on the GPU (or the CPU).
//!
//! cargo run --release --example reverse -- [--checkpoint FILE] [--device cpu|gpu|software]
//!     [--samples N] [--seed S] [--inputs FILE] [--save FILE] [--attention-png FILE]
//!
//! `--checkpoint` takes a Lightning `.ckpt`, a `torch.save` `.pt`/`.pth` or a `.safetensors`
//! (default: the small trained model in `tests/fixtures/`). The sizes come from the file's
//! hyper-parameters when it has them (Lightning's `hyper_parameters`, or the `hparams` metadata
//! of the shipped safetensors), otherwise from the tensor shapes (one head: heads cannot be read
//! off shapes). `--inputs` is a safetensors file whose int64 `x` [batch, seq] holds the
//! sequences; otherwise `--samples` random ones of length 16 from `--seed`.
//!
//! The PNG has one panel per layer (rows) and head (columns): each panel is the first
//! sequence's attention, a `seq × seq` grid of `CELL`-pixel squares (queries down, keys across)
//! with the input tokens along the top and the left in a `MARGIN`-pixel band, panels `GAP`
//! pixels apart.

#[path = "common/mod.rs"]
mod common;

use std::process::exit;
use std::time::Instant;

use clap::Parser;
use common::{color, Canvas, DeviceArg};

use wgnn::torch::{detect_file, Checkpoint, FileFormat};
use wgnn::{ops, DType, ModuleExt, StateDict, Tensor};
use wgnn_ports::tutorial6::{Hparams, TransformerPredictor};

const SEQ: usize = 16;
const BATCH: usize = 128;
const CELL: usize = 16;
const MARGIN: usize = 12;
const GAP: usize = 8;

/// The tutorial's reverse-task Transformer: a trained checkpoint in, reversed sequences and
/// attention maps out.
#[derive(Parser, Debug)]
#[command(name = "reverse")]
struct Args {
    /// A Lightning .ckpt, a torch.save .pt/.pth or a .safetensors of the tutorial's model.
    #[arg(long, value_name = "FILE", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reverse_trained.safetensors"))]
    checkpoint: String,
    /// Where the model runs.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// How many random sequences to reverse (ignored with --inputs).
    #[arg(long, value_name = "N", default_value = "256", value_parser = common::positive)]
    samples: usize,
    /// Seed of the random sequences.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// A safetensors file whose int64 `x` [batch, seq] holds the sequences.
    #[arg(long, value_name = "FILE")]
    inputs: Option<String>,
    /// Writes x, logits, preds and attn.<layer> as safetensors.
    #[arg(long, value_name = "FILE")]
    save: Option<String>,
    /// Draws the first sequence's attention, one panel per layer and head.
    #[arg(long = "attention-png", value_name = "FILE")]
    png: Option<String>,
}

fn usize_of(j: &serde_json::Value, k: &str) -> Option<usize> {
    j.get(k)?.as_u64().map(|v| v as usize)
}

/// The model's sizes: from hyper-parameters if the file has them, else from the shapes.
fn hparams(
    sd: &StateDict,
    json: Option<serde_json::Value>,
) -> wgnn::Result<(Hparams, &'static str)> {
    let base = Hparams::reverse_task();
    if let Some(j) = json {
        let get = |k: &str| {
            usize_of(&j, k)
                .ok_or_else(|| wgnn::Error::InvalidArgument(format!("hyper-parameter {k} missing")))
        };
        return Ok((
            Hparams {
                input_dim: get("input_dim")?,
                model_dim: get("model_dim")?,
                num_classes: get("num_classes")?,
                num_heads: get("num_heads")?,
                num_layers: get("num_layers")?,
                ..base
            },
            "from the checkpoint's hyper-parameters",
        ));
    }
    let shape = |k: &str| -> wgnn::Result<Vec<usize>> {
        sd.get(k).map(|t| t.shape().to_vec()).ok_or_else(|| {
            wgnn::Error::InvalidArgument(format!(
                "the checkpoint has no {k}, so it is not the tutorial's TransformerPredictor"
            ))
        })
    };
    let input = shape("input_net.1.weight")?;
    let output = shape("output_net.4.weight")?;
    let layers = (0..)
        .take_while(|i| {
            sd.get(&format!("transformer.layers.{i}.norm1.weight"))
                .is_some()
        })
        .count();
    Ok((
        Hparams {
            input_dim: input[1],
            model_dim: input[0],
            num_classes: output[0],
            num_heads: 1,
            num_layers: layers,
            ..base
        },
        "from the tensor shapes (one head assumed: heads cannot be read off shapes)",
    ))
}

fn load(path: &str) -> wgnn::Result<(StateDict, Option<serde_json::Value>)> {
    let format = detect_file(path)?;
    if format == FileFormat::Safetensors {
        let sd = StateDict::load(path)?;
        let json = sd
            .metadata()
            .get("hparams")
            .and_then(|h| serde_json::from_str(h).ok());
        return Ok((sd, json));
    }
    let ck = Checkpoint::load(path)?;
    let json = ck.root.get("hyper_parameters").map(|h| h.to_json());
    Ok((ck.state_dict(None)?, json))
}

/// Random sequences of `SEQ` tokens below `classes` (xorshift from the seed).
fn random_inputs(n: usize, classes: usize, seed: u64) -> Vec<i64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
    (0..n * SEQ)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 33) % classes as u64) as i64
        })
        .collect()
}

fn attention_png(path: &str, tokens: &[i64], maps: &[Vec<f32>], heads: usize) -> wgnn::Result<()> {
    let s = tokens.len();
    let panel = MARGIN + s * CELL;
    let layers = maps.len();
    let mut img = Canvas::new(GAP + heads * (panel + GAP), GAP + layers * (panel + GAP));
    for (l, map) in maps.iter().enumerate() {
        for hd in 0..heads {
            let (x0, y0) = (GAP + hd * (panel + GAP), GAP + l * (panel + GAP));
            for q in 0..s {
                for k in 0..s {
                    let c = color(map[(hd * s + q) * s + k]);
                    img.fill(
                        x0 + MARGIN + k * CELL,
                        y0 + MARGIN + q * CELL,
                        CELL,
                        CELL,
                        c,
                    );
                }
            }
            // Token digits (2× scale) along the top (keys) and the left (queries).
            for (i, &t) in tokens.iter().enumerate() {
                let d = t.rem_euclid(10).to_string();
                img.text(x0 + MARGIN + i * CELL + 5, y0 + 1, &d, 2, [0, 0, 0]);
                img.text(x0 + 2, y0 + MARGIN + i * CELL + 3, &d, 2, [0, 0, 0]);
            }
        }
    }
    img.save_png(path)
}

fn run(a: Args) -> wgnn::Result<()> {
    let device = a.device.open()?;
    println!(
        "device: {}",
        device
            .as_gpu()
            .map_or_else(|| "cpu (multi-threaded)".to_string(), |g| g.adapter())
    );
    let (sd, json) = load(&a.checkpoint)?;
    let (hp, source) = hparams(&sd, json)?;
    println!(
        "checkpoint: {} ({} tensors)\nhyper-parameters {source}: input_dim {}, model_dim {}, num_classes {}, num_heads {}, num_layers {}",
        a.checkpoint,
        sd.len(),
        hp.input_dim,
        hp.model_dim,
        hp.num_classes,
        hp.num_heads,
        hp.num_layers
    );
    let mut model = TransformerPredictor::new(&hp)?;
    model.load_state_dict(&sd, true).map_err(|e| {
        wgnn::Error::InvalidArgument(format!(
            "the checkpoint does not fit the model: {}",
            e.to_string().replace('\n', " ")
        ))
    })?;
    model.to_device(&device)?;
    model.eval();
    println!("\n{}", model.summary());
    println!(
        "positional_encoding.pe is a non-persistent buffer: wgnn built it on {device}; the checkpoint did not contain it\n"
    );

    let (x, seq): (Vec<i64>, usize) = match &a.inputs {
        Some(path) => {
            let f = StateDict::load(path)?;
            let t = f
                .get("x")
                .ok_or_else(|| wgnn::Error::InvalidArgument(format!("{path} has no tensor x")))?;
            if t.dtype() != DType::I64 || t.shape().len() != 2 || t.shape()[1] == 0 {
                return Err(wgnn::Error::InvalidArgument(format!(
                    "{path}: x must be int64 [batch, seq], got {} {:?}",
                    t.dtype().name(),
                    t.shape()
                )));
            }
            let v = t.to_vec::<i64>()?;
            if let Some(bad) = v.iter().find(|&&v| v < 0 || v >= hp.input_dim as i64) {
                return Err(wgnn::Error::InvalidArgument(format!(
                    "{path}: token {bad} is outside 0..{}",
                    hp.input_dim
                )));
            }
            (v, t.shape()[1])
        }
        None => (
            random_inputs(a.samples, hp.input_dim.min(hp.num_classes), a.seed),
            SEQ,
        ),
    };
    let n = x.len() / seq;
    let (mut preds, mut logits_all) = (Vec::with_capacity(n * seq), Vec::new());
    let mut maps_all: Vec<Vec<f32>> = vec![Vec::new(); hp.num_layers];
    let mut times = Vec::new();
    for b0 in (0..n).step_by(BATCH) {
        let nb = BATCH.min(n - b0);
        let xb = Tensor::from_slice(&x[b0 * seq..(b0 + nb) * seq], &[nb, seq])?.to(&device)?;
        let t = Instant::now();
        // Inference: no graph to record (`with torch.no_grad():`).
        let logits = wgnn::autograd::no_grad(|| {
            model.forward(&ops::one_hot(&xb, hp.input_dim)?, None, true)
        })?;
        let p = ops::argmax(&logits)?.to_vec::<i64>()?;
        times.push(t.elapsed().as_secs_f64());
        preds.extend(p);
        if a.save.is_some() {
            logits_all.extend(logits.to_vec::<f32>()?);
        }
        if a.save.is_some() || (a.png.is_some() && b0 == 0) {
            let maps = model.get_attention_maps(&ops::one_hot(&xb, hp.input_dim)?, None, true)?;
            for (l, m) in maps.iter().enumerate() {
                maps_all[l].extend(m.to_vec::<f32>()?);
            }
        }
    }
    let show = |v: &[i64]| {
        v.iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    for i in 0..n.min(3) {
        println!(
            "{}  ->  {}",
            show(&x[i * seq..(i + 1) * seq]),
            show(&preds[i * seq..(i + 1) * seq])
        );
    }
    times.sort_by(f64::total_cmp);
    println!(
        "time per batch of up to {BATCH}: {:.2} ms (median of {})",
        times[times.len() / 2] * 1e3,
        times.len()
    );
    if let Some(path) = &a.save {
        let mut out = StateDict::new();
        out.insert("x", Tensor::from_slice(&x, &[n, seq])?);
        out.insert(
            "logits",
            Tensor::from_slice(&logits_all, &[n, seq, hp.num_classes])?,
        );
        out.insert("preds", Tensor::from_slice(&preds, &[n, seq])?);
        for (l, m) in maps_all.iter().enumerate() {
            out.insert(
                format!("attn.{l}"),
                Tensor::from_slice(m, &[n, hp.num_heads, seq, seq])?,
            );
        }
        out.save(path)?;
        println!("saved x, logits, preds and attention maps to {path}");
    }
    if let Some(path) = &a.png {
        let first: Vec<Vec<f32>> = maps_all
            .iter()
            .map(|m| m[..hp.num_heads * seq * seq].to_vec())
            .collect();
        attention_png(path, &x[..seq], &first, hp.num_heads)?;
        println!("wrote the first sequence's attention maps to {path}");
    }
    println!("{}", wgnn_ports::reversal_accuracy(&x, &preds, seq));
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
