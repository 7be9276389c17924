//! A tool for the checkpoint files PyTorch users have: safetensors, `torch.save` `.pt`/`.pth`
//! (zip or legacy) and Lightning `.ckpt`. Nothing in a file is run; a file whose pickle names
//! anything outside the tensor allow-list is refused.
//!
//! cargo run --release --example checkpoint -- inspect FILE
//! cargo run --release --example checkpoint -- convert IN OUT [--dtype f32|f16|bf16] [--key PATH]

use wgnn::torch::{detect_file, Checkpoint, FileFormat, PyValue};
use wgnn::{DType, StateDict};

const USAGE: &str = "usage: checkpoint inspect FILE | checkpoint convert IN OUT [--dtype f32|f16|bf16] [--key PATH]";

fn human(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

fn inspect_safetensors(path: &str) -> wgnn::Result<()> {
    let sd = StateDict::load(path)?;
    println!("{path}: safetensors, {} tensor(s)", sd.len());
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

fn key_text(k: &PyValue) -> String {
    match k {
        PyValue::Str(s) => s.clone(),
        other => other.summary(),
    }
}

/// The tree of a torch.save file: containers opened, long ones cut, tensors and values on one
/// line each, `hyper_parameters` in full.
fn tree(name: &str, v: &PyValue, indent: usize, out: &mut Vec<String>, stats: &mut (usize, usize)) {
    let pad = "  ".repeat(indent);
    let children: Option<Vec<(String, &PyValue)>> = match v {
        PyValue::Dict(items) => Some(items.iter().map(|(k, x)| (key_text(k), x)).collect()),
        PyValue::List(items) | PyValue::Tuple(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| (i.to_string(), x))
                .collect(),
        ),
        _ => None,
    };
    if let PyValue::Tensor(t) = v {
        stats.0 += 1;
        stats.1 += t.tensor.nbytes();
    }
    if name == "hyper_parameters" {
        let json = serde_json::to_string_pretty(&v.to_json()).unwrap_or_default();
        out.push(format!(
            "{pad}{name}: {}",
            json.replace('\n', &format!("\n{pad}"))
        ));
        return;
    }
    out.push(format!("{pad}{name}: {}", v.summary()));
    if let Some(children) = children {
        let all_scalars = children.iter().all(|(_, x)| {
            !matches!(
                x,
                PyValue::Dict(_) | PyValue::List(_) | PyValue::Tuple(_) | PyValue::Tensor(_)
            )
        });
        let shown = if all_scalars && children.len() > 8 {
            8
        } else {
            children.len()
        };
        for (k, x) in &children[..shown] {
            tree(k, x, indent + 1, out, stats);
        }
        if shown < children.len() {
            out.push(format!("{pad}  … {} more", children.len() - shown));
        }
    }
}

fn inspect(path: &str) -> wgnn::Result<()> {
    let format = detect_file(path)?;
    if format == FileFormat::Safetensors {
        return inspect_safetensors(path);
    }
    let ck = Checkpoint::load(path)?;
    let what = match format {
        FileFormat::TorchZip => "torch.save zip archive",
        _ => "legacy torch.save stream",
    };
    let mut lines = Vec::new();
    let mut stats = (0, 0);
    tree("(root)", &ck.root, 0, &mut lines, &mut stats);
    println!("{path}: {what}, {} tensor(s), {}", stats.0, human(stats.1));
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

fn convert(input: &str, output: &str, dtype: Option<&str>, key: Option<&str>) -> wgnn::Result<()> {
    let dtype = match dtype.map(DType::parse) {
        None => None,
        Some(Some(d)) if d.is_float() => Some(d),
        Some(_) => {
            return Err(wgnn::Error::InvalidArgument(format!(
                "--dtype takes f32, f16 or bf16, got {:?}",
                dtype.unwrap_or_default()
            )))
        }
    };
    let mut sd = match detect_file(input)? {
        FileFormat::Safetensors if key.is_some() => {
            return Err(wgnn::Error::InvalidArgument(
                "--key applies to torch.save files only".into(),
            ))
        }
        FileFormat::Safetensors => StateDict::load(input)?,
        // A Lightning checkpoint keeps its weights under `state_dict`; the default finds them.
        _ => Checkpoint::load(input)?
            .state_dict(key)
            .map_err(|e| match e {
                wgnn::Error::Format {
                    path: None,
                    message,
                } => wgnn::Error::Format {
                    path: Some(input.into()),
                    message,
                },
                e => e,
            })?,
    };
    if let Some(d) = dtype {
        sd = sd.to_float_dtype(d)?;
    }
    sd.save(output)?; // atomic: a failure leaves no partial OUT
    println!(
        "wrote {output}: {} tensor(s){}",
        sd.len(),
        dtype.map_or(String::new(), |d| format!(
            ", floating ones as {d}, integers kept"
        ))
    );
    Ok(())
}

fn main() {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let flag_error = |m: String| -> ! {
        eprintln!("error: {m}; {USAGE}");
        std::process::exit(2);
    };
    let result = match a.as_slice() {
        ["inspect", file] => inspect(file),
        ["convert", input, output, rest @ ..] => {
            let (mut dtype, mut key) = (None, None);
            let mut it = rest.iter();
            while let Some(f) = it.next() {
                let slot = match *f {
                    "--dtype" => &mut dtype,
                    "--key" => &mut key,
                    other => flag_error(format!("unknown flag {other:?}")),
                };
                *slot = Some(
                    *it.next()
                        .unwrap_or_else(|| flag_error(format!("{f} needs a value"))),
                );
            }
            convert(input, output, dtype, key)
        }
        ["-h"] | ["--help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => flag_error("bad arguments".into()),
    };
    if let Err(e) = result {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}
