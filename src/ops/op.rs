//! The op abstraction. An op is one file in `src/ops/`: a struct built by a constructor that
//! does its checks (shapes, dtypes, with errors that name them), and an [`Op`] impl with its CPU
//! path and its GPU path side by side. [`run`] does the rest once for every op: inputs on one
//! device, the output allocated (from the device's pool on a GPU), one error scope per call, the
//! GPU launches recorded into the device's pending command buffers.
//!
//! Inputs arrive dense: [`run`] makes views contiguous first (one strided gather each), unless
//! the op reads layouts itself ([`Op::reads_layout`], as the matrix products do).
//!
//! Adding an op with its backward, in four files:
//! 1. `src/ops/<name>.rs` (or the family's file: `math.rs` for elementwise math, `reduce.rs`
//!    for reductions): the public function checks its inputs, calls [`run`], and records its
//!    backward next to it with `autograd::record(name, y, &inputs, || Box::new(move |g, needs|
//!    …))`, written with ops (so it runs on the tensors' device); inputs it cannot
//!    differentiate are refused with `autograd::refuse_grad` when recorded. A function that
//!    does not call `record` is visibly not differentiable: its output has no gradient path.
//! 2. `shaders/<name>.wgsl`, or a new case of an existing multi-purpose kernel: its code goes in
//!    `src/gpu/codes.rs` (one line), which the shader reads as a generated constant.
//! 3. `src/gpu/kernels.rs`: the kernel and its params struct (one line in the table; a test
//!    checks the struct against naga's layout and the bindings against the shader).
//! 4. `src/ops/mod.rs`: the export. Then a test: the CPU against a reference, the GPU against
//!    the CPU (bit-identical or within the stated bound), and a finite-difference case in
//!    `tests/autograd.rs`.
//!
//! An elementwise math op that is a new case of `unary.wgsl` touches three: `codes.rs` (its
//! code), `unary.wgsl` (its case) and `math.rs` (its CPU value, public function and backward).

use std::sync::Arc;

use crate::device::Device;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::GpuContext;
use crate::tensor::{HostBytes, Tensor};

/// One op: its output, and how to compute it on each device. Inputs reach the paths already
/// checked to be on one device; `out` has the output's byte size.
pub(crate) trait Op {
    /// The name errors use (`"broadcast_add"`).
    fn name(&self) -> &'static str;
    /// The output's shape.
    fn out_shape(&self) -> &[usize];
    /// The output's dtype.
    fn out_dtype(&self) -> DType {
        DType::F32
    }
    /// The CPU path: fill `out` from the inputs' host bytes.
    fn cpu(&self, inputs: &[&HostBytes], out: &mut HostBytes) -> Result<()>;
    /// The GPU path: record the launches that fill `out` (inside the op's error scope).
    fn gpu(&self, ctx: &Arc<GpuContext>, inputs: &[&GpuBuffer], out: &GpuBuffer) -> Result<()>;
    /// Whether the op reads its inputs' whole storage through their layouts itself (the
    /// strided gather). Every other op gets dense inputs: [`run`] makes views contiguous.
    fn reads_layout(&self) -> bool {
        false
    }
    /// Whether the op moves its inputs' bits as they are, whatever their dtype (the strided
    /// gather, the casts). Every other op computes in float32: [`run`] widens float16 and
    /// bfloat16 inputs to float32 first and rounds the output back once.
    fn moves_bits(&self) -> bool {
        false
    }
    /// Whether input `i` is an operand whose dtype the result takes (a mask, a condition or
    /// given statistics do not change it, as in PyTorch).
    fn is_operand(&self, _i: usize) -> bool {
        true
    }
    /// Floating-point operations the op does, for profiles (a multiply-add is 2), where its
    /// work is not its bytes; 0 for the others.
    fn flops(&self) -> u64 {
        0
    }
}

/// The dtype of a float op's result: its float inputs' dtype when they share one, float32
/// when they mix (as PyTorch promotes `float16 + float32` and `float16 + bfloat16`).
fn promoted(inputs: &[&Tensor]) -> Option<DType> {
    let mut out: Option<DType> = None;
    for d in inputs.iter().map(|t| t.dtype()).filter(|d| d.is_float()) {
        out = Some(match out {
            None => d,
            Some(o) if o == d => d,
            Some(_) => DType::F32,
        });
    }
    out
}

