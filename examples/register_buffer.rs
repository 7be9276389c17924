//! "What does `register_buffer` do, and how is it different from a parameter with
//! `requires_grad=False`?" — answered by running code.
//!
//! cargo run --release --example register_buffer

use wgnn::nn::BatchNorm1d;
use wgnn::optim::Adam;
use wgnn::{ops, Buffer, DType, Device, Forward, ModuleExt, Parameter, StateDict, Tensor};

/// One of each kind, plus a child with running statistics.
#[derive(wgnn::Module)]
struct Demo {
    trainable: Parameter,
    frozen: Parameter,
    running: Buffer,
    scratch: Buffer,
    bn: BatchNorm1d,
}
fn full(v: f32) -> wgnn::Result<Tensor> {
    Tensor::from_slice(&[v; 3], &[3])
}

impl Demo {
    fn new(fill: f32) -> wgnn::Result<Self> {
        Ok(Demo {
            trainable: Parameter::new(full(fill)?), // nn.Parameter(t)
            frozen: Parameter::frozen(full(fill + 1.0)?), // nn.Parameter(t, requires_grad=False)
            running: Buffer::new(full(fill + 2.0)?), // register_buffer("running", t)
            scratch: Buffer::non_persistent(full(fill + 3.0)?), // register_buffer("scratch", t, persistent=False)
            bn: BatchNorm1d::new(3)?, // running_mean / running_var / num_batches_tracked
        })
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "-"
    }
}

/// What `register_buffer` does, and how a buffer differs from a parameter with
/// requires_grad=False, answered by running code (on the GPU that WGPU_BACKEND picks).
#[derive(clap::Parser, Debug)]
#[command(name = "register_buffer")]
struct Args {}

