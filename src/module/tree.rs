//! Walking a module tree: PyTorch's names and order, look-ups, moving, and the summary rows.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::{Buffer, Module, Parameter, Visitor, VisitorMut};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::state_dict::{LoadReport, StateDict};
use crate::tensor::{to_device_many, Tensor};

/// What a tensor of a module is, in the terms of the seed question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    /// `nn.Parameter` with `requires_grad=True`.
    Parameter,
    /// `nn.Parameter` with `requires_grad=False`.
    FrozenParameter,
    /// `register_buffer(name, t)`.
    Buffer,
    /// `register_buffer(name, t, persistent=False)`.
    NonPersistentBuffer,
}

impl TensorKind {
    /// Whether `state_dict()` holds it.
    pub fn in_state_dict(self) -> bool {
        !matches!(self, TensorKind::NonPersistentBuffer)
    }
    /// Whether `parameters()` yields it.
    pub fn is_parameter(self) -> bool {
        matches!(self, TensorKind::Parameter | TensorKind::FrozenParameter)
    }
    /// The name used in the summary and in saved metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            TensorKind::Parameter => "parameter",
            TensorKind::FrozenParameter => "frozen parameter",
            TensorKind::Buffer => "buffer",
            TensorKind::NonPersistentBuffer => "non-persistent buffer",
        }
    }
    /// Parses [`TensorKind::as_str`].
    pub fn parse(s: &str) -> Option<TensorKind> {
        [
            TensorKind::Parameter,
            TensorKind::FrozenParameter,
            TensorKind::Buffer,
            TensorKind::NonPersistentBuffer,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for TensorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of a module's summary: every tensor, what it is and where it lives.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Dotted path.
    pub path: String,
    /// Parameter, frozen parameter, buffer or non-persistent buffer.
    pub kind: TensorKind,
    /// Shape.
    pub shape: Vec<usize>,
    /// Dtype.
    pub dtype: DType,
    /// Device.
    pub device: Device,
    /// Bytes of data.
    pub bytes: usize,
}

/// One module of a walked tree, with its own fields in declaration order.
pub(crate) struct Node<'a> {
    pub path: String,
    pub module: &'a dyn Module,
    pub params: Vec<(String, &'a Parameter)>,
    pub buffers: Vec<(String, &'a Buffer)>,
    pub children: Vec<(String, &'a dyn Module)>,
}

#[derive(Default)]
struct Collect<'a> {
    params: Vec<(String, &'a Parameter)>,
    buffers: Vec<(String, &'a Buffer)>,
    children: Vec<(String, &'a dyn Module)>,
}

impl<'a> Visitor<'a> for Collect<'a> {
    fn parameter(&mut self, name: &str, p: &'a Parameter) {
        self.params.push((name.to_string(), p));
    }
    fn buffer(&mut self, name: &str, b: &'a Buffer) {
        self.buffers.push((name.to_string(), b));
    }
    fn module(&mut self, name: &str, m: &'a dyn Module) {
        self.children.push((name.to_string(), m));
    }
}

pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_names(path: &str, names: impl Iterator<Item = String>) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        let reason = if name.is_empty() {
            Some("a name cannot be empty")
        } else if name.contains('.') {
            Some("a name cannot contain \".\" (it separates the parts of a path)")
        } else if !seen.insert(name.clone()) {
            Some("the name is used twice in this module (parameters, buffers and children share one namespace)")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidName {
                module: path.to_string(),
                name,
                reason: reason.into(),
            });
        }
    }
    Ok(())
}

/// Every module of the tree in pre-order (PyTorch's `named_modules` order), names checked.
pub(crate) fn walk(root: &dyn Module) -> Result<Vec<Node<'_>>> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &dyn Module)> = vec![(String::new(), root)];
    while let Some((path, m)) = stack.pop() {
        let mut c = Collect::default();
        m.visit(&mut c);
        check_names(
            &path,
            c.params
                .iter()
                .map(|p| p.0.clone())
                .chain(c.buffers.iter().map(|b| b.0.clone()))
                .chain(c.children.iter().map(|m| m.0.clone())),
        )?;
        for (name, child) in c.children.iter().rev() {
            stack.push((join(&path, name), *child));
        }
        out.push(Node {
            path,
            module: m,
            params: c.params,
            buffers: c.buffers,
            children: c.children,
        });
    }
    Ok(out)
}

/// A mutable slot met while walking.
pub(crate) enum Slot<'a> {
    Param(&'a mut Parameter),
    Buffer(&'a mut Buffer),
}

struct WalkMut<'f> {
    prefix: String,
    f: &'f mut dyn FnMut(&str, Slot<'_>),
}

impl VisitorMut for WalkMut<'_> {
    fn parameter(&mut self, name: &str, p: &mut Parameter) {
        (self.f)(&join(&self.prefix, name), Slot::Param(p));
    }
    fn buffer(&mut self, name: &str, b: &mut Buffer) {
        (self.f)(&join(&self.prefix, name), Slot::Buffer(b));
    }
    fn module(&mut self, name: &str, m: &mut dyn Module) {
        let saved = std::mem::take(&mut self.prefix);
        self.prefix = join(&saved, name);
        m.visit_mut(self);
        self.prefix = saved;
    }
}

