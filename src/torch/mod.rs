//! PyTorch's own checkpoint files, read without PyTorch and without running anything in them:
//! `torch.save` zip archives (`.pt`, `.pth`, Lightning `.ckpt`) and the legacy pre-1.6 stream.
//! The pickle inside is read by a reader that only calls an allow-list of globals (see
//! [`pickle`](self)), tensors are materialised from their storages (views, offsets, `expand`ed
//! strides and shared storages included, every index checked against its storage), and the
//! rest of the file — hyper-parameters, epochs, optimizer state — is a [`PyValue`] tree.

mod de;
pub use de::DeError;
mod pickle;

use std::io::Read;
use std::path::Path;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::state_dict::StateDict;
use crate::tensor::{HostBytes, Tensor};
use pickle::{Id, Node};

/// What a file is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// safetensors.
    Safetensors,
    /// `torch.save` since PyTorch 1.6: a zip archive.
    TorchZip,
    /// `torch.save(..., _use_new_zipfile_serialization=False)` and PyTorch < 1.6.
    TorchLegacy,
}

/// The magic number that opens a legacy `torch.save` stream (as a pickled int).
const LEGACY_MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

/// Detects the format from the first bytes, or says what the file looks like.
pub fn detect(bytes: &[u8]) -> Result<FileFormat> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(FileFormat::TorchZip);
    }
    if bytes.starts_with(&LEGACY_MAGIC) {
        return Ok(FileFormat::TorchLegacy);
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return Ok(FileFormat::Safetensors);
    }
    Err(fmt_err(
        if bytes.len() > 262 && &bytes[257..262] == b"ustar" {
            "a tar archive: the torch.save format before PyTorch 0.4 is not supported"
        } else if bytes.first() == Some(&0x80) {
            "a bare pickle with no torch.save container (no storages to read tensors from)"
        } else {
            "not a safetensors file, a torch.save zip archive or a legacy torch.save stream"
        },
    ))
}

/// The format of the file at `path`, from its first bytes (see [`detect`]).
pub fn detect_file(path: impl AsRef<Path>) -> Result<FileFormat> {
    let path = path.as_ref();
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .and_then(|f| f.take(512).read_to_end(&mut head))
        .map_err(|e| Error::io("reading", path, e))?;
    detect(&head).map_err(|e| e.with_path(path))
}

/// A tensor of a checkpoint, with the flags PyTorch saved.
#[derive(Clone, Debug)]
pub struct TorchTensor {
    /// The values, contiguous, on the CPU.
    pub tensor: Tensor,
    /// Saved as an `nn.Parameter`.
    pub is_parameter: bool,
    /// `requires_grad` as saved.
    pub requires_grad: bool,
}

/// A value of a checkpoint: what the pickle holds, with tensors materialised.
#[derive(Clone, Debug)]
pub enum PyValue {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int` (up to 128 bits).
    Int(i128),
    /// `float` (numpy float scalars too).
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `list`.
    List(Vec<PyValue>),
    /// `tuple` (`torch.Size` too).
    Tuple(Vec<PyValue>),
    /// `set` / `frozenset`, in the file's order.
    Set(Vec<PyValue>),
    /// `complex`: real and imaginary parts.
    Complex(f64, f64),
    /// `dict` / `OrderedDict`, in order.
    Dict(Vec<(PyValue, PyValue)>),
    /// A tensor or parameter.
    Tensor(Box<TorchTensor>),
    /// A class or function the file names, read only because [`LoadOptions`] allowed it:
    /// its dotted name (`"torch.nn.modules.activation.GELU"`). Never called.
    Class(String),
    /// An instance of an allowed class that is not a dict or list subclass (those read as
    /// [`PyValue::Dict`] / [`PyValue::List`]): what the pickle gives to build it. Nothing of
    /// the class runs.
    Object {
        /// Its class's dotted name.
        class: String,
        /// The arguments the pickle passes to the class (`__reduce__`'s args).
        args: Vec<PyValue>,
        /// The state the pickle sets on it (`__setstate__` / `__dict__`), if any.
        state: Option<Box<PyValue>>,
    },
}

/// How to read a `torch.save` file. By default only tensor data is read and any other global
/// the pickle names refuses the file, as `torch.load(weights_only=True)` does. Like PyTorch's
/// `torch.serialization.add_safe_globals`, [`allow_global`](LoadOptions::allow_global) names
/// more — a Lightning `AttributeDict`, a project's config class — and they are read as inert
/// values, never called: a dict subclass as a [`PyValue::Dict`], a list subclass as a
/// [`PyValue::List`], anything else as a [`PyValue::Object`] (or a [`PyValue::Class`] where
/// the file names the class itself).
///
/// ```
/// use wgnn::torch::{Checkpoint, LoadOptions};
/// let opts = LoadOptions::default().allow_global("pytorch_lightning.utilities.parsing.AttributeDict");
/// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile/attribute_dict_hparams.ckpt");
/// let ck = Checkpoint::load_with(path, &opts)?;
/// assert!(ck.root.at("hyper_parameters.model_dim").is_some());
/// assert!(Checkpoint::load(path).is_err()); // refused without the opt-in
/// # Ok::<(), wgnn::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Dotted names (`module.Name`) of the globals read as inert values.
    pub allow_globals: Vec<String>,
}