fn main() -> wgnn::Result<()> {
    env_logger::init();
    <Args as clap::Parser>::parse();
    let mut m = Demo::new(1.0)?;
    println!("{}\n", m.repr());

    let before: Vec<(String, String)> = m
        .tensor_infos()
        .into_iter()
        .map(|i| (i.path, i.device.to_string()))
        .collect();
    let gpu = Device::gpu()?;
    println!(
        "moving the whole module to {gpu} ({}) in one upload...",
        gpu.as_gpu().map(|g| g.adapter()).unwrap_or_default()
    );
    m.to_device(&gpu)?;

    let params: Vec<String> = m.named_parameters().into_iter().map(|p| p.0).collect();
    let buffers: Vec<String> = m.named_buffers().into_iter().map(|b| b.0).collect();
    let sd = m.state_dict()?;
    println!(
        "\n{:<24} {:<22} {:>12} {:>9} {:>12} {:>8} {:>6}",
        "tensor", "kind", "parameters()", "buffers()", "state_dict()", "before", "after"
    );
    for (info, (_, dev_before)) in m.tensor_infos().iter().zip(&before) {
        println!(
            "{:<24} {:<22} {:>12} {:>9} {:>12} {:>8} {:>6}",
            info.path,
            info.kind.to_string(),
            yes(params.contains(&info.path)),
            yes(buffers.contains(&info.path)),
            yes(sd.get(&info.path).is_some()),
            dev_before,
            info.device.to_string()
        );
    }
    println!(
        "\nA frozen parameter is still a parameter: an optimizer sees it (and skips it), it is saved.\n\
         A buffer is never a parameter: no optimizer sees it. Persistent buffers are saved;\n\
         non-persistent ones are not. All of them move with the module."
    );

    // One training step on the GPU: what gets a gradient, and what does the optimizer change?
    let mut opt = Adam::new(&m, 0.1);
    let mut h = ops::broadcast_add(m.trainable.tensor(), m.frozen.tensor())?;
    h = ops::broadcast_add(&h, m.running.tensor())?;
    h = ops::broadcast_add(&h, m.scratch.tensor())?;
    let loss = ops::mean(&ops::relu(&h)?)?;
    loss.backward()?;
    let grad = |p: &Parameter| if p.grad().is_some() { "yes" } else { "none" };
    let (g_trainable, g_frozen) = (grad(&m.trainable), grad(&m.frozen));
    let value = |t: &Tensor| t.to_vec::<f32>();
    let before_step = [
        value(m.trainable.tensor())?,
        value(m.frozen.tensor())?,
        value(m.running.tensor())?,
        value(m.scratch.tensor())?,
    ];
    opt.step(&mut m)?;
    let after_step = [
        value(m.trainable.tensor())?,
        value(m.frozen.tensor())?,
        value(m.running.tensor())?,
        value(m.scratch.tensor())?,
    ];
    println!("
one training step on {gpu}: loss = mean(relu(trainable + frozen + running + scratch)), backward, Adam.step:");
    let rows = [
        ("trainable", g_trainable, "Adam stepped it"),
        ("frozen", g_frozen, "handed to Adam, skipped: no gradient"),
        (
            "running",
            "none",
            "buffers are never handed to an optimizer",
        ),
        (
            "scratch",
            "none",
            "buffers are never handed to an optimizer",
        ),
    ];
    for (i, (name, g, why)) in rows.iter().enumerate() {
        let changed = before_step[i] != after_step[i];
        println!(
            "  {name:<10} gradient: {g:<5} changed by the step: {:<4} ({why})",
            if changed { "yes" } else { "no" }
        );
    }

    // The classic buffer that forward changes and no optimizer touches: BatchNorm's running
    // statistics, updated on the module's device (no read-back) in training mode only.
    println!(
        "\nBatchNorm1d's buffers change in forward, on {gpu}, in training mode (the default):"
    );
    let show = |m: &Demo, what: &str| -> wgnn::Result<()> {
        println!(
            "  {what:<28} running_mean {:<32} running_var {:<32} num_batches_tracked {:?}",
            format!("{:.3?}", m.bn.running_mean.tensor().to_vec::<f32>()?),
            format!("{:.3?}", m.bn.running_var.tensor().to_vec::<f32>()?),
            m.bn.num_batches_tracked.tensor().to_vec::<i64>()?
        );
        Ok(())
    };
    show(&m, "before")?;
    for step in 1..=3 {
        let v: Vec<f32> = (0..12).map(|i| (i * step) as f32 * 0.5).collect();
        let x = Tensor::from_slice(&v, &[4, 3])?.to(&gpu)?;
        m.bn.forward(&x)?;
        show(&m, &format!("after train forward {step}"))?;
    }
    m.eval();
    let x = Tensor::from_slice(&[5f32; 12], &[4, 3])?.to(&gpu)?;
    m.bn.forward(&x)?;
    show(&m, "after an eval forward")?;
    println!("  (eval() uses the running statistics and leaves them alone)");
    let sd = m.state_dict()?;

    let path = std::env::temp_dir().join(format!(
        "wgnn-register-buffer-{}.safetensors",
        std::process::id()
    ));
    sd.save(&path)?;
    let file = StateDict::load(&path)?;
    println!(
        "\nsaved {} keys to {}: {:?}",
        file.len(),
        path.display(),
        file.keys()
    );
    let mut fresh = Demo::new(10.0)?;
    fresh.load_state_dict(&file, true)?;
    println!("loaded them into a fresh Demo (built with other values):");
    for info in fresh.tensor_infos() {
        let t = if info.kind.is_parameter() {
            fresh.get_parameter(&info.path)?.tensor()
        } else {
            fresh.get_buffer(&info.path)?.tensor()
        };
        let value = match t.dtype() {
            DType::F32 => format!("{:?}", t.to_vec::<f32>()?),
            DType::I64 => format!("{:?}", t.to_vec::<i64>()?),
            _ => t.to_string(),
        };
        let came = if file.get(&info.path).is_some() {
            "came back from the file"
        } else {
            "NOT in the file: keeps the fresh module's own value"
        };
        println!("  {:<24} = {value:<18} {came}", info.path);
    }
    std::fs::remove_file(&path).ok();
    Ok(())
}
