//! The main job: build `PositionalEncoding(d_model, max_len)` on a GPU (its table generated there
//! by a shader), run a forward pass, check it against the CPU path and the reference, and show
//! what kind of tensor the table is.
//!
//! cargo run --release --example positional_encoding -- [--d-model N] [--max-len N] [--batch N]
//!     [--seq N] [--device cpu|gpu|software] [--save FILE] [--png FILE]

#[path = "common/mod.rs"]
mod common;

use std::time::Instant;

use clap::Parser;
use common::{color, Canvas, DeviceArg};

use wgnn::ops::{div_term, reference_value};
use wgnn::{Device, ModuleExt, PositionalEncoding, StateDict, Tensor};

/// The main job: PositionalEncoding(d_model, max_len) built on a GPU by a shader, a forward
/// pass checked bit for bit against the CPU path, the table checked against the correctly
/// rounded reference, and what kind of tensor the table is.
#[derive(Parser, Debug)]
#[command(name = "positional_encoding")]
struct Args {
    /// Hidden size of the table.
    #[arg(long, value_name = "N", default_value_t = 512)]
    d_model: usize,
    /// Positions in the table.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    max_len: usize,
    /// Batch of the forward pass's input.
    #[arg(long, value_name = "N", default_value_t = 8)]
    batch: usize,
    /// Sequence length of the forward pass's input (at most --max-len).
    #[arg(long, value_name = "N", default_value_t = 256)]
    seq: usize,
    /// Where the table is built and the forward runs.
    #[arg(long, value_enum, default_value = "gpu")]
    device: DeviceArg,
    /// Writes the table as safetensors (key "pe", [max_len, d_model], float32).
    #[arg(long, value_name = "FILE")]
    save: Option<String>,
    /// Draws the table as a heat map (position across, hidden dimension down), as the
    /// tutorial's figure, with a few of its sine and cosine columns as curves below.
    #[arg(long, value_name = "FILE")]
    png: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(s: f64) -> String {
    format!("{:.3} ms", s * 1e3)
}

fn run(a: Args) -> wgnn::Result<()> {
    let device = a.device.open()?;
    match &device {
        Device::Gpu(g) => println!(
            "adapter: {}\n  chosen because: {}",
            g.adapter(),
            g.choice_reason()
        ),
        Device::Cpu => println!("device: cpu (multi-threaded host path)"),
    }

    let t0 = Instant::now();
    let pe = PositionalEncoding::on(a.d_model, a.max_len, &device)?;
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
    let cpu_pe = PositionalEncoding::on(a.d_model, a.max_len, &Device::Cpu)?;
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
    if let Some(path) = &a.png {
        table_png(path, &table, a.max_len, a.d_model)?;
        println!("drew the table to {path}");
    }
    if let Some(path) = a.save {
        let mut sd = StateDict::new();
        sd.insert("pe", pe.pe.tensor().reshape([a.max_len, a.d_model])?);
        sd.save(&path)?;
        println!(
            "saved the table to {path} (key \"pe\", [{}, {}], float32)",
            a.max_len, a.d_model
        );
    }
    Ok(())
}

/// A tick step for an axis of `n` units: 1, 2 or 5 times a power of ten, at most ~8 ticks.
fn tick_step(n: usize) -> usize {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if n / (step * m) <= 8 {
                return step * m;
            }
        }
        step *= 10;
    }
}