impl LoadOptions {
    /// Also accepts the global `dotted` (`"module.Name"`, as the refusal message spells it).
    pub fn allow_global(mut self, dotted: impl Into<String>) -> Self {
        self.allow_globals.push(dotted.into());
        self
    }
}

impl PyValue {
    /// The entry of a dict under string key `key`.
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        match self {
            PyValue::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, PyValue::Str(s) if s == key))
                .map(|kv| &kv.1),
            PyValue::List(v) | PyValue::Tuple(v) => {
                key.parse::<usize>().ok().and_then(|i| v.get(i))
            }
            _ => None,
        }
    }
    /// The value at a dotted path of dict keys and list indices (`"optimizer_states.0"`); `""`
    /// is the value itself. A key that itself contains dots is found too.
    pub fn at(&self, path: &str) -> Option<&PyValue> {
        if path.is_empty() {
            return Some(self);
        }
        if let Some(v) = self.get(path) {
            return Some(v);
        }
        // The longest key prefix first, so keys with dots in them are found.
        let dots: Vec<usize> = path.match_indices('.').map(|m| m.0).collect();
        for &d in dots.iter().rev() {
            if let Some(v) = self.get(&path[..d]) {
                if let Some(found) = v.at(&path[d + 1..]) {
                    return Some(found);
                }
            }
        }
        None
    }
    /// A short description: `dict (3 keys)`, `tensor float32 [2, 3]`, `float 0.0005`.
    pub fn summary(&self) -> String {
        match self {
            PyValue::None => "None".into(),
            PyValue::Bool(b) => format!("bool {}", if *b { "True" } else { "False" }),
            PyValue::Int(i) => format!("int {i}"),
            PyValue::Float(f) => format!("float {f:?}"),
            PyValue::Str(s) => format!("str {s:?}"),
            PyValue::Bytes(b) => format!("bytes ({} bytes)", b.len()),
            PyValue::List(v) => format!("list ({} items)", v.len()),
            PyValue::Tuple(v) => format!("tuple ({} items)", v.len()),
            PyValue::Set(v) => format!("set ({} items)", v.len()),
            PyValue::Complex(re, im) => format!("complex ({re:?}{im:+?}j)"),
            PyValue::Dict(v) => format!("dict ({} keys)", v.len()),
            PyValue::Class(c) => format!("class {c}"),
            PyValue::Object { class, args, .. } => {
                format!("object {class} ({} args)", args.len())
            }
            PyValue::Tensor(t) => format!(
                "{} {} {:?} ({} bytes)",
                if t.is_parameter {
                    "parameter"
                } else {
                    "tensor"
                },
                t.tensor.dtype().name(),
                t.tensor.shape(),
                t.tensor.nbytes()
            ),
        }
    }
    /// The value as JSON, dicts in the file's order (tensors as `{"tensor": dtype, "shape":
    /// [...]}`, bytes as a list of numbers, non-string dict keys written with their repr; ints
    /// beyond 64 bits as strings; allowed objects as `{"object": class, "args": [...],
    /// "state": ...}`).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        match self {
            PyValue::None => Value::Null,
            PyValue::Bool(b) => json!(b),
            PyValue::Int(i) => match i64::try_from(*i) {
                Ok(v) => json!(v),
                Err(_) => json!(i.to_string()),
            },
            PyValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or_else(|| json!(f.to_string()), Value::Number)
            }
            PyValue::Str(s) => json!(s),
            PyValue::Bytes(b) => json!(b),
            PyValue::List(v) | PyValue::Tuple(v) | PyValue::Set(v) => {
                Value::Array(v.iter().map(|x| x.to_json()).collect())
            }
            PyValue::Complex(re, im) => json!({ "complex": [re, im] }),
            PyValue::Dict(v) => Value::Object(
                v.iter()
                    .map(|(k, x)| {
                        let key = match k {
                            PyValue::Str(s) => s.clone(),
                            PyValue::Int(i) => i.to_string(),
                            other => other.summary(),
                        };
                        (key, x.to_json())
                    })
                    .collect(),
            ),
            PyValue::Tensor(t) => {
                json!({"tensor": t.tensor.dtype().name(), "shape": t.tensor.shape()})
            }
            PyValue::Class(c) => json!({ "class": c }),
            PyValue::Object { class, args, state } => {
                let mut o = serde_json::Map::new();
                o.insert("object".into(), json!(class));
                o.insert(
                    "args".into(),
                    Value::Array(args.iter().map(|a| a.to_json()).collect()),
                );
                if let Some(st) = state {
                    o.insert("state".into(), st.to_json());
                }
                Value::Object(o)
            }
        }
    }
}

