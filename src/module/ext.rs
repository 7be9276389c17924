//! `ModuleExt`: PyTorch's `nn.Module` methods, built once on [`Module::visit`]. The façade on
//! top: imports the walk, the kinds, printing and state dicts; nothing imports it back.

use std::collections::HashMap;

use super::kinds::TensorInfo;
use super::walk::{check_tree, commit, for_each_mut, join, lookup, tensors, walk, Slot};
use super::{Buffer, Module, Parameter};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::state_dict::{LoadReport, StateDict};
use crate::tensor::{to_device_many, Tensor};

/// What every module gets: PyTorch's `nn.Module` methods, built on [`Module::visit`].
pub trait ModuleExt: Module {
    /// `named_parameters()`: (dotted name, parameter), frozen ones included.
    fn named_parameters(&self) -> Vec<(String, &Parameter)> {
        walk(self.as_dyn())
            .into_iter()
            .flat_map(|n| {
                let path = n.path;
                n.params.into_iter().map(move |(k, p)| (join(&path, &k), p))
            })
            .collect()
    }
    /// `parameters()`.
    fn parameters(&self) -> Vec<&Parameter> {
        self.named_parameters().into_iter().map(|p| p.1).collect()
    }
    /// `named_buffers()`: persistent and non-persistent.
    fn named_buffers(&self) -> Vec<(String, &Buffer)> {
        walk(self.as_dyn())
            .into_iter()
            .flat_map(|n| {
                let path = n.path;
                n.buffers
                    .into_iter()
                    .map(move |(k, b)| (join(&path, &k), b))
            })
            .collect()
    }
    /// `buffers()`.
    fn buffers(&self) -> Vec<&Buffer> {
        self.named_buffers().into_iter().map(|b| b.1).collect()
    }
    /// `named_modules()`: the module itself as `""`, then every descendant in pre-order.
    fn named_modules(&self) -> Vec<(String, &dyn Module)> {
        walk(self.as_dyn())
            .into_iter()
            .map(|n| (n.path, n.module))
            .collect()
    }
    /// `named_children()`: direct children only.
    fn named_children(&self) -> Vec<(String, &dyn Module)> {
        let mut nodes = walk(self.as_dyn());
        if nodes.is_empty() {
            vec![]
        } else {
            nodes.swap_remove(0).children
        }
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
    /// `get_submodule(path)`, mutably: to change a layer in place or run its own forward.
    ///
    /// ```
    /// use wgnn::{nn::Linear, Device, DynModule, ModuleExt};
    /// let mut m = DynModule::new("Net");
    /// m.add_module("fc", Linear::new(2, 3)?)?;
    /// let fc = m.get_submodule_mut("fc")?;
    /// let fc = fc.as_any_mut().and_then(|a| a.downcast_mut::<Linear>()).unwrap();
    /// fc.bias = None;
    /// assert_eq!(m.state_dict()?.keys(), ["fc.weight"]);
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    fn get_submodule_mut(&mut self, path: &str) -> Result<&mut dyn Module> {
        // The read-only walk gives the errors (naming what exists); then descend mutably.
        lookup(self.as_dyn(), "submodule", path)?;
        descend(self.as_dyn_mut(), path)
    }
    /// `get_parameter(path)`, mutably (to freeze one parameter, or give it a new value with
    /// [`Parameter::set_tensor`]).
    fn get_parameter_mut(&mut self, path: &str) -> Result<&mut Parameter> {
        self.get_parameter(path)?;
        slot_mut(self.as_dyn_mut(), path)?
            .param
            .ok_or_else(|| Error::internal(format!("parameter {path} vanished")))
    }
    /// `get_buffer(path)`, mutably.
    fn get_buffer_mut(&mut self, path: &str) -> Result<&mut Buffer> {
        self.get_buffer(path)?;
        slot_mut(self.as_dyn_mut(), path)?
            .buffer
            .ok_or_else(|| Error::internal(format!("buffer {path} vanished")))
    }
    /// `module.apply(fn)`: calls `f` on every submodule, children before their parent, then on
    /// the module itself (PyTorch's order). With [`Module::as_any_mut`], `f` can act on one
    /// layer type — what `nn::init` does for PyTorch's default initialisation. The first error
    /// `f` returns stops the walk and is returned.
    ///
    /// ```
    /// use wgnn::nn::{init, Linear};
    /// use wgnn::{ModuleExt, Sequential};
    /// let mut net = Sequential::new().push(Linear::new(4, 8)?).push(Linear::new(8, 2)?);
    /// // for m in net.modules(): if isinstance(m, nn.Linear): nn.init.zeros_(m.bias)
    /// net.apply(&mut |m| {
    ///     if let Some(l) = m.as_any_mut().and_then(|a| a.downcast_mut::<Linear>()) {
    ///         init::zeros_(l.bias.as_mut().unwrap())?;
    ///     }
    ///     Ok(())
    /// })?;
    /// assert_eq!(net.get_parameter("1.bias")?.tensor().to_vec::<f32>()?, [0.0, 0.0]);
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    fn apply(&mut self, f: &mut dyn FnMut(&mut dyn Module) -> Result<()>) -> Result<()> {
        apply_tree(self.as_dyn_mut(), f)
    }
    /// `requires_grad_(on)` over the whole subtree: freezes or unfreezes every parameter.
    fn set_requires_grad(&mut self, on: bool) {
        for_each_mut(self.as_dyn_mut(), &mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.set_requires_grad(on)
            }
        });
    }
    /// `zero_grad()`: drops every parameter's gradient (`p.grad = None`, PyTorch's default).
    fn zero_grad(&mut self) {
        for_each_mut(self.as_dyn_mut(), &mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.zero_grad()
            }
        });
    }
    /// `train()`: sets the training flag of every module of the tree (Dropout drops, BatchNorm
    /// uses and updates batch statistics). Modules start in training mode, as in PyTorch.
    fn train(&mut self) {
        set_training_tree(self.as_dyn_mut(), true);
    }
    /// `eval()`: the inference mode of every module of the tree (Dropout is the identity,
    /// BatchNorm uses its running statistics).
    fn eval(&mut self) {
        set_training_tree(self.as_dyn_mut(), false);
    }
    /// `training`: the flag of the first module in pre-order that has one (`false` when no
    /// module of the tree depends on the mode).
    fn is_training(&self) -> bool {
        walk(self.as_dyn())
            .into_iter()
            .find_map(|n| n.module.training())
            .unwrap_or(false)
    }
    /// Every tensor with its kind, shape, dtype, device and size (the summary's rows).
    fn tensor_infos(&self) -> Vec<TensorInfo> {
        tensors(self.as_dyn())
            .into_iter()
            .map(|(path, kind, t)| TensorInfo {
                path,
                kind,
                shape: t.shape().to_vec(),
                dtype: t.dtype(),
                device: t.device(),
                bytes: t.nbytes(),
            })
            .collect()
    }
    /// Number of parameter elements (frozen ones included).
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(|p| p.tensor().numel()).sum()
    }
    /// Bytes held by parameters.
    fn parameter_bytes(&self) -> usize {
        self.parameters().iter().map(|p| p.tensor().nbytes()).sum()
    }
    /// Bytes held by buffers (persistent or not).
    fn buffer_bytes(&self) -> usize {
        self.buffers().iter().map(|b| b.tensor().nbytes()).sum()
    }
    /// `model.to(device)`: every parameter and buffer (non-persistent too) of the tree moves, in
    /// one batched upload (one staging copy, one submission) when going to a GPU, and so does
    /// every parameter's gradient, as PyTorch's `Module.to()` moves `.grad` with its parameter.
    /// Tensors already there are not copied. On failure nothing has changed.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        check_tree(self.as_dyn())?;
        let all = tensors(self.as_dyn());
        let grads: Vec<(String, Tensor)> = self
            .named_parameters()
            .into_iter()
            .filter_map(|(path, p)| p.grad().map(|g| (path, g)))
            .filter(|(_, g)| !g.is_on(device))
            .collect();
        let todo: Vec<(String, &Tensor)> = all
            .into_iter()
            .filter(|(_, _, t)| !t.is_on(device))
            .map(|(p, _, t)| (p, t))
            .chain(grads.iter().map(|(p, g)| (p.clone(), g)))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Tensor> = todo.iter().map(|t| t.1).collect();
        let mut moved = to_device_many(&refs, device)?;
        let moved_grads = moved.split_off(todo.len() - grads.len());
        let paths: Vec<String> = todo.into_iter().map(|t| t.0).collect();
        let new: HashMap<String, Tensor> = paths.iter().cloned().zip(moved).collect();
        let new_grads: HashMap<String, Tensor> = paths[paths.len() - grads.len()..]
            .iter()
            .cloned()
            .zip(moved_grads)
            .collect();
        commit(self.as_dyn_mut(), new);
        for_each_mut(self.as_dyn_mut(), &mut |path, slot| {
            if let (Slot::Param(p), Some(g)) = (slot, new_grads.get(path)) {
                p.restore_grad(g.clone());
            }
        });
        Ok(())
    }
    /// `nn.Linear(2, 3).to(device)`: the module moved ([`ModuleExt::to_device`]) and given
    /// back, for building in one expression: `Linear::new(2, 3)?.to(&gpu)?`.
    fn to(mut self, device: &Device) -> Result<Self>
    where
        Self: Sized,
    {
        self.to_device(device)?;
        Ok(self)
    }
    /// `model.to(dtype)` — `model.half()` with [`DType::F16`](crate::DType::F16),
    /// `model.bfloat16()`, `model.float()` — on the tensors' own device: every floating-point
    /// parameter and buffer (persistent or not) is converted, with each parameter's gradient,
    /// as PyTorch's `Module._apply` does; integer and bool buffers keep their dtype (BatchNorm's
    /// `num_batches_tracked` stays int64). `dtype` must be a floating-point type. Every op
    /// computes float16 and bfloat16 in float32 and rounds its output once. On failure
    /// nothing has changed.
    fn to_dtype(&mut self, dtype: crate::DType) -> Result<()> {
        if !dtype.is_float() {
            return Err(Error::Dtype {
                op: "module to_dtype".into(),
                expected: "a floating-point dtype (integer buffers keep theirs)".into(),
                got: dtype.name().into(),
            });
        }
        check_tree(self.as_dyn())?;
        let (new, grads) = crate::autograd::no_grad(|| -> Result<_> {
            let mut new: HashMap<String, Tensor> = HashMap::new();
            for (path, _, t) in tensors(self.as_dyn()) {
                if t.dtype().is_float() && t.dtype() != dtype {
                    new.insert(path, t.to_dtype(dtype)?);
                }
            }
            let mut grads: HashMap<String, Tensor> = HashMap::new();
            for (path, p) in self.named_parameters() {
                if let Some(g) = p.grad() {
                    if g.dtype().is_float() && g.dtype() != dtype {
                        grads.insert(path, g.to_dtype(dtype)?);
                    }
                }
            }
            Ok((new, grads))
        })?;
        commit(self.as_dyn_mut(), new);
        for_each_mut(self.as_dyn_mut(), &mut |path, slot| {
            if let (Slot::Param(p), Some(g)) = (slot, grads.get(path)) {
                p.restore_grad(g.clone());
            }
        });
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
    /// `load_state_dict` of a checkpoint whose names differ: every key goes through `map`
    /// first (two keys mapping to one name is an error). Anything `map` cannot express —
    /// splitting a fused tensor, say — is done on the dict with tensor ops before loading:
    ///
    /// ```
    /// use wgnn::{nn::Linear, ops, Device, DType, ModuleExt, StateDict, Tensor};
    /// # #[derive(wgnn::Module)]
    /// # struct Attn { q: Linear, k: Linear, v: Linear }
    /// # let d = Device::Cpu;
    /// # let mut attn = Attn { q: Linear::new(4, 4)?, k: Linear::new(4, 4)?, v: Linear::new(4, 4)? };
    /// // A checkpoint of torch.nn.MultiheadAttention: one fused in_proj_weight [3E, E].
    /// let mut sd = StateDict::new();
    /// sd.insert("module.attn.in_proj_weight", Tensor::zeros(&[12, 4], DType::F32, &d)?);
    /// sd.insert("module.attn.in_proj_bias", Tensor::zeros(&[12], DType::F32, &d)?);
    /// // Split it into q, k, v with tensor ops...
    /// for (part, name) in ["q", "k", "v"].iter().enumerate() {
    ///     let w = ops::narrow(sd.get("module.attn.in_proj_weight").unwrap(), 0, part * 4, 4)?;
    ///     let b = ops::narrow(sd.get("module.attn.in_proj_bias").unwrap(), 0, part * 4, 4)?;
    ///     sd.insert(format!("module.attn.{name}.weight"), w);
    ///     sd.insert(format!("module.attn.{name}.bias"), b);
    /// }
    /// sd.remove("module.attn.in_proj_weight");
    /// sd.remove("module.attn.in_proj_bias");
    /// // ...then drop DataParallel's `module.` and the wrapper's `attn.` while loading.
    /// attn.load_state_dict_with(&sd, true, |k| k.trim_start_matches("module.attn.").to_string())?;
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    fn load_state_dict_with(
        &mut self,
        sd: &StateDict,
        strict: bool,
        map: impl FnMut(&str) -> String,
    ) -> Result<LoadReport>
    where
        Self: Sized,
    {
        let mapped = sd.map_keys(map)?;
        crate::state_dict::load_into(self.as_dyn_mut(), &mapped, strict)
    }
    /// PyTorch's repr: `Name(\n  (child): Child(extra)\n)`.
    fn repr(&self) -> String {
        super::print::repr(self.as_dyn())
    }
    /// A table of every tensor: path, kind, in state_dict, shape, dtype, device, bytes.
    fn summary(&self) -> String {
        super::print::summary(self.as_dyn())
    }
    #[doc(hidden)]
    fn as_dyn(&self) -> &dyn Module;
    #[doc(hidden)]
    fn as_dyn_mut(&mut self) -> &mut dyn Module;
}

