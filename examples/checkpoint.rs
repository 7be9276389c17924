//! A tool for the checkpoint files PyTorch users have: safetensors, `torch.save` `.pt`/`.pth`
//! (zip or legacy) and Lightning `.ckpt`. Nothing in a file is run; a file whose pickle names
//! anything outside the tensor allow-list is refused.
//!
//! cargo run --release --example checkpoint -- inspect FILE [--allow-global NAME]...
//! cargo run --release --example checkpoint -- convert IN OUT [--dtype f32|f16|bf16] [--key PATH]
//!     [--allow-global NAME]...
//!
//! `--allow-global module.Name` reads that class (a Lightning `AttributeDict`, a project's
//! config object among the hyper-parameters) as inert data instead of refusing the file, as
//! PyTorch's `torch.serialization.add_safe_globals` does; nothing is ever called.

use clap::{Parser, Subcommand, ValueEnum};
use wgnn::torch::{detect_file, Checkpoint, FileFormat, LoadOptions, PyValue};
use wgnn::{DType, StateDict};

/// Inspects and converts PyTorch checkpoints (safetensors, torch.save .pt/.pth, Lightning
/// .ckpt) without running anything in them.
#[derive(Parser, Debug)]
#[command(name = "checkpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Shows the file: keys, dtypes, shapes and bytes (safetensors), or the whole tree with
    /// hyper_parameters in full (torch.save files).
    Inspect {
        /// The checkpoint.
        file: String,
        /// Reads this global (module.Name) as inert data instead of refusing the file.
        #[arg(long = "allow-global", value_name = "NAME")]
        allow_global: Vec<String>,
    },
    /// Writes the weights as safetensors (atomically: a failure leaves no output file).
    Convert {
        /// The checkpoint to read.
        input: String,
        /// The safetensors file to write.
        output: String,
        /// Converts floating tensors to this dtype (integers are kept).
        #[arg(long, value_enum)]
        dtype: Option<FloatArg>,
        /// The dotted path of the dict of tensors to take (default: the whole file, or its
        /// state_dict / model / module entry).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
        /// Reads this global (module.Name) as inert data instead of refusing the file.
        #[arg(long = "allow-global", value_name = "NAME")]
        allow_global: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FloatArg {
    F32,
    F16,
    Bf16,
}

impl FloatArg {
    fn dtype(self) -> DType {
        match self {
            FloatArg::F32 => DType::F32,
            FloatArg::F16 => DType::F16,
            FloatArg::Bf16 => DType::BF16,
        }
    }
}

fn options(allow: &[String]) -> LoadOptions {
    LoadOptions {
        allow_globals: allow.to_vec(),
    }
}

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

fn inspect(path: &str, opts: &LoadOptions) -> wgnn::Result<()> {
    let format = detect_file(path)?;
    if format == FileFormat::Safetensors {
        return inspect_safetensors(path);
    }
    let ck = Checkpoint::load_with(path, opts)?;
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

fn convert(
    input: &str,
    output: &str,
    dtype: Option<DType>,
    key: Option<&str>,
    opts: &LoadOptions,
) -> wgnn::Result<()> {
    let mut sd = match detect_file(input)? {
        FileFormat::Safetensors if key.is_some() => {
            return Err(wgnn::Error::InvalidArgument(
                "--key applies to torch.save files only".into(),
            ))
        }
        FileFormat::Safetensors => StateDict::load(input)?,
        // A Lightning checkpoint keeps its weights under `state_dict`; the default finds them.
        _ => Checkpoint::load_with(input, opts)?
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
    let result = match Cli::parse().command {
        Command::Inspect { file, allow_global } => inspect(&file, &options(&allow_global)),
        Command::Convert {
            input,
            output,
            dtype,
            key,
            allow_global,
        } => convert(
            &input,
            &output,
            dtype.map(FloatArg::dtype),
            key.as_deref(),
            &options(&allow_global),
        ),
    };
    if let Err(e) = result {
        eprintln!("error: {}", e.to_string().replace('\n', " "));
        std::process::exit(1);
    }
}