/// A PyTorch checkpoint read into memory: its format and its value tree.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The container it came in.
    pub format: FileFormat,
    /// What `torch.load` would return (with tensors on the CPU).
    pub root: PyValue,
}

/// Where tensors' bytes come from: storage key → (dtype, element count, bytes).
struct Storages {
    entries: std::collections::HashMap<String, (DType, Vec<u8>)>,
}

impl Checkpoint {
    /// The Lightning checkpoint's `hyper_parameters` at `key` (a dotted path, `""` for the whole
    /// dict: `ckpt.hparams::<ModelHparams>("model_hparams")`) read into `T` with
    /// [`PyValue::deserialize`]; an error naming the path when it is absent or does not fit.
    pub fn hparams<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let path = if key.is_empty() {
            "hyper_parameters".to_string()
        } else {
            format!("hyper_parameters.{key}")
        };
        let v = self.root.at(&path).ok_or_else(|| {
            Error::invalid(format!(
                "the checkpoint has no {path} (its top-level keys: {})",
                match &self.root {
                    PyValue::Dict(items) => items
                        .iter()
                        .map(|(k, _)| k.as_str().map_or_else(|| k.summary(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.summary(),
                }
            ))
        })?;
        v.deserialize()
            .map_err(|e| e.context(format!("checkpoint {path}")))
    }
    /// Reads a `torch.save` file (zip or legacy), tensor data only.
    pub fn load(path: impl AsRef<Path>) -> Result<Checkpoint> {
        Checkpoint::load_with(path, &LoadOptions::default())
    }

    /// Reads a `torch.save` file with [`LoadOptions`] (extra globals read as inert values).
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Checkpoint> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        Checkpoint::from_bytes_with(&bytes, opts).map_err(|e| e.with_path(path))
    }

    /// Reads a `torch.save` file from its bytes, tensor data only.
    pub fn from_bytes(bytes: &[u8]) -> Result<Checkpoint> {
        Checkpoint::from_bytes_with(bytes, &LoadOptions::default())
    }

    /// Reads a `torch.save` file from its bytes with [`LoadOptions`].
    pub fn from_bytes_with(bytes: &[u8], opts: &LoadOptions) -> Result<Checkpoint> {
        let format = detect(bytes)?;
        let extra = &opts.allow_globals;
        let root = match format {
            FileFormat::TorchZip => read_zip(bytes, extra)?,
            FileFormat::TorchLegacy => read_legacy(bytes, extra)?,
            FileFormat::Safetensors => {
                return Err(fmt_err("a safetensors file: read it with StateDict::load"))
            }
        };
        Ok(Checkpoint { format, root })
    }

    /// The tensors under `key` (a dotted path; `None` picks the weights: the whole file when it
    /// is a dict of tensors, else its `state_dict`, `model` or `module` entry) as a state dict,
    /// in the file's order. Non-tensor entries under the key are an error naming them.
    pub fn state_dict(&self, key: Option<&str>) -> Result<StateDict> {
        let (path, value) = match key {
            Some(k) => (
                k.to_string(),
                self.root.at(k).ok_or_else(|| {
                    fmt_err(format!(
                        "the checkpoint has no entry {k:?}; its top level has {}",
                        self.top_keys()
                    ))
                })?,
            ),
            None => self.weights()?,
        };
        let items = match value {
            PyValue::Dict(items) => items,
            other => {
                return Err(fmt_err(format!(
                    "{path:?} is {}, not a dict of tensors",
                    other.summary()
                )))
            }
        };
        let mut sd = StateDict::new();
        for (k, v) in items {
            let name = match k {
                PyValue::Str(s) => s.clone(),
                other => {
                    return Err(fmt_err(format!(
                        "a state-dict key that is {}",
                        other.summary()
                    )))
                }
            };
            match v {
                PyValue::Tensor(t) => sd.insert(name, t.tensor.clone()),
                other => {
                    return Err(fmt_err(format!(
                        "entry {name:?} of {path:?} is {}, not a tensor",
                        other.summary()
                    )))
                }
            }
        }
        Ok(sd)
    }

    fn top_keys(&self) -> String {
        match &self.root {
            PyValue::Dict(items) => {
                let keys: Vec<String> = items
                    .iter()
                    .map(|(k, _)| match k {
                        PyValue::Str(s) => format!("{s:?}"),
                        other => other.summary(),
                    })
                    .collect();
                format!("keys [{}]", keys.join(", "))
            }
            other => other.summary(),
        }
    }

    fn weights(&self) -> Result<(String, &PyValue)> {
        let all_tensors = |v: &PyValue| match v {
            PyValue::Dict(items) => items.iter().all(|(_, x)| matches!(x, PyValue::Tensor(_))),
            _ => false,
        };
        if all_tensors(&self.root) {
            return Ok((String::new(), &self.root));
        }
        for k in ["state_dict", "model", "module", "model_state_dict"] {
            if let Some(v) = self.root.get(k) {
                if all_tensors(v) {
                    return Ok((k.to_string(), v));
                }
            }
        }
        Err(fmt_err(format!(
            "no dict of tensors at the top level or under state_dict / model / module; pick one \
             with a key (its top level has {})",
            self.top_keys()
        )))
    }
}

pub(crate) fn fmt_err(m: impl Into<String>) -> Error {
    Error::Format {
        path: None,
        message: m.into(),
    }
}

/// A zip archive from `torch.save`: `<folder>/data.pkl`, `<folder>/data/<key>` per storage.
fn read_zip(bytes: &[u8], extra: &[String]) -> Result<PyValue> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| fmt_err(format!("not a readable zip archive: {e}")))?;
    refuse_duplicate_entries(bytes, zip.central_directory_start(), zip.len())?;
    let mut pkl = None;
    let mut data = std::collections::HashMap::new();
    let mut big_endian = false;
    for i in 0..zip.len() {
        let mut f = zip
            .by_index(i)
            .map_err(|e| fmt_err(format!("zip entry {i}: {e}")))?;
        let name = f.name().to_string();
        if name.starts_with('/')
            || name.starts_with('\\')
            || name.split(['/', '\\']).any(|p| p == "..")
            || name.contains(':')
        {
            return Err(fmt_err(format!(
                "zip entry {name:?} has an absolute or parent-relative name"
            )));
        }
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(fmt_err(format!(
                "zip entry {name:?} is compressed ({:?}); torch.save stores entries uncompressed",
                f.compression()
            )));
        }
        let size = f.size();
        if size > bytes.len() as u64 {
            return Err(fmt_err(format!(
                "zip entry {name:?} declares {size} bytes, more than the file has"
            )));
        }
        let (_, rest) = name.split_once('/').unwrap_or(("", &name));
        let wanted = rest == "data.pkl" || rest == "byteorder" || rest.starts_with("data/");
        if !wanted {
            continue;
        }
        let mut buf = Vec::with_capacity(size as usize);
        f.read_to_end(&mut buf)
            .map_err(|e| fmt_err(format!("zip entry {name:?}: {e}")))?;
        if rest == "data.pkl" {
            pkl = Some(buf);
        } else if rest == "byteorder" {
            big_endian = buf.trim_ascii() == b"big";
        } else if let Some(key) = rest.strip_prefix("data/") {
            data.insert(key.to_string(), buf);
        }
    }
    if big_endian {
        return Err(fmt_err(
            "a big-endian checkpoint (byteorder \"big\") is not supported",
        ));
    }
    let pkl = pkl.ok_or_else(|| fmt_err("the zip archive has no data.pkl"))?;
    let mut storages = Storages {
        entries: Default::default(),
    };
    let mut pos = 0;
    let p = pickle::load(&pkl, &mut pos, extra, &mut pickle::storage_pid)?;
    // Bind the storages the pickle names to their entries.
    // Moved, not copied: a storage shared by several tensors appears once per tensor.
    for n in &p.nodes {
        if let Node::Storage(key, dtype, numel) = n {
            if let Some((_, raw)) = storages.entries.get(key) {
                check_storage(key, *dtype, *numel, raw.len() as u64)?;
                continue;
            }
            let raw = data.remove(key).ok_or_else(|| {
                fmt_err(format!(
                    "storage {key:?} has no entry data/{key} in the archive"
                ))
            })?;
            check_storage(key, *dtype, *numel, raw.len() as u64)?;
            storages.entries.insert(key.clone(), (*dtype, raw));
        }
    }
    convert(&p, p.root, &storages, 0)
}