/// Finds one named child or one named slot of a module, keeping the borrow.
struct FindSlot<'a, 'n> {
    name: &'n str,
    param: Option<&'a mut Parameter>,
    buffer: Option<&'a mut Buffer>,
}
impl<'a> super::VisitorMut<'a> for FindSlot<'a, '_> {
    fn parameter(&mut self, name: &str, p: &'a mut Parameter) {
        if name == self.name && self.param.is_none() {
            self.param = Some(p);
        }
    }
    fn buffer(&mut self, name: &str, b: &'a mut Buffer) {
        if name == self.name && self.buffer.is_none() {
            self.buffer = Some(b);
        }
    }
    fn module(&mut self, _: &str, _: &'a mut dyn Module) {}
}

struct FindChild<'a, 'n> {
    name: &'n str,
    found: Option<&'a mut dyn Module>,
}
impl<'a> super::VisitorMut<'a> for FindChild<'a, '_> {
    fn parameter(&mut self, _: &str, _: &'a mut Parameter) {}
    fn buffer(&mut self, _: &str, _: &'a mut Buffer) {}
    fn module(&mut self, name: &str, m: &'a mut dyn Module) {
        if name == self.name && self.found.is_none() {
            self.found = Some(m);
        }
    }
}

/// The parameter and buffer named by the last part of `path` in the module the rest names.
fn slot_mut<'a, 'p>(root: &'a mut dyn Module, path: &'p str) -> Result<FindSlot<'a, 'p>> {
    let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
    let mut f = FindSlot {
        name,
        param: None,
        buffer: None,
    };
    descend(root, parent)?.visit_mut(&mut f);
    Ok(f)
}

/// The submodule at `path` (already checked to exist), mutably.
fn descend<'a>(root: &'a mut dyn Module, path: &str) -> Result<&'a mut dyn Module> {
    let mut cur = root;
    if path.is_empty() {
        return Ok(cur);
    }
    for part in path.split('.') {
        let mut f = FindChild {
            name: part,
            found: None,
        };
        cur.visit_mut(&mut f);
        cur = f
            .found
            .ok_or_else(|| Error::internal(format!("submodule {path} vanished at {part}")))?;
    }
    Ok(cur)
}

/// Children first (each subtree in turn), then the module itself; stops at the first error.
fn apply_tree(m: &mut dyn Module, f: &mut dyn FnMut(&mut dyn Module) -> Result<()>) -> Result<()> {
    struct Apply<'f> {
        f: &'f mut dyn FnMut(&mut dyn Module) -> Result<()>,
        result: Result<()>,
    }
    impl<'a> super::VisitorMut<'a> for Apply<'_> {
        fn parameter(&mut self, _: &str, _: &'a mut Parameter) {}
        fn buffer(&mut self, _: &str, _: &'a mut Buffer) {}
        fn module(&mut self, _: &str, m: &'a mut dyn Module) {
            if self.result.is_ok() {
                self.result = apply_tree(m, self.f);
            }
        }
    }
    let mut a = Apply { f, result: Ok(()) };
    m.visit_mut(&mut a);
    a.result?;
    f(m)
}

/// Sets the flag on `m` and every descendant.
fn set_training_tree(m: &mut dyn Module, on: bool) {
    struct Modes(bool);
    impl<'a> super::VisitorMut<'a> for Modes {
        fn parameter(&mut self, _: &str, _: &'a mut Parameter) {}
        fn buffer(&mut self, _: &str, _: &'a mut Buffer) {}
        fn module(&mut self, _: &str, m: &'a mut dyn Module) {
            set_training_tree(m, self.0);
        }
    }
    m.set_training(on);
    m.visit_mut(&mut Modes(on));
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