/// Runs `op` on the device of its inputs (or on `device` when it has none). Views among the
/// inputs are made contiguous first (a copy only where the layout is not dense), unless the op
/// reads layouts itself.
pub(crate) fn run(op: &impl Op, inputs: &[&Tensor], device: Option<&Device>) -> Result<Tensor> {
    if !op.moves_bits() && inputs.iter().any(|t| t.dtype().is_half()) {
        // Compute in float32, round once on store.
        let wide = crate::autograd::no_grad(|| {
            inputs
                .iter()
                .map(|t| {
                    if t.dtype().is_half() && op.reads_layout() {
                        crate::ops::cast::widen_keeping_layout(t)
                    } else if t.dtype().is_half() {
                        crate::ops::cast::cast(t, DType::F32)
                    } else {
                        Ok((*t).clone())
                    }
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let refs: Vec<&Tensor> = wide.iter().collect();
        let y = run(op, &refs, device)?;
        let operands: Vec<&Tensor> = (0..inputs.len())
            .filter(|&i| op.is_operand(i))
            .map(|i| inputs[i])
            .collect();
        return match (op.out_dtype(), promoted(&operands)) {
            (DType::F32, Some(d)) if d != DType::F32 => crate::ops::cast::cast(&y, d),
            _ => Ok(y),
        };
    }
    let dense: Vec<Tensor>;
    let inputs: Vec<&Tensor> = if op.reads_layout() || inputs.iter().all(|t| t.is_dense()) {
        inputs.to_vec()
    } else {
        dense = crate::autograd::no_grad(|| {
            inputs
                .iter()
                .map(|t| t.contiguous())
                .collect::<Result<Vec<_>>>()
        })?;
        dense.iter().collect()
    };
    let inputs = inputs.as_slice();
    let device = match (inputs.first(), device) {
        (Some(first), _) => {
            let d = first.device();
            for t in &inputs[1..] {
                if !t.is_on(&d) {
                    return Err(Error::DeviceMismatch {
                        op: op.name().into(),
                        a: d.to_string(),
                        b: t.device().to_string(),
                    });
                }
            }
            d
        }
        (None, Some(d)) => d.clone(),
        (None, None) => return Err(Error::internal(format!("{}: no device", op.name()))),
    };
    let shape = op.out_shape().to_vec();
    let numel = crate::tensor::numel_of(&shape)?;
    let bytes = numel.checked_mul(op.out_dtype().size()).ok_or_else(|| {
        Error::invalid(format!(
            "{}: output shape {shape:?} is larger than memory",
            op.name()
        ))
    })?;
    match &device {
        Device::Cpu => {
            let hosts = inputs
                .iter()
                .map(|t| {
                    t.store()?;
                    let h = if op.reads_layout() {
                        t.storage_host()
                    } else {
                        t.host()
                    };
                    h.ok_or_else(|| Error::internal("CPU tensor without host data"))
                })
                .collect::<Result<Vec<_>>>()?;
            let mut out = HostBytes::zeroed(bytes)?;
            match crate::profile::begin(None, op.name()) {
                None => op.cpu(&hosts, &mut out)?,
                Some(event) => {
                    let t0 = std::time::Instant::now();
                    let r = op.cpu(&hosts, &mut out);
                    crate::profile::end(None, event, t0.elapsed());
                    r?;
                    crate::profile::annotate(None, read_bytes(inputs), bytes as u64, op.flops());
                }
            }
            Tensor::from_host(out, &shape, op.out_dtype())
        }
        Device::Gpu(g) => {
            let bufs = inputs
                .iter()
                .map(|t| {
                    t.store()?;
                    let b = if op.reads_layout() {
                        t.storage_buffer()
                    } else {
                        t.gpu_buffer()
                    };
                    b.ok_or_else(|| Error::internal("GPU tensor without a buffer"))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = g.0.scoped(op.name(), || {
                let out = GpuBuffer::output(&g.0, bytes as u64)?;
                if numel > 0 {
                    op.gpu(&g.0, &bufs, &out)?;
                }
                Ok(out)
            })?;
            crate::profile::annotate(Some(g.0.id), read_bytes(inputs), bytes as u64, op.flops());
            Ok(Tensor::from_gpu(out, shape, op.out_dtype(), g))
        }
    }
}

/// Bytes of an op's inputs (their views), for profiles.
fn read_bytes(inputs: &[&Tensor]) -> u64 {
    inputs.iter().map(|t| t.nbytes() as u64).sum()
}

/// The float ops take float32, float16 and bfloat16 (computing in float32): anything else is
/// an error that says how to convert.
pub(crate) fn check_float(op: &str, t: &Tensor, which: &str) -> Result<()> {
    if !crate::ops::cast::is_kernel_float(t.dtype()) {
        return Err(Error::Dtype {
            op: format!("{op} ({which})"),
            expected: "float32, float16 or bfloat16 (the kernels compute in float32; convert \
                       with .to_dtype(DType::F32))"
                .into(),
            got: t.dtype().name().into(),
        });
    }
    Ok(())
}

/// The operands of a product or a convolution must share one dtype, as PyTorch refuses
/// (`mat1 and mat2 must have the same dtype, but got Half and Float`): no silent promotion.
pub(crate) fn check_same_dtype(op: &str, operands: &[(&Tensor, &str)]) -> Result<()> {
    let Some((first, first_name)) = operands.first() else {
        return Ok(());
    };
    for (t, name) in &operands[1..] {
        if t.dtype() != first.dtype() {
            return Err(Error::Dtype {
                op: format!("{op} ({name})"),
                expected: format!(
                    "the dtype of {first_name}, {} ({first_name} and {name} must have the same \
                     dtype; convert one with .to_dtype)",
                    first.dtype().name()
                ),
                got: t.dtype().name().into(),
            });
        }
    }
    Ok(())
}