/// Refuses an archive that holds two entries of one name: the zip reader keeps one of them,
/// another reader (or a scanner that vetted the file) may take the other. The central
/// directory is walked here because the reader folds duplicates into one entry.
fn refuse_duplicate_entries(bytes: &[u8], start: u64, unique: usize) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut at = usize::try_from(start).map_err(|_| fmt_err("a central directory beyond usize"))?;
    // Central-directory headers: signature, 42 bytes of fields, then name, extra, comment.
    while bytes.get(at..at + 4) == Some(b"PK\x01\x02") {
        let field = |o: usize| -> Result<usize> {
            bytes
                .get(at + o..at + o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
                .ok_or_else(|| fmt_err("a truncated zip central directory"))
        };
        let (name_len, extra_len, comment_len) = (field(28)?, field(30)?, field(32)?);
        let name = bytes
            .get(at + 46..at + 46 + name_len)
            .ok_or_else(|| fmt_err("a truncated zip central directory"))?;
        if !seen.insert(name) {
            return Err(fmt_err(format!(
                "the zip archive holds two entries named {:?} (duplicated: readers may disagree \
                 on which one counts)",
                String::from_utf8_lossy(name)
            )));
        }
        at += 46 + name_len + extra_len + comment_len;
    }
    if seen.len() != unique {
        return Err(fmt_err(format!(
            "the zip archive's central directory lists {} entries where the reader sees {unique}",
            seen.len()
        )));
    }
    Ok(())
}

