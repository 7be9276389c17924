//! State dicts: PyTorch's ordered key → tensor map, saved and loaded as safetensors, loaded into
//! modules strictly and atomically.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::module::walk::{check_tree, commit, tensors, walk};
use crate::module::{Module, TensorKind};
use crate::tensor::{convert, to_device_many, Tensor};

/// The `__metadata__` key under which wgnn records each key's kind (parameter, buffer, …),
/// which safetensors itself cannot hold. Absent in files from PyTorch; ignored when absent.
pub const KINDS_METADATA_KEY: &str = "wgnn.kinds";

/// An ordered map from dotted key to tensor: what `state_dict()` returns and what files hold.
#[derive(Clone, Default, Debug)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
    kinds: HashMap<String, TensorKind>,
    metadata: BTreeMap<String, String>,
}

/// What a non-strict load left aside (a strict load fails on either).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Keys the module has but the dict lacks.
    pub missing: Vec<String>,
    /// Keys the dict has but the module does not take.
    pub unexpected: Vec<String>,
}

impl StateDict {
    /// An empty dict.
    pub fn new() -> Self {
        StateDict::default()
    }
    /// Inserts or replaces `key` (a new key goes last, as in an `OrderedDict`).
    pub fn insert(&mut self, key: impl Into<String>, t: Tensor) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = t,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, t));
            }
        }
    }
    /// Removes `key`, returning its tensor (the others keep their order).
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        let i = self.index.remove(key)?;
        let (_, t) = self.entries.remove(i);
        self.kinds.remove(key);
        for (k, t2) in self.entries.iter().enumerate().skip(i) {
            self.index.insert(t2.0.clone(), k);
        }
        Some(t)
    }
    /// Renames `from` to `to` in place (same position). An error when `from` is missing or `to`
    /// is taken.
    pub fn rename(&mut self, from: &str, to: impl Into<String>) -> Result<()> {
        let to = to.into();
        if from == to {
            return self
                .get(from)
                .map(|_| ())
                .ok_or_else(|| missing_key(self, from));
        }
        if self.index.contains_key(&to) {
            return Err(Error::invalid(format!(
                "rename {from:?} -> {to:?}: the state dict already has {to:?}"
            )));
        }
        let i = self
            .index
            .remove(from)
            .ok_or_else(|| missing_key(self, from))?;
        if let Some(kind) = self.kinds.remove(from) {
            self.kinds.insert(to.clone(), kind);
        }
        self.entries[i].0 = to.clone();
        self.index.insert(to, i);
        Ok(())
    }
    /// Keeps the entries for which `keep(key, tensor)` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Tensor) -> bool) {
        let old = std::mem::take(&mut self.entries);
        self.index.clear();
        for (k, t) in old {
            if keep(&k, &t) {
                self.index.insert(k.clone(), self.entries.len());
                self.entries.push((k, t));
            } else {
                self.kinds.remove(&k);
            }
        }
    }
    /// The same tensors under `map(key)`, in order; an error when two keys map to one name.
    pub fn map_keys(&self, mut map: impl FnMut(&str) -> String) -> Result<StateDict> {
        let mut out = StateDict::new();
        for (k, t) in self.iter() {
            let new = map(k);
            if out.index.contains_key(&new) {
                return Err(Error::invalid(format!(
                    "two keys map to {new:?} (one of them {k:?})"
                )));
            }
            if let Some(kind) = self.kinds.get(k) {
                out.kinds.insert(new.clone(), *kind);
            }
            out.insert(new, t.clone());
        }
        out.metadata = self.metadata.clone();
        Ok(out)
    }
    /// The tensor under `key`.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }
    /// Keys in order.
    pub fn keys(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.0.as_str()).collect()
    }
    /// (key, tensor) in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(k, t)| (k.as_str(), t))
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// What the key is in the module it came from, when known (wgnn files and `state_dict()`).
    pub fn kind(&self, key: &str) -> Option<TensorKind> {
        self.kinds.get(key).copied()
    }
    /// The file's `__metadata__` (string pairs), without wgnn's own kinds entry.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// Adds a `__metadata__` entry to be saved.
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Serialises to safetensors bytes (tensors read back from GPUs as needed). A key named
    /// `__metadata__` is refused: the format reserves it, and the file could not be read back.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        self.check_keys()?;
        let host = self
            .entries
            .iter()
            .map(|(_, t)| t.to_bytes())
            .collect::<Result<Vec<_>>>()?;
        self.serialize(host)
    }

    /// [`StateDict::save`]'s bytes: the safetensors file, for a page to offer as a download
    /// or a program to send (the same as [`StateDict::to_safetensors`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.to_safetensors()
    }

    /// [`StateDict::to_bytes`] for every target, the browser included (GPU tensors read back
    /// with [`Tensor::to_bytes_async`]).
    pub async fn to_bytes_async(&self) -> Result<Vec<u8>> {
        self.check_keys()?;
        let mut host = Vec::with_capacity(self.entries.len());
        for (_, t) in &self.entries {
            host.push(t.to_bytes_async().await?);
        }
        self.serialize(host)
    }

    fn check_keys(&self) -> Result<()> {
        if self.index.contains_key("__metadata__") {
            return Err(Error::InvalidName {
                module: String::new(),
                name: "__metadata__".into(),
                reason: "safetensors reserves this key for the file's metadata; rename the tensor before saving".into(),
            });
        }
        Ok(())
    }

    /// The safetensors file of these entries, given each one's host bytes.
    fn serialize(&self, bytes: Vec<Vec<u8>>) -> Result<Vec<u8>> {
        let host: Vec<(String, DType, Vec<usize>, Vec<u8>)> = self
            .entries
            .iter()
            .zip(bytes)
            .map(|((k, t), b)| (k.clone(), t.dtype(), t.shape().to_vec(), b))
            .collect();
        let views: Vec<(String, View<'_>)> = host
            .iter()
            .map(|(k, d, s, b)| {
                (
                    k.clone(),
                    View {
                        dtype: *d,
                        shape: s,
                        data: b,
                    },
                )
            })
            .collect();
        let mut meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        if self.entries.is_empty() && meta.is_empty() {
            // With no tensors and no metadata the safetensors crate (0.6) writes the malformed
            // header `{},"__metadata__":{}}`, which its own reader refuses; Python's
            // `save_file({})` writes `{}`, which both read.
            let mut out = 8u64.to_le_bytes().to_vec();
            out.extend_from_slice(b"{}      ");
            return Ok(out);
        }
        if !self.kinds.is_empty() {
            // An ordered list: safetensors sorts tensors by dtype and name, so this is also
            // how PyTorch's key order survives the file.
            let kinds: Vec<[&str; 2]> = self
                .entries
                .iter()
                .filter_map(|(k, _)| self.kinds.get(k).map(|v| [k.as_str(), v.as_str()]))
                .collect();
            let json = serde_json::to_string(&kinds).map_err(|e| Error::Format {
                path: None,
                message: e.to_string(),
            })?;
            meta.insert(KINDS_METADATA_KEY.into(), json);
        }
        safetensors::serialize(views, Some(meta)).map_err(|e| Error::Format {
            path: None,
            message: e.to_string(),
        })
    }

    /// Parses safetensors bytes. Any malformed input is an error; nothing is allocated beyond
    /// the input's own size.
    pub fn from_safetensors(bytes: &[u8]) -> Result<StateDict> {
        parse(bytes, None)
    }

    /// Writes a safetensors file atomically: a temporary file in the same folder, flushed to
    /// disk, then renamed over `path`. A crash leaves either the old file or the new one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors()?;
        write_atomic(path, &bytes)
    }

    /// Reads a state dict from a file, whichever of the formats PyTorch users have it in (told
    /// apart by the bytes, not the name): safetensors, a `torch.save` zip (`.pt`, `.pth`,
    /// Lightning `.ckpt`) or a legacy `torch.save` stream. From a `torch.save` file it takes the
    /// whole file when it is a dict of tensors, else its `state_dict` (Lightning), `model` or
    /// `module` entry; [`Checkpoint`](crate::torch::Checkpoint) picks any other and shows the
    /// rest. `torch.save` files are read without running anything in them: see
    /// [`crate::torch`].
    pub fn load(path: impl AsRef<Path>) -> Result<StateDict> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
        from_any(&bytes, Some(path))
    }

    /// [`StateDict::load`] of bytes already in memory (a page's `fetch`, an embedded file):
    /// safetensors, a `torch.save` zip (`.pt`, `.pth`, Lightning `.ckpt`) or a legacy
    /// `torch.save` stream, told apart by the bytes, with the same errors as `load` but for the
    /// path.
    pub fn from_bytes(bytes: &[u8]) -> Result<StateDict> {
        from_any(bytes, None)
    }

    /// The same dict with `prefix` removed from every key that starts with it (the `module.` of
    /// `DataParallel`, the `model.` of a wrapper); other keys are kept as they are.
    pub fn strip_prefix(&self, prefix: &str) -> StateDict {
        let mut out = StateDict::new();
        for (k, t) in self.iter() {
            out.insert(k.strip_prefix(prefix).unwrap_or(k), t.clone());
        }
        out.metadata = self.metadata.clone();
        out
    }

    /// The same dict with `prefix` put before every key.
    pub fn with_prefix(&self, prefix: &str) -> StateDict {
        let mut out = StateDict::new();
        for (k, t) in self.iter() {
            out.insert(format!("{prefix}{k}"), t.clone());
        }
        out.metadata = self.metadata.clone();
        out
    }

    /// Every tensor moved to `device` (one batched upload).
    pub fn to_device(&self, device: &Device) -> Result<StateDict> {
        let refs: Vec<&Tensor> = self.entries.iter().map(|e| &e.1).collect();
        let moved = to_device_many(&refs, device)?;
        let mut out = self.clone();
        for (e, t) in out.entries.iter_mut().zip(moved) {
            e.1 = t;
        }
        Ok(out)
    }

    /// Every floating tensor converted to `dtype`; integers and bools kept.
    pub fn to_float_dtype(&self, dtype: DType) -> Result<StateDict> {
        if !dtype.is_float() {
            return Err(Error::invalid(format!(
                "to_float_dtype takes a floating dtype, got {dtype}"
            )));
        }
        let mut out = self.clone();
        for e in out.entries.iter_mut() {
            if e.1.dtype().is_float() {
                e.1 = e.1.to_dtype(dtype)?;
            }
        }
        Ok(out)
    }
}

