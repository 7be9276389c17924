//! Reverse-mode automatic differentiation, as PyTorch does it: a graph recorded while ops run.
//!
//! Every tensor may carry where it came from: nothing (a constant, an input, a buffer), a
//! trainable parameter's leaf (its gradient slot), or the op node that made it. An op records a
//! node only when one of its inputs carries an origin and recording is on ([`no_grad`] turns it
//! off), so inference on frozen weights and buffers records nothing. A node holds its inputs'
//! origins and a closure that maps the output's gradient to the inputs' gradients, written with
//! the same ops as forward, so gradients are computed where the tensors live (CPU or GPU, no
//! host round trip). [`Tensor::backward`] visits the nodes newest first (creation order is a
//! topological order: a node's inputs exist before it), sums the gradients that meet at a
//! tensor, and adds each leaf's gradient into its parameter's `grad` (accumulating, as
//! `loss.backward()` does; `zero_grad` clears it).
//!
//! Why a tape and not per-layer backward functions: each op's backward is written once, next to
//! nothing but its own forward, and every model built from ops (the tutorial's, or one a user
//! writes) differentiates without a line of its own. Saved tensors are stored detached, so the
//! graph holds no cycles.
//!
//! The tape frees as it goes: a node's backward is an `FnOnce` that owns what the node saved,
//! and [`Tensor::backward`] takes it out and drops it (saved tensors and all) as soon as it
//! has run, so a training step's memory falls during backward instead of staying at all
//! activations plus all gradients until the loss is dropped. A second backward through the same
//! graph is then an error that says so (PyTorch's `retain_graph=False` default). Configurations
//! an op cannot differentiate are refused when the op is recorded, not in backward.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Where a tensor that requires a gradient came from.
#[derive(Clone)]
pub(crate) enum Origin {
    /// A trainable parameter: its gradient slot.
    Leaf(Arc<Leaf>),
    /// The output of a recorded op.
    Node(Arc<Node>),
}

/// A trainable parameter's gradient slot, shared by the [`Parameter`](crate::Parameter) and
/// every tensor handed out from it.
#[derive(Default)]
pub(crate) struct Leaf {
    pub(crate) grad: Mutex<Option<Tensor>>,
}

impl Leaf {
    pub(crate) fn get(&self) -> Option<Tensor> {
        self.grad.lock().map(|g| g.clone()).unwrap_or(None)
    }
    pub(crate) fn set(&self, g: Option<Tensor>) {
        if let Ok(mut slot) = self.grad.lock() {
            *slot = g;
        }
    }
}

/// Maps the output's gradient to the inputs' gradients. `needs[i]` says whether input `i`
/// wants one (others may be `None`); the result has one entry per input. Called at most once:
/// what it owns (the tensors the op saved) is dropped when it returns.
pub(crate) type BackwardFn =
    Box<dyn FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

/// One recorded op.
pub(crate) struct Node {
    id: u64,
    name: &'static str,
    inputs: Vec<Option<Origin>>,
    shapes: Vec<Vec<usize>>,
    dtypes: Vec<crate::DType>,
    /// Taken (and so freed) by the backward that runs it.
    backward: Mutex<Option<BackwardFn>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread (true unless inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Runs `f` without recording (`with torch.no_grad():`): for evaluation, and inside optimizers.
/// Recording is restored afterwards, even on an early return.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENABLED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(false)));
    f()
}

/// Records `out` as made by op `name` from `inputs`: `backward` is built (and the tensors it
/// saves are kept) only when an input carries an origin and recording is on. Saved tensors must
/// be detached ([`Tensor::detach`]) so the graph holds no cycles.
pub(crate) fn record(
    name: &'static str,
    out: Tensor,
    inputs: &[&Tensor],
    backward: impl FnOnce() -> BackwardFn,
) -> Tensor {
    if !is_grad_enabled() || inputs.iter().all(|t| t.origin().is_none()) {
        return out;
    }
    let node = Node {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name,
        inputs: inputs.iter().map(|t| t.origin().cloned()).collect(),
        shapes: inputs.iter().map(|t| t.shape().to_vec()).collect(),
        dtypes: inputs.iter().map(|t| t.dtype()).collect(),
        backward: Mutex::new(Some(backward())),
    };
    out.with_origin(Some(Origin::Node(Arc::new(node))))
}

/// Refuses, when the op is recorded, an input the op cannot differentiate with respect to
/// (a mask, given statistics) that requires a gradient: silently giving it none would be a
/// wrong gradient, and failing only in backward would be too late to say where.
pub(crate) fn refuse_grad(op: &str, t: &Tensor, what: &str) -> Result<()> {
    if is_grad_enabled() && t.origin().is_some() {
        return Err(Error::invalid(format!(
            "{op}: the {what} requires a gradient, which {op} cannot give it; detach it \
             (or compute it inside no_grad)"
        )));
    }
    Ok(())
}

/// Whether input `i` of a backward wants a gradient.
pub(crate) fn wants(needs: &[bool], i: usize) -> bool {
    needs.get(i).copied().unwrap_or(false)
}

/// Adds `g` into `slot` (the first gradient is taken as is).
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        Some(prev) => crate::ops::add(&prev, &g)?,
    });
    Ok(())
}