fn check_storage(key: &str, dtype: DType, numel: u64, have: u64) -> Result<()> {
    let need = numel
        .checked_mul(dtype.size() as u64)
        .ok_or_else(|| fmt_err(format!("storage {key:?}: {numel} elements overflow")))?;
    if have < need {
        return Err(fmt_err(format!(
            "storage {key:?} declares {numel} {} elements ({need} bytes) but the file holds {have} bytes",
            dtype.name()
        )));
    }
    Ok(())
}

/// The legacy stream: magic, protocol, sys_info, the object, the storage keys, then each
/// storage as a u64 element count and its bytes.
fn read_legacy(bytes: &[u8], extra: &[String]) -> Result<PyValue> {
    let mut pos = 0;
    let mut no_pid =
        |_: &[Node], _: Id| -> Result<Node> { Err(fmt_err("a persistent id in a legacy header")) };
    for what in ["magic number", "protocol version", "sys_info"] {
        pickle::load(bytes, &mut pos, &[], &mut no_pid).map_err(|e| match e {
            Error::Format { message, .. } => fmt_err(format!("legacy {what}: {message}")),
            e => e,
        })?;
    }
    let obj = pickle::load(bytes, &mut pos, extra, &mut pickle::storage_pid)?;
    let keys = pickle::load(bytes, &mut pos, &[], &mut no_pid)?;
    let key_list: Vec<String> = match &keys.nodes[keys.root] {
        Node::List(v) => v
            .iter()
            .map(|&i| match &keys.nodes[i] {
                Node::Str(s) => Ok(s.clone()),
                _ => Err(fmt_err("legacy storage keys that are not strings")),
            })
            .collect::<Result<_>>()?,
        _ => return Err(fmt_err("legacy storage keys that are not a list")),
    };
    let declared: std::collections::HashMap<&str, (DType, u64)> = obj
        .nodes
        .iter()
        .filter_map(|n| match n {
            Node::Storage(k, d, c) => Some((k.as_str(), (*d, *c))),
            _ => None,
        })
        .collect();
    let mut storages = Storages {
        entries: Default::default(),
    };
    for key in key_list {
        let (dtype, numel) = *declared
            .get(key.as_str())
            .ok_or_else(|| fmt_err(format!("legacy storage {key:?} is not used by the object")))?;
        let head = bytes.get(pos..pos + 8).ok_or_else(|| {
            fmt_err(format!(
                "legacy storage {key:?}: the file ends before its size"
            ))
        })?;
        let count = u64::from_le_bytes(head.try_into().map_err(|_| fmt_err("size"))?);
        pos += 8;
        if count != numel {
            return Err(fmt_err(format!(
                "legacy storage {key:?} holds {count} elements, its id says {numel}"
            )));
        }
        let left = (bytes.len() - pos) as u64;
        check_storage(&key, dtype, count, left)?;
        let n = (count * dtype.size() as u64) as usize;
        storages
            .entries
            .insert(key, (dtype, bytes[pos..pos + n].to_vec()));
        pos += n;
    }
    for (key, _) in declared {
        if !storages.entries.contains_key(key) {
            return Err(fmt_err(format!(
                "legacy storage {key:?} is missing from the file"
            )));
        }
    }
    convert(&obj, obj.root, &storages, 0)
}