/// A state dict from the bytes of any supported file; `path` only names it in errors.
fn from_any(bytes: &[u8], path: Option<&Path>) -> Result<StateDict> {
    match crate::torch::detect(bytes) {
        Ok(crate::torch::FileFormat::TorchZip | crate::torch::FileFormat::TorchLegacy) => {
            let sd = crate::torch::Checkpoint::from_bytes(bytes).and_then(|c| c.state_dict(None));
            match path {
                Some(p) => sd.map_err(|e| e.with_path(p)),
                None => sd,
            }
        }
        _ => parse(bytes, path.map(|p| p.display().to_string())),
    }
}

fn missing_key(sd: &StateDict, key: &str) -> Error {
    Error::invalid(format!(
        "the state dict has no key {key:?} (it has {} keys{})",
        sd.len(),
        sd.keys()
            .first()
            .map(|k| format!(", the first {k:?}"))
            .unwrap_or_default()
    ))
}

impl StateDict {
    fn reorder(&mut self, order: &[String]) {
        let mut old: HashMap<String, Tensor> =
            std::mem::take(&mut self.entries).into_iter().collect();
        self.index.clear();
        for k in order {
            if let Some(t) = old.remove(k) {
                self.insert(k.clone(), t);
            }
        }
    }
}

static NEXT_TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes `bytes` to `path` via a temporary file in the same folder and a rename. The
/// temporary name is short (so any valid target name works), unique per process and call, and
/// created exclusively, so concurrent saves to one path never share it: the
/// target is always a whole file, the last rename's.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::invalid(format!(
            "cannot save to {}: not a file path",
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let (tmp, f) = loop {
        let n = NEXT_TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".wgnn-{}-{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io("writing", &tmp, e)),
        }
    };
    let result = (|| {
        {
            // Closed (at the end of this block) before the rename.
            let mut f = f;
            f.write_all(bytes)
                .map_err(|e| Error::io("writing", &tmp, e))?;
            f.sync_all().map_err(|e| Error::io("writing", &tmp, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| Error::io("writing", path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

struct View<'a> {
    dtype: DType,
    shape: &'a [usize],
    data: &'a [u8],
}

impl safetensors::View for View<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.to_safetensors()
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn parse(bytes: &[u8], path: Option<String>) -> Result<StateDict> {
    let fmt_err = |message: String| Error::Format {
        path: path.clone(),
        message,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| fmt_err(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| fmt_err(e.to_string()))?;
    let mut sd = StateDict::new();
    // Files keep tensors sorted by dtype alignment, then name; wgnn's metadata restores the
    // module's order below when present.
    let mut ordered: Vec<(String, usize)> = meta
        .tensors()
        .iter()
        .map(|(k, info)| (k.clone(), info.data_offsets.0))
        .collect();
    ordered.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    for (name, _) in ordered {
        let view = st
            .tensor(&name)
            .map_err(|e| fmt_err(format!("tensor {name:?}: {e}")))?;
        let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
            fmt_err(format!(
                "tensor {name:?} has dtype {:?}, which wgnn does not hold",
                view.dtype()
            ))
        })?;
        let t = Tensor::from_bytes(view.data(), view.shape(), dtype)
            .map_err(|e| fmt_err(format!("tensor {name:?}: {e}")))?;
        sd.insert(name, t);
    }
    if let Some(m) = meta.metadata() {
        for (k, v) in m {
            if k == KINDS_METADATA_KEY {
                // Optional and advisory: a malformed entry is ignored, never fatal.
                // Used only when it names every key of the file exactly once with a known
                // kind; anything else is ignored as a whole (never drops or reorders a tensor).
                if let Ok(kinds) = serde_json::from_str::<Vec<[String; 2]>>(v) {
                    let mut seen = std::collections::HashSet::new();
                    let parsed: Option<Vec<(String, TensorKind)>> = kinds
                        .into_iter()
                        .map(|[key, kind]| {
                            let ok = sd.index.contains_key(&key) && seen.insert(key.clone());
                            TensorKind::parse(&kind).filter(|_| ok).map(|k| (key, k))
                        })
                        .collect();
                    if let Some(parsed) = parsed.filter(|p| p.len() == sd.len()) {
                        let order: Vec<String> = parsed.iter().map(|p| p.0.clone()).collect();
                        sd.kinds = parsed.into_iter().collect();
                        sd.reorder(&order);
                    }
                }
            } else {
                sd.metadata.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(sd)
}

/// `state_dict()` of a module: CPU copies of parameters and persistent buffers.
pub(crate) fn from_module(m: &dyn Module) -> Result<StateDict> {
    check_tree(m)?;
    let slots: Vec<(String, TensorKind, &Tensor)> = tensors(m)
        .into_iter()
        .filter(|s| s.1.in_state_dict())
        .collect();
    let refs: Vec<&Tensor> = slots.iter().map(|s| s.2).collect();
    let host = to_device_many(&refs, &Device::Cpu)?;
    let mut sd = StateDict::new();
    for ((key, kind, _), t) in slots.into_iter().zip(host) {
        sd.kinds.insert(key.clone(), kind);
        // Detached, as PyTorch's state_dict() is: computing with an entry never reaches the
        // parameter's gradient. Dense: a view a module holds is saved as its values.
        sd.insert(key, t.detach().contiguous()?);
    }
    Ok(sd)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn size(s: &[usize]) -> String {
    format!(
        "torch.Size([{}])",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn quoted(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keys of `sd` that the module does not take, in the order PyTorch reports them: module by
/// module (pre-order), each module claiming the keys under its prefix whose next part is
/// neither one of its own parameters or persistent buffers nor one of its children.
fn unexpected_in_pytorch_order(m: &dyn Module, sd: &StateDict) -> Vec<String> {
    let mut out = Vec::new();
    for node in walk(m) {
        let prefix = if node.path.is_empty() {
            String::new()
        } else {
            format!("{}.", node.path)
        };
        for key in sd.keys() {
            let Some(rest) = key.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let unexpected = match rest.split_once('.') {
                Some((child, _)) => !node.children.iter().any(|c| c.0 == child),
                None => {
                    !node.params.iter().any(|p| p.0 == rest)
                        && !node.buffers.iter().any(|b| b.0 == rest && b.1.persistent())
                }
            };
            if unexpected {
                out.push(key.to_string());
            }
        }
    }
    out
}

/// Validates everything, converts and moves every tensor to its slot's device, then commits.
pub(crate) fn load_into(m: &mut dyn Module, sd: &StateDict, strict: bool) -> Result<LoadReport> {
    check_tree(m)?;
    let slots: Vec<(String, TensorKind, Tensor)> = tensors(m)
        .into_iter()
        .map(|(k, kind, t)| (k, kind, t.clone()))
        .collect();
    let missing: Vec<String> = slots
        .iter()
        .filter(|s| s.1.in_state_dict() && sd.get(&s.0).is_none())
        .map(|s| s.0.clone())
        .collect();
    let unexpected = unexpected_in_pytorch_order(m, sd);
    let mut problems = Vec::new();
    // Converted values, grouped later by destination device. Checked slot by slot, in module
    // order, as PyTorch's `_load_from_state_dict` meets them.
    let mut ready: Vec<(String, Tensor, Device)> = Vec::new();
    for (key, kind, cur) in &slots {
        if !kind.in_state_dict() {
            continue;
        }
        let Some(t) = sd.get(key) else {
            continue;
        };
        let shape_ok = t.shape() == cur.shape() || (cur.shape().is_empty() && t.shape() == [1]);
        if !shape_ok {
            problems.push(format!(
                "size mismatch for {key}: copying a param with shape {} from checkpoint, the shape in current model is {}.",
                size(t.shape()),
                size(cur.shape())
            ));
            continue;
        }
        let host = match t.to(&Device::Cpu).and_then(|h| h.contiguous()) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("could not read {key}: {e}"));
                continue;
            }
        };
        let bytes = match host.host() {
            Some(h) if host.dtype() != cur.dtype() => convert(h.bytes(), host.dtype(), cur.dtype()),
            Some(h) => Ok(h.bytes().to_vec()),
            None => Err(Error::internal("host tensor without host data")),
        };
        match bytes.and_then(|b| Tensor::from_bytes(&b, cur.shape(), cur.dtype())) {
            Ok(v) => ready.push((key.to_string(), v, cur.device())),
            Err(e) => problems.push(format!(
                "dtype mismatch for {key}: cannot copy {} from checkpoint into {} in current model ({e}).",
                t.dtype(),
                cur.dtype()
            )),
        }
    }
    let mut head = Vec::new();
    if strict && !missing.is_empty() {
        head.push(format!(
            "Missing key(s) in state_dict: {}. ",
            quoted(&missing)
        ));
    }
    if strict && !unexpected.is_empty() {
        head.push(format!(
            "Unexpected key(s) in state_dict: {}. ",
            quoted(&unexpected)
        ));
    }
    if strict {
        for u in &unexpected {
            let best = missing
                .iter()
                .map(|k| (levenshtein(k, u), k))
                .filter(|(d, k)| *d <= (k.len() / 4).max(2))
                .min();
            if let Some((_, k)) = best {
                head.push(format!("Did you mean \"{k}\" for unexpected key \"{u}\"?"));
            } else if let Some(i) = slots.iter().find(|s| s.0 == *u && !s.1.in_state_dict()) {
                head.push(format!(
                    "\"{u}\" is a {} of the current model: it is never loaded from a state dict.",
                    i.1
                ));
            }
        }
    }
    head.extend(problems);
    if !head.is_empty() {
        return Err(Error::LoadStateDict {
            module: m.type_name(),
            missing,
            unexpected,
            problems: head,
        });
    }
    // Move to the slots' devices: one batched upload per device.
    let mut new: HashMap<String, Tensor> = HashMap::new();
    let mut devices: Vec<Device> = Vec::new();
    for r in &ready {
        if !devices.contains(&r.2) {
            devices.push(r.2.clone());
        }
    }
    for d in devices {
        let group: Vec<&(String, Tensor, Device)> = ready.iter().filter(|r| r.2 == d).collect();
        let refs: Vec<&Tensor> = group.iter().map(|r| &r.1).collect();
        let moved = to_device_many(&refs, &d)?;
        for (r, t) in group.into_iter().zip(moved) {
            new.insert(r.0.clone(), t);
        }
    }
    commit(m, new);
    Ok(LoadReport {
        missing,
        unexpected,
    })
}