/// Draws the table as the tutorial's figure does: a heat map of `pe[pos, i]` with the position
/// across and the hidden dimension down (the first 1024 positions of a longer table, each
/// value from -1 to 1 on the same colour ramp as the attention maps), and below it the first
/// four hidden dimensions over the first 16 positions as curves.
fn table_png(path: &str, table: &[f32], max_len: usize, d_model: usize) -> wgnn::Result<()> {
    const FONT: usize = 2; // each font pixel is 2×2: characters are 8 px apart, 10 px tall
    let ink = [0u8, 0, 0];
    let grey = [150u8, 150, 150];
    let shown = max_len.min(1024);
    let dims = d_model.min(1024);
    let sx = (800 / shown.max(1)).max(1);
    let sy = (400 / dims.max(1)).max(1);
    let (left, top) = (80, 40);
    let (w, h) = (shown * sx, dims * sy);
    let bar_x = left + w + 20;
    let curves_top = top + h + 70;
    let curve_h = 110;
    let width = (bar_x + 60).max(left + 4 * 170);
    let mut img = Canvas::new(width, curves_top + curve_h + 40);
    let value = |pos: usize, i: usize| table[pos * d_model + i];
    // The heat map.
    for pos in 0..shown {
        for i in 0..dims {
            let c = color((value(pos, i) + 1.0) / 2.0);
            img.fill(left + pos * sx, top + i * sy, sx, sy, c);
        }
    }
    let title = if shown < max_len {
        format!("POSITIONAL ENCODING, FIRST {shown} OF {max_len} POSITIONS, D_MODEL {d_model}")
    } else {
        format!("POSITIONAL ENCODING, {max_len} POSITIONS, D_MODEL {d_model}")
    };
    img.text(left, 12, &title, FONT, ink);
    // Axes: ticks and labels.
    let step = tick_step(shown);
    for pos in (0..shown).step_by(step) {
        let x = left + pos * sx + sx / 2;
        img.fill(x, top + h, 1, 6, ink);
        let label = pos.to_string();
        img.text(
            x.saturating_sub(Canvas::text_width(&label, FONT) / 2),
            top + h + 9,
            &label,
            FONT,
            ink,
        );
    }
    let x_title = "POSITION IN SEQUENCE";
    img.text(
        left + w / 2 - Canvas::text_width(x_title, FONT).min(w) / 2,
        top + h + 28,
        x_title,
        FONT,
        ink,
    );
    let step = tick_step(dims);
    for i in (0..dims).step_by(step) {
        let y = top + i * sy + sy / 2;
        img.fill(left - 6, y, 6, 1, ink);
        let label = i.to_string();
        img.text(
            left - 9 - Canvas::text_width(&label, FONT),
            y.saturating_sub(5),
            &label,
            FONT,
            ink,
        );
    }
    img.text_down(8, top, "HIDDEN DIMENSION", FONT, ink);
    // The colour bar.
    for y in 0..h {
        let v = 1.0 - 2.0 * y as f32 / (h.max(2) - 1) as f32;
        img.fill(bar_x, top + y, 16, 1, color((v + 1.0) / 2.0));
    }
    img.text(bar_x + 20, top, "1", FONT, ink);
    img.text(bar_x + 20, top + h / 2 - 5, "0", FONT, ink);
    img.text(bar_x + 20, top + h - 10, "-1", FONT, ink);
    // Four hidden dimensions over the first 16 positions, as the tutorial plots them.
    let n = max_len.min(16);
    for i in 0..d_model.min(4) {
        let (x0, y0, pw) = (left + i * 170, curves_top, 150);
        let name = format!("DIM {i} ({})", if i % 2 == 0 { "SIN" } else { "COS" });
        img.text(x0, y0 - 16, &name, FONT, ink);
        img.fill(x0, y0, 1, curve_h, grey);
        img.fill(x0, y0 + curve_h / 2, pw, 1, grey);
        let at = |pos: usize| -> (i64, i64) {
            let x = x0 as i64 + 4 + (pos * (pw - 8) / (n.max(2) - 1)) as i64;
            let y = y0 as i64 + ((1.0 - value(pos, i)) / 2.0 * (curve_h - 1) as f32) as i64;
            (x, y)
        };
        // matplotlib's first four colours, as the tutorial's curves.
        let c = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]][i];
        for pos in 1..n {
            let ((xa, ya), (xb, yb)) = (at(pos - 1), at(pos));
            let steps = (xb - xa).abs().max((yb - ya).abs()).max(1);
            for t in 0..=steps {
                let x = xa + (xb - xa) * t / steps;
                let y = ya + (yb - ya) * t / steps;
                img.fill(x as usize, y as usize, 2, 2, c);
            }
        }
        for pos in 0..n {
            let (x, y) = at(pos);
            img.fill(x as usize - 3, y as usize - 3, 7, 7, ink);
            img.fill(x as usize - 2, y as usize - 2, 5, 5, c);
        }
        img.text(x0 + 4, y0 + curve_h + 4, "0", FONT, ink);
        let last = (n - 1).to_string();
        img.text(
            x0 + pw - 4 - Canvas::text_width(&last, FONT),
            y0 + curve_h + 4,
            &last,
            FONT,
            ink,
        );
    }
    img.save_png(path)
}

fn main() {
    env_logger::init();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}
