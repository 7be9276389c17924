//! A tool for your own safetensors files.
//!
//! cargo run --release --example checkpoint -- inspect FILE
//! cargo run --release --example checkpoint -- convert IN OUT --dtype f32|f16|bf16

use wgnn::{DType, StateDict};

fn human(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn inspect(path: &str) -> wgnn::Result<()> {
    let sd = StateDict::load(path)?;
    println!("{path}: {} tensor(s)", sd.len());
    let w = sd.keys().iter().map(|k| k.len()).max().unwrap_or(3).max(3);
    println!(
        "{:<w$}  {:<8}  {:<18}  {:>10}  kind",
        "key", "dtype", "shape", "bytes"
    );
    let (mut total, mut elems) = (0, 0);
    for (k, t) in sd.iter() {
        total += t.nbytes();
        elems += t.numel();
        let kind = sd
            .kind(k)
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{k:<w$}  {:<8}  {:<18}  {:>10}  {kind}",
            t.dtype().name(),
            format!("{:?}", t.shape()),
            t.nbytes()
        );
    }
    println!("total: {elems} elements, {} ({total} bytes)", human(total));
    for (k, v) in sd.metadata() {
        println!("metadata: {k} = {v}");
    }
    Ok(())
}

fn convert(input: &str, output: &str, dtype: &str) -> wgnn::Result<()> {
    let dtype = match DType::parse(dtype) {
        Some(d) if d.is_float() => d,
        _ => {
            return Err(wgnn::Error::InvalidArgument(format!(
                "--dtype takes f32, f16 or bf16, got {dtype:?}"
            )))
        }
    };
    let sd = StateDict::load(input)?.to_float_dtype(dtype)?;
    sd.save(output)?; // atomic: a failure leaves no partial OUT
    println!(
        "wrote {output}: {} tensor(s), floating ones as {dtype}, integers kept",
        sd.len()
    );
    Ok(())
}

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: checkpoint inspect FILE | checkpoint convert IN OUT --dtype f32|f16|bf16";
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["inspect", file] => inspect(file),
        ["convert", input, output, "--dtype", d] => convert(input, output, d),
        ["-h"] | ["--help"] => {
            println!("{usage}");
            Ok(())
        }
        _ => {
            eprintln!("error: {usage}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}
