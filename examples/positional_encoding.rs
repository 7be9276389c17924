//! The main job: build `PositionalEncoding(d_model, max_len)` on a GPU (its table generated there
//! by a shader), run a forward pass, check it against the CPU path and the reference, and show
//! what kind of tensor the table is.
//!
//! cargo run --release --example positional_encoding -- [--d-model N] [--max-len N] [--batch N]
//!     [--seq N] [--device cpu|gpu|software] [--save FILE]

use std::time::Instant;

use wgnn::ops::{div_term, reference_value};
use wgnn::{Device, ModuleExt, PositionalEncoding, StateDict, Tensor};

struct Args {
    d_model: usize,
    max_len: usize,
    batch: usize,
    seq: usize,
    device: String,
    save: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        d_model: 512,
        max_len: 5000,
        batch: 8,
        seq: 256,
        device: "gpu".into(),
        save: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let mut num = |name: &str| -> Result<usize, String> {
            let v = value()?;
            v.parse::<usize>()
                .map_err(|_| format!("{name} takes a whole number, got {v:?}"))
        };
        match flag.as_str() {
            "--d-model" => a.d_model = num("--d-model")?,
            "--max-len" => a.max_len = num("--max-len")?,
            "--batch" => a.batch = num("--batch")?,
            "--seq" => a.seq = num("--seq")?,
            "--device" => {
                a.device = it
                    .next()
                    .ok_or("--device needs a value: cpu, gpu or software")?;
                if !["cpu", "gpu", "software"].contains(&a.device.as_str()) {
                    return Err(format!(
                        "--device takes cpu, gpu or software, got {:?}",
                        a.device
                    ));
                }
            }
            "--save" => a.save = Some(it.next().ok_or("--save needs a file name")?),
            "-h" | "--help" => {
                println!("usage: positional_encoding [--d-model N] [--max-len N] [--batch N] [--seq N] [--device cpu|gpu|software] [--save FILE]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    Ok(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(s: f64) -> String {
    format!("{:.3} ms", s * 1e3)
}

fn run(a: Args) -> wgnn::Result<()> {
    let device = match a.device.as_str() {
        "cpu" => Device::Cpu,
        "software" => Device::software()?,
        _ => Device::gpu()?,
    };
    match &device {
        Device::Gpu(g) => println!(
            "adapter: {}\n  chosen because: {}",
            g.adapter(),
            g.choice_reason()
        ),
        Device::Cpu => println!("device: cpu (multi-threaded host path)"),
    }

    let t0 = Instant::now();
    let pe = PositionalEncoding::new(a.d_model, a.max_len, &device)?;
    if let Device::Gpu(g) = &device {
        g.synchronize()?;
    }
    let build = t0.elapsed().as_secs_f64();
    println!(
        "\nPositionalEncoding(d_model={}, max_len={}) built in {}",
        a.d_model,
        a.max_len,
        ms(build)
    );
    println!("{}\n", pe.summary());
    println!(
        "state_dict keys: {:?}  <- the table is a non-persistent buffer: it moves with the module, it is never saved",
        pe.state_dict()?.keys()
    );

    // Accuracy of the table against the reference (host, f64, rounded once).
    let table = pe.pe.tensor().to_vec::<f32>()?;
    let div = div_term(a.d_model)?;
    let (mut max_err, mut differ) = (0f32, 0usize);
    for (i, v) in table.iter().enumerate() {
        let r = reference_value(&div, i / a.d_model, i % a.d_model).unwrap_or(f32::NAN);
        max_err = max_err.max((v - r).abs());
        differ += usize::from(v.to_bits() != r.to_bits());
    }
    println!(
        "\naccuracy: max |table - reference| = {max_err:.3e} over {} entries; {differ} differ in any bit",
        table.len()
    );

    // Forward pass, checked against the CPU path.
    let n = a.batch * a.seq * a.d_model;
    let xs: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x_cpu = Tensor::from_slice(&xs, &[a.batch, a.seq, a.d_model])?;
    let t0 = Instant::now();
    let x = x_cpu.to(&device)?;
    if let Device::Gpu(g) = &device {
        g.synchronize()?;
    }
    let upload = t0.elapsed().as_secs_f64();
    let mut y = pe.forward(&x)?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let t0 = Instant::now();
        y = pe.forward(&x)?;
        if let Device::Gpu(g) = &device {
            g.synchronize()?;
        }
        times.push(t0.elapsed().as_secs_f64());
    }
    let fwd = median(times);
    let t0 = Instant::now();
    let got = y.to_vec::<f32>()?;
    let readback = t0.elapsed().as_secs_f64();
    let cpu_pe = PositionalEncoding::new(a.d_model, a.max_len, &Device::Cpu)?;
    let want = cpu_pe.forward(&x_cpu)?.to_vec::<f32>()?;
    let same = got
        .iter()
        .zip(&want)
        .filter(|(p, q)| p.to_bits() == q.to_bits())
        .count();
    println!(
        "forward: x {:?} + pe[:, :{}] on {device}: {same} of {n} outputs bit-identical to the CPU path",
        [a.batch, a.seq, a.d_model], a.seq
    );
    let bytes = (2 * n + a.seq * a.d_model) * 4;
    println!(
        "timings: table {} | upload x {} | forward {} (median of 7, {:.2} GB/s effective) | read back {}",
        ms(build),
        ms(upload),
        ms(fwd),
        bytes as f64 / fwd / 1e9,
        ms(readback)
    );
    if same != n {
        return Err(wgnn::Error::InvalidArgument(format!(
            "{} outputs differ between {device} and the CPU",
            n - same
        )));
    }
    if let Some(path) = a.save {
        let mut sd = StateDict::new();
        sd.insert("pe", pe.pe.tensor().reshape(&[a.max_len, a.d_model])?);
        sd.save(&path)?;
        println!(
            "saved the table to {path} (key \"pe\", [{}, {}], float32)",
            a.max_len, a.d_model
        );
    }
    Ok(())
}

fn main() {
    env_logger::init();
    let code = match parse() {
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
        Ok(a) => match run(a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}", e.to_string().replace('\n', " "));
                1
            }
        },
    };
    std::process::exit(code);
}