/// Calls `f` with the dotted path of every parameter and buffer, mutably.
pub(crate) fn for_each_mut(root: &mut dyn Module, f: &mut dyn FnMut(&str, Slot<'_>)) {
    let mut w = WalkMut {
        prefix: String::new(),
        f,
    };
    root.visit_mut(&mut w);
}

/// Replaces tensors by path; paths not in `new` are left alone. Cannot fail.
pub(crate) fn commit(root: &mut dyn Module, mut new: HashMap<String, Tensor>) {
    for_each_mut(root, &mut |path, slot| {
        if let Some(t) = new.remove(path) {
            match slot {
                Slot::Param(p) => p.set(t),
                Slot::Buffer(b) => b.set(t),
            }
        }
    });
}

fn kind_of_param(p: &Parameter) -> TensorKind {
    if p.requires_grad() {
        TensorKind::Parameter
    } else {
        TensorKind::FrozenParameter
    }
}

fn kind_of_buffer(b: &Buffer) -> TensorKind {
    if b.persistent() {
        TensorKind::Buffer
    } else {
        TensorKind::NonPersistentBuffer
    }
}

/// Every tensor of the tree with its kind, in PyTorch's state-dict order (per module: own
/// parameters, own buffers; modules in pre-order).
pub(crate) fn tensors(root: &dyn Module) -> Result<Vec<(String, TensorKind, &Tensor)>> {
    let mut out = Vec::new();
    for n in walk(root)? {
        for (name, p) in &n.params {
            out.push((join(&n.path, name), kind_of_param(p), p.tensor()));
        }
        for (name, b) in &n.buffers {
            out.push((join(&n.path, name), kind_of_buffer(b), b.tensor()));
        }
    }
    Ok(out)
}

fn lookup<'a>(root: &'a dyn Module, kind: &'static str, path: &str) -> Result<(Node<'a>, String)> {
    let parts: Vec<&str> = if path.is_empty() {
        vec![]
    } else {
        path.split('.').collect()
    };
    let (mods, last) = match kind {
        "submodule" => (&parts[..], None),
        _ => match parts.split_last() {
            Some((l, m)) => (m, Some(*l)),
            None => {
                return Err(Error::NotFound {
                    kind,
                    path: path.into(),
                    missing: String::new(),
                    parent: String::new(),
                    available: vec![],
                })
            }
        },
    };
    let mut cur = root;
    let mut cur_path = String::new();
    for part in mods {
        let mut c = Collect::default();
        cur.visit(&mut c);
        match c.children.iter().find(|(n, _)| n == part) {
            Some((_, m)) => {
                cur = *m;
                cur_path = join(&cur_path, part);
            }
            None => {
                return Err(Error::NotFound {
                    kind,
                    path: path.into(),
                    missing: part.to_string(),
                    parent: cur_path,
                    available: c.children.iter().map(|c| c.0.clone()).collect(),
                })
            }
        }
    }
    let mut c = Collect::default();
    cur.visit(&mut c);
    Ok((
        Node {
            path: cur_path,
            module: cur,
            params: c.params,
            buffers: c.buffers,
            children: c.children,
        },
        last.unwrap_or_default().to_string(),
    ))
}