/// `root.backward(grad)`: see the module docs.
pub(crate) fn backward(root: &Tensor, grad: Tensor) -> Result<()> {
    let origin = root.origin().cloned().ok_or_else(|| {
        Error::invalid(
            "backward: this tensor does not require a gradient (no trainable parameter took \
             part in computing it, or it was computed inside no_grad)",
        )
    })?;
    if grad.shape() != root.shape() {
        return Err(Error::shape(
            "backward",
            format!(
                "the gradient has shape {:?}, the tensor {:?}",
                grad.shape(),
                root.shape()
            ),
        ));
    }
    no_grad(|| {
        // Every node that reaches the root, by id (= creation order).
        let mut nodes: BTreeMap<u64, Arc<Node>> = BTreeMap::new();
        let mut stack: Vec<Arc<Node>> = Vec::new();
        if let Origin::Node(n) = &origin {
            stack.push(n.clone());
        }
        while let Some(n) = stack.pop() {
            if nodes.contains_key(&n.id) {
                continue;
            }
            for o in n.inputs.iter().flatten() {
                if let Origin::Node(m) = o {
                    if !nodes.contains_key(&m.id) {
                        stack.push(m.clone());
                    }
                }
            }
            nodes.insert(n.id, n);
        }
        let mut grads: HashMap<u64, Option<Tensor>> = HashMap::new();
        let mut leaves: Vec<(Arc<Leaf>, Option<Tensor>)> = Vec::new();
        let mut give =
            |o: &Origin, g: Tensor, grads: &mut HashMap<u64, Option<Tensor>>| -> Result<()> {
                match o {
                    Origin::Node(n) => accumulate(grads.entry(n.id).or_default(), g),
                    Origin::Leaf(l) => {
                        match leaves.iter_mut().find(|(k, _)| Arc::ptr_eq(k, l)) {
                            Some((_, slot)) => accumulate(slot, g)?,
                            None => leaves.push((l.clone(), Some(g))),
                        }
                        Ok(())
                    }
                }
            };
        give(&origin, grad, &mut grads)?;
        // Newest first; each node leaves the walk's map as it runs, and its closure (with the
        // tensors it saved) is dropped as soon as it has run.
        while let Some((_, node)) = nodes.pop_last() {
            let Some(Some(g)) = grads.remove(&node.id) else {
                continue;
            };
            let needs: Vec<bool> = node.inputs.iter().map(|o| o.is_some()).collect();
            let run = node
                .backward
                .lock()
                .map_err(|_| Error::internal("a poisoned autograd node"))?
                .take()
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "backward through the graph a second time: {} has already run its \
                         backward and freed what it saved (as PyTorch does without \
                         retain_graph=True); run the forward again",
                        node.name
                    ))
                })?;
            let gi = run(&g, &needs)?;
            drop(g);
            for (i, (o, gi)) in node.inputs.iter().zip(gi).enumerate() {
                let (Some(o), Some(gi)) = (o, gi) else {
                    continue;
                };
                if gi.shape() != node.shapes[i].as_slice() {
                    return Err(Error::internal(format!(
                        "backward of {}: input {i} has shape {:?}, its gradient {:?}",
                        node.name,
                        node.shapes[i],
                        gi.shape()
                    )));
                }
                // A gradient takes its input's dtype (PyTorch's engine does the same), so an
                // op that promoted float16 to float32 hands its float16 input a float16 one.
                let gi = match node.dtypes.get(i) {
                    Some(&d) if d != gi.dtype() && d.is_float() => gi.to_dtype(d)?,
                    _ => gi,
                };
                give(o, gi, &mut grads)?;
            }
        }
        for (leaf, g) in leaves {
            let mut slot = leaf.get();
            if let Some(g) = g {
                accumulate(&mut slot, g)?;
            }
            leaf.set(slot);
        }
        Ok(())
    })
}