/// Builds the public tree, materialising tensors.
fn convert(p: &pickle::Pickle, id: Id, s: &Storages, depth: usize) -> Result<PyValue> {
    if depth > pickle::MAX_DEPTH {
        return Err(fmt_err(format!(
            "values nested more than {} deep",
            pickle::MAX_DEPTH
        )));
    }
    let c = |i: Id| convert(p, i, s, depth + 1);
    Ok(match &p.nodes[id] {
        Node::None => PyValue::None,
        Node::Bool(b) => PyValue::Bool(*b),
        Node::Int(i) => PyValue::Int(*i),
        Node::Float(f) => PyValue::Float(*f),
        Node::Str(x) => PyValue::Str(x.clone()),
        Node::Bytes(b) => PyValue::Bytes(b.clone()),
        Node::List(v) => PyValue::List(v.iter().map(|&i| c(i)).collect::<Result<_>>()?),
        Node::Tuple(v) => PyValue::Tuple(v.iter().map(|&i| c(i)).collect::<Result<_>>()?),
        Node::Set(v) => PyValue::Set(v.iter().map(|&i| c(i)).collect::<Result<_>>()?),
        Node::Complex(re, im) => PyValue::Complex(*re, *im),
        Node::Dict(v) => PyValue::Dict(
            v.iter()
                .map(|&(k, x)| Ok((c(k)?, c(x)?)))
                .collect::<Result<_>>()?,
        ),
        Node::Tensor(t) => PyValue::Tensor(Box::new(materialise(p, t, s)?)),
        Node::Class(name) => PyValue::Class(name.clone()),
        // A dict or list subclass (items given, nothing passed to the class) reads as one.
        Node::Object(o) if o.args.is_empty() && o.dict.is_some() && o.list.is_none() => {
            PyValue::Dict(
                o.dict
                    .iter()
                    .flatten()
                    .map(|&(k, x)| Ok((c(k)?, c(x)?)))
                    .collect::<Result<_>>()?,
            )
        }
        Node::Object(o) if o.args.is_empty() && o.list.is_some() && o.dict.is_none() => {
            PyValue::List(
                o.list
                    .iter()
                    .flatten()
                    .map(|&i| c(i))
                    .collect::<Result<_>>()?,
            )
        }
        Node::Object(o) => {
            let mut args: Vec<PyValue> = o.args.iter().map(|&i| c(i)).collect::<Result<_>>()?;
            // Items of a subclass that also takes arguments: kept as trailing arguments.
            if let Some(d) = &o.dict {
                args.push(PyValue::Dict(
                    d.iter()
                        .map(|&(k, x)| Ok((c(k)?, c(x)?)))
                        .collect::<Result<_>>()?,
                ));
            }
            if let Some(l) = &o.list {
                args.push(PyValue::List(
                    l.iter().map(|&i| c(i)).collect::<Result<_>>()?,
                ));
            }
            PyValue::Object {
                class: o.class.clone(),
                args,
                state: o.state.map(c).transpose()?.map(Box::new),
            }
        }
        n => {
            return Err(fmt_err(format!(
                "the checkpoint holds {} outside a tensor",
                pickle::kind_name(n)
            )))
        }
    })
}