/// What every module gets: PyTorch's `nn.Module` methods, built on [`Module::visit`].
pub trait ModuleExt: Module {
    /// `named_parameters()`: (dotted name, parameter), frozen ones included.
    fn named_parameters(&self) -> Result<Vec<(String, &Parameter)>> {
        Ok(walk(self.as_dyn())?
            .into_iter()
            .flat_map(|n| {
                let path = n.path;
                n.params.into_iter().map(move |(k, p)| (join(&path, &k), p))
            })
            .collect())
    }
    /// `parameters()`.
    fn parameters(&self) -> Result<Vec<&Parameter>> {
        Ok(self.named_parameters()?.into_iter().map(|p| p.1).collect())
    }
    /// `named_buffers()`: persistent and non-persistent.
    fn named_buffers(&self) -> Result<Vec<(String, &Buffer)>> {
        Ok(walk(self.as_dyn())?
            .into_iter()
            .flat_map(|n| {
                let path = n.path;
                n.buffers
                    .into_iter()
                    .map(move |(k, b)| (join(&path, &k), b))
            })
            .collect())
    }
    /// `buffers()`.
    fn buffers(&self) -> Result<Vec<&Buffer>> {
        Ok(self.named_buffers()?.into_iter().map(|b| b.1).collect())
    }
    /// `named_modules()`: the module itself as `""`, then every descendant in pre-order.
    fn named_modules(&self) -> Result<Vec<(String, &dyn Module)>> {
        Ok(walk(self.as_dyn())?
            .into_iter()
            .map(|n| (n.path, n.module))
            .collect())
    }
    /// `named_children()`: direct children only.
    fn named_children(&self) -> Result<Vec<(String, &dyn Module)>> {
        let mut nodes = walk(self.as_dyn())?;
        Ok(if nodes.is_empty() {
            vec![]
        } else {
            nodes.swap_remove(0).children
        })
    }
    /// `get_parameter("a.b.weight")`.
    fn get_parameter(&self, path: &str) -> Result<&Parameter> {
        let (node, name) = lookup(self.as_dyn(), "parameter", path)?;
        node.params
            .iter()
            .find(|p| p.0 == name)
            .map(|p| p.1)
            .ok_or_else(|| Error::NotFound {
                kind: "parameter",
                path: path.into(),
                missing: name,
                parent: node.path.clone(),
                available: node.params.iter().map(|p| p.0.clone()).collect(),
            })
    }
    /// `get_buffer("bn.running_mean")`.
    fn get_buffer(&self, path: &str) -> Result<&Buffer> {
        let (node, name) = lookup(self.as_dyn(), "buffer", path)?;
        node.buffers
            .iter()
            .find(|b| b.0 == name)
            .map(|b| b.1)
            .ok_or_else(|| Error::NotFound {
                kind: "buffer",
                path: path.into(),
                missing: name,
                parent: node.path.clone(),
                available: node.buffers.iter().map(|b| b.0.clone()).collect(),
            })
    }
    /// `get_submodule("encoder.layers.0")`; `""` is the module itself.
    fn get_submodule(&self, path: &str) -> Result<&dyn Module> {
        Ok(lookup(self.as_dyn(), "submodule", path)?.0.module)
    }
    /// `requires_grad_(on)` over the whole subtree: freezes or unfreezes every parameter.
    fn set_requires_grad(&mut self, on: bool) -> Result<()> {
        walk(self.as_dyn())?;
        for_each_mut(self.as_dyn_mut(), &mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.set_requires_grad(on)
            }
        });
        Ok(())
    }
    /// Every tensor with its kind, shape, dtype, device and size (the summary's rows).
    fn tensor_infos(&self) -> Result<Vec<TensorInfo>> {
        Ok(tensors(self.as_dyn())?
            .into_iter()
            .map(|(path, kind, t)| TensorInfo {
                path,
                kind,
                shape: t.shape().to_vec(),
                dtype: t.dtype(),
                device: t.device(),
                bytes: t.nbytes(),
            })
            .collect())
    }
    /// Number of parameter elements (frozen ones included).
    fn num_parameters(&self) -> Result<usize> {
        Ok(self.parameters()?.iter().map(|p| p.tensor().numel()).sum())
    }
    /// Bytes held by parameters.
    fn parameter_bytes(&self) -> Result<usize> {
        Ok(self.parameters()?.iter().map(|p| p.tensor().nbytes()).sum())
    }
    /// Bytes held by buffers (persistent or not).
    fn buffer_bytes(&self) -> Result<usize> {
        Ok(self.buffers()?.iter().map(|b| b.tensor().nbytes()).sum())
    }
    /// `model.to(device)`: every parameter and buffer (non-persistent too) of the tree moves, in
    /// one batched upload (one staging copy, one submission) when going to a GPU. Tensors already
    /// there are not copied. On failure nothing has changed.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        let all = tensors(self.as_dyn())?;
        let todo: Vec<(String, &Tensor)> = all
            .into_iter()
            .filter(|(_, _, t)| !t.is_on(device))
            .map(|(p, _, t)| (p, t))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = todo.iter().map(|t| t.1).collect();
        let moved = to_device_many(&refs, device)?;
        let new: HashMap<String, Tensor> = todo.into_iter().map(|t| t.0).zip(moved).collect();
        commit(self.as_dyn_mut(), new);
        Ok(())
    }
    /// `state_dict()`: parameters and persistent buffers, PyTorch's keys and order, as CPU copies.
    fn state_dict(&self) -> Result<StateDict> {
        crate::state_dict::from_module(self.as_dyn())
    }
    /// `load_state_dict(sd, strict)`: checks everything first (missing, unexpected, shapes,
    /// dtypes) and reports every problem in one error; changes nothing unless all is well.
    fn load_state_dict(&mut self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        crate::state_dict::load_into(self.as_dyn_mut(), sd, strict)
    }
    /// PyTorch's repr: `Name(\n  (child): Child(extra)\n)`.
    fn repr(&self) -> String {
        super::print::repr(self.as_dyn())
    }
    /// A table of every tensor: path, kind, in state_dict, shape, dtype, device, bytes.
    fn summary(&self) -> Result<String> {
        super::print::summary(self.as_dyn())
    }
    #[doc(hidden)]
    fn as_dyn(&self) -> &dyn Module;
    #[doc(hidden)]
    fn as_dyn_mut(&mut self) -> &mut dyn Module;
}

impl<M: Module> ModuleExt for M {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Module {
        self
    }
}

impl ModuleExt for dyn Module + '_ {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Module {
        self
    }
}
