//! Walking a module tree: PyTorch's names and order, look-ups by dotted path, and replacing
//! tensors. A leaf of the module tree: imports only the module types and the kinds.

use std::collections::{HashMap, HashSet};

use super::kinds::TensorKind;
use super::{Buffer, Module, Parameter, Visitor, VisitorMut};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

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

/// Why PyTorch would refuse `name` on its own (empty, or with a "."), if it would.
pub(crate) fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("a name cannot be empty")
    } else if name.contains('.') {
        Some("a name cannot contain \".\" (it separates the parts of a path)")
    } else {
        None
    }
}

/// Why a name is refused when the module already uses it.
pub(crate) const NAME_TAKEN: &str =
    "the name is used twice in this module (parameters, buffers and children share one namespace)";

/// Checks one module's names: non-empty, no ".", unique across parameters, buffers and
/// children (PyTorch raises the same in `register_*`).
fn check_names(path: &str, names: impl Iterator<Item = String>) -> Result<()> {
    let mut seen = HashSet::new();
    for name in names {
        let reason = name_problem(&name).or((!seen.insert(name.clone())).then_some(NAME_TAKEN));
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

/// Every module's names checked (DynModule checks them when they are registered and typed
/// modules' field names are valid by construction; this catches a hand-written `visit`).
/// Saving, loading and moving call it.
pub(crate) fn check_tree(root: &dyn Module) -> Result<()> {
    for n in walk(root) {
        check_names(
            &n.path,
            n.params
                .iter()
                .map(|p| p.0.clone())
                .chain(n.buffers.iter().map(|b| b.0.clone()))
                .chain(n.children.iter().map(|m| m.0.clone())),
        )?;
    }
    Ok(())
}

/// Every module of the tree in pre-order (PyTorch's `named_modules` order).
pub(crate) fn walk(root: &dyn Module) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &dyn Module)> = vec![(String::new(), root)];
    while let Some((path, m)) = stack.pop() {
        let mut c = Collect::default();
        m.visit(&mut c);
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
    out
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

impl<'a> VisitorMut<'a> for WalkMut<'_> {
    fn parameter(&mut self, name: &str, p: &'a mut Parameter) {
        (self.f)(&join(&self.prefix, name), Slot::Param(p));
    }
    fn buffer(&mut self, name: &str, b: &'a mut Buffer) {
        (self.f)(&join(&self.prefix, name), Slot::Buffer(b));
    }
    fn module(&mut self, name: &str, m: &'a mut dyn Module) {
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

pub(crate) fn kind_of_param(p: &Parameter) -> TensorKind {
    if p.requires_grad() {
        TensorKind::Parameter
    } else {
        TensorKind::FrozenParameter
    }
}

pub(crate) fn kind_of_buffer(b: &Buffer) -> TensorKind {
    if b.persistent() {
        TensorKind::Buffer
    } else {
        TensorKind::NonPersistentBuffer
    }
}

/// Every tensor of the tree with its kind, in PyTorch's state-dict order (per module: own
/// parameters, own buffers; modules in pre-order).
pub(crate) fn tensors(root: &dyn Module) -> Vec<(String, TensorKind, &Tensor)> {
    let mut out = Vec::new();
    for n in walk(root) {
        for (name, p) in &n.params {
            out.push((join(&n.path, name), kind_of_param(p), p.tensor()));
        }
        for (name, b) in &n.buffers {
            out.push((join(&n.path, name), kind_of_buffer(b), b.tensor()));
        }
    }
    out
}

pub(crate) fn lookup<'a>(
    root: &'a dyn Module,
    kind: &'static str,
    path: &str,
) -> Result<(Node<'a>, String)> {
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