/// Largest tensor an expanded (stride-0) view may materialise beyond its storage's own size.
const EXPAND_LIMIT: u64 = 256 << 20;

/// Copies a (possibly strided) view out of its storage into a contiguous tensor, after checking
/// that every element it reads lies inside the storage.
fn materialise(p: &pickle::Pickle, t: &pickle::TensorNode, s: &Storages) -> Result<TorchTensor> {
    let key = match &p.nodes[t.storage] {
        Node::Storage(k, _, _) => k,
        _ => return Err(fmt_err("a tensor without a storage")),
    };
    let (dtype, raw) = s
        .entries
        .get(key)
        .ok_or_else(|| fmt_err(format!("storage {key:?} is missing")))?;
    let esize = dtype.size() as u64;
    let storage_numel = raw.len() as u64 / esize;
    let numel = t
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| fmt_err(format!("shape {:?} overflows", t.shape)))?;
    let shape: Vec<usize> = t
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| fmt_err("a dimension beyond usize")))
        .collect::<Result<_>>()?;
    let total = numel
        .checked_mul(esize)
        .ok_or_else(|| fmt_err(format!("shape {:?} overflows", t.shape)))?;
    // A view larger than its storage repeats elements (stride 0, `expand`): allowed up to
    // EXPAND_LIMIT, so a few bytes of file cannot ask for terabytes.
    if total > raw.len() as u64 && total > EXPAND_LIMIT {
        return Err(fmt_err(format!(
            "a tensor of shape {:?} would materialise {total} bytes from a storage of {}              (an expanded view larger than {EXPAND_LIMIT} bytes)",
            t.shape,
            raw.len()
        )));
    }
    let mut bytes = HostBytes::zeroed(
        usize::try_from(total).map_err(|_| fmt_err("a tensor larger than memory"))?,
    )?;
    if numel > 0 {
        // The last element read: offset + Σ (size - 1) · stride.
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&d, &st)| {
                (d - 1).checked_mul(st).and_then(|x| a.checked_add(x))
            })
            .ok_or_else(|| fmt_err(format!("the view {:?} / {:?} overflows", t.shape, t.stride)))?;
        if last >= storage_numel {
            return Err(fmt_err(format!(
                "a tensor of shape {:?}, stride {:?} and offset {} reads element {last} of storage \
                 {key:?}, which has {storage_numel}",
                t.shape, t.stride, t.offset
            )));
        }
        let out = bytes.bytes_mut();
        let es = esize as usize;
        // The common case, a contiguous tensor, is one copy.
        let contiguous = t
            .stride
            .iter()
            .zip(&t.shape)
            .rev()
            .try_fold(1u64, |want, (&st, &d)| {
                (d == 1 || st == want).then_some(want * d)
            })
            .is_some();
        if contiguous {
            let b = (t.offset * esize) as usize;
            out.copy_from_slice(&raw[b..b + out.len()]);
            return Ok(TorchTensor {
                tensor: Tensor::from_host(bytes, &shape, *dtype)?,
                is_parameter: t.is_parameter,
                requires_grad: t.requires_grad,
            });
        }
        let rank = shape.len();
        let mut coord = vec![0u64; rank];
        let mut at = t.offset;
        for o in out.chunks_exact_mut(es) {
            let b = (at * esize) as usize;
            o.copy_from_slice(&raw[b..b + es]);
            // Wrapping: a size-1 dimension may carry any stride (PyTorch ignores it), and the
            // step past the last element is undone before it is used.
            for d in (0..rank).rev() {
                coord[d] += 1;
                at = at.wrapping_add(t.stride[d]);
                if coord[d] < t.shape[d] {
                    break;
                }
                at = at.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]));
                coord[d] = 0;
            }
        }
    }
    Ok(TorchTensor {
        tensor: Tensor::from_host(bytes, &shape, *dtype)?,
        is_parameter: t.is_parameter,
        requires_grad: t.requires_grad,
    })
}
