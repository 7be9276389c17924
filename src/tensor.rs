//! `Tensor`: a layout (shape, strides, offset) over storage — host bytes or a wgpu buffer — and
//! a dtype. Storage is immutable and shared: clones and views (`reshape`, `permute`, `narrow`,
//! `expand`, … in [`crate::ops`]) share it and cost no kernel; operations and loads make new
//! storage, so a tensor handed out (a state dict entry, a view of a parameter) never aliases
//! state that changes later: an optimizer step gives the parameter new storage, and a view
//! taken before it keeps the old values. Ops read a view through [`Tensor::contiguous`], which
//! copies only when the layout is not already dense.

use std::fmt;
use std::sync::Arc;

use half::{bf16, f16};

use crate::autograd::Origin;
use crate::device::{Device, GpuDevice};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::gpu::pool::GpuBuffer;
use crate::gpu::transfer;

/// Host bytes kept 8-byte aligned, so they can be viewed as any element type without a copy.
pub(crate) struct HostBytes {
    words: Vec<u64>,
    len: usize,
}

impl HostBytes {
    /// `len` zero bytes, or an error naming the size when the host cannot provide them (never
    /// an abort).
    pub(crate) fn zeroed(len: usize) -> Result<Self> {
        Ok(HostBytes {
            words: try_zeroed_vec(len.div_ceil(8), "a tensor")?,
            len,
        })
    }
    pub(crate) fn from_bytes(b: &[u8]) -> Result<Self> {
        let mut h = HostBytes::zeroed(b.len())?;
        h.bytes_mut().copy_from_slice(b);
        Ok(h)
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut bytemuck::cast_slice_mut(&mut self.words)[..len]
    }
    pub(crate) fn as_f32(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.words)[..self.len / 4]
    }
    pub(crate) fn as_f32_mut(&mut self) -> &mut [f32] {
        let n = self.len / 4;
        &mut bytemuck::cast_slice_mut(&mut self.words)[..n]
    }
}

/// A zero-filled `Vec` of `n` elements, allocated fallibly and zeroed by the allocator (calloc:
/// no pass over the memory): an impossible size is an error naming `what`, not an abort.
pub(crate) fn try_zeroed_vec<T: bytemuck::Zeroable>(n: usize, what: &str) -> Result<Vec<T>> {
    bytemuck::allocation::try_zeroed_vec(n).map_err(|()| Error::OutOfMemory {
        what: what.to_string(),
        bytes: (n as u128) * std::mem::size_of::<T>() as u128,
    })
}

#[derive(Clone)]
pub(crate) enum Storage {
    Host(Arc<HostBytes>),
    Gpu {
        buffer: Arc<GpuBuffer>,
        device: GpuDevice,
    },
    /// A sum not computed yet ([`Tensor::deferred_add`]): computed the first time anything
    /// reads it, or never, when the one op that takes it reads its two operands instead.
    Deferred(Arc<Deferred>),
}

/// `a + b` of two tensors of one shape, dtype and device, recorded under no gradient: the
/// library's first fusion (the roofline issue's engine generalises it). A layer norm or a ReLU
/// whose input is one reads `a + b` inside its own kernel ([`crate::ops::add_layer_norm`],
/// [`crate::ops::add_relu`], the same bits); anything else computes the sum first, and the
/// operands are let go then, so a sum kept alive does not keep them alive too.
pub(crate) struct Deferred {
    device: Device,
    operands: std::sync::Mutex<Option<(Tensor, Tensor)>>,
    done: std::sync::OnceLock<std::result::Result<Storage, Error>>,
}

impl Deferred {
    fn operands(&self) -> std::sync::MutexGuard<'_, Option<(Tensor, Tensor)>> {
        self.operands.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The sum's storage, computed on first use.
    fn resolve(&self) -> std::result::Result<&Storage, &Error> {
        self.done
            .get_or_init(|| {
                let (a, b) = self
                    .operands()
                    .take()
                    .ok_or_else(|| Error::internal("a deferred sum lost its operands"))?;
                let sum = crate::autograd::no_grad(|| crate::ops::broadcast_add(&a, &b))?;
                Ok(sum.storage.clone())
            })
            .as_ref()
    }
}

/// An n-dimensional array on a [`Device`]: a layout over shared storage. Cheap to clone, and
/// views share the storage (which is never mutated).
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    /// Elements between neighbours along each dimension (0 for an expanded one).
    strides: Vec<usize>,
    /// Index of the first element in the storage.
    offset: usize,
    /// Elements of the storage (the dense tensor it was made as).
    storage_numel: usize,
    dtype: DType,
    pub(crate) storage: Storage,
    /// Where it came from, when it requires a gradient (see [`crate::autograd`]).
    origin: Option<Origin>,
}

/// Rust types that map to a [`DType`]: the numeric types, and `bool` (one byte, 0 or 1).
pub trait Element: Copy + Send + Sync + 'static {
    /// The dtype of this element type.
    const DTYPE: DType;
    /// The little-endian bytes of `data` (borrowed where the layout already is that).
    fn as_bytes(data: &[Self]) -> std::borrow::Cow<'_, [u8]>;
    /// Values from little-endian bytes; an error for bytes that are no value of the type.
    fn from_bytes(bytes: &[u8]) -> Result<Vec<Self>>;
    /// `v` as this type, for constructors taking numbers (`Tensor::full`).
    fn from_f64(v: f64) -> Self;
}
macro_rules! element {
    ($($t:ty => $d:ident, $conv:expr),*) => { $(impl Element for $t {
        const DTYPE: DType = DType::$d;
        fn as_bytes(data: &[Self]) -> std::borrow::Cow<'_, [u8]> {
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(data))
        }
        fn from_bytes(bytes: &[u8]) -> Result<Vec<Self>> {
            Ok(bytemuck::pod_collect_to_vec(bytes))
        }
        fn from_f64(v: f64) -> Self {
            let f: fn(f64) -> $t = $conv;
            f(v)
        }
    })* };
}
impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn as_bytes(data: &[Self]) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(data.iter().map(|&b| b as u8).collect())
    }
    fn from_bytes(bytes: &[u8]) -> Result<Vec<Self>> {
        bytes
            .iter()
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                v => Err(Error::invalid(format!("a bool tensor holds the byte {v}"))),
            })
            .collect()
    }
    fn from_f64(v: f64) -> Self {
        v != 0.0
    }
}
element!(f32 => F32, |v| v as f32, f64 => F64, |v| v, f16 => F16, f16::from_f64,
    bf16 => BF16, bf16::from_f64, i64 => I64, |v| v as i64, i32 => I32, |v| v as i32,
    i16 => I16, |v| v as i16, i8 => I8, |v| v as i8, u8 => U8, |v| v as u8, u16 => U16,
    |v| v as u16, u32 => U32, |v| v as u32, u64 => U64, |v| v as u64);

/// Element count of a shape, or an error on overflow.
pub(crate) fn numel_of(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::invalid(format!(
                "shape {shape:?} has more elements than fit in memory"
            ))
        })
}

impl Tensor {
    pub(crate) fn from_parts(shape: Vec<usize>, dtype: DType, storage: Storage) -> Tensor {
        Tensor {
            strides: crate::ops::contiguous_strides(&shape),
            offset: 0,
            storage_numel: shape.iter().product(),
            shape,
            dtype,
            storage,
            origin: None,
        }
    }

    /// A view of this tensor's storage with another layout (no origin: the view op records).
    /// The caller guarantees every index it can reach lies inside the storage.
    pub(crate) fn view_of(&self, shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Tensor {
        Tensor {
            shape,
            strides,
            offset,
            storage_numel: self.storage_numel,
            dtype: self.dtype,
            storage: self.storage.clone(),
            origin: None,
        }
    }

    /// Elements between neighbours along each dimension (`t.stride()`); 0 along an expanded
    /// dimension.
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Elements in the storage this tensor views.
    pub(crate) fn storage_numel(&self) -> usize {
        self.storage_numel
    }

    /// Index of the first element in the storage (`t.storage_offset()`).
    pub fn storage_offset(&self) -> usize {
        self.offset
    }

    /// Whether the elements lie in row-major order without gaps (`t.is_contiguous()`; sizes
    /// of 1 may carry any stride, as in PyTorch).
    pub fn is_contiguous(&self) -> bool {
        let mut want = 1;
        for (&d, &st) in self.shape.iter().zip(&self.strides).rev() {
            if d == 0 {
                return true;
            }
            if d != 1 && st != want {
                return false;
            }
            want *= d;
        }
        true
    }

    /// Whether the tensor is its whole storage in row-major order: what kernels read.
    pub(crate) fn is_dense(&self) -> bool {
        self.offset == 0 && self.numel() == self.storage_numel && self.is_contiguous()
    }

    /// The same values with a dense layout (`t.contiguous()`): the tensor itself (shared) when
    /// it already is, else a copy through one strided gather (the same bits on every device).
    /// Differentiable.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_dense() {
            return Ok(self.clone());
        }
        crate::ops::materialize(self)
    }

    fn check_len(shape: &[usize], dtype: DType, got_bytes: usize) -> Result<()> {
        let n = numel_of(shape)?;
        let expected_bytes = n.checked_mul(dtype.size()).ok_or_else(|| {
            Error::invalid(format!("shape {shape:?} of {dtype} is larger than memory"))
        })?;
        if expected_bytes != got_bytes {
            return Err(Error::DataLength {
                shape: shape.to_vec(),
                dtype: dtype.name(),
                expected: n,
                expected_bytes,
                got_bytes,
            });
        }
        Ok(())
    }

    /// A CPU tensor from a slice. The slice length must equal the shape's element count.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_bytes(&T::as_bytes(data), shape, T::DTYPE)
    }

    /// A CPU tensor from raw little-endian bytes of `dtype`.
    pub fn from_bytes(bytes: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::check_len(shape, dtype, bytes.len())?;
        Ok(Tensor::from_parts(
            shape.to_vec(),
            dtype,
            Storage::Host(Arc::new(HostBytes::from_bytes(bytes)?)),
        ))
    }

    /// A tensor over an op's output buffer on `device`.
    pub(crate) fn from_gpu(
        buffer: GpuBuffer,
        shape: Vec<usize>,
        dtype: DType,
        device: &GpuDevice,
    ) -> Tensor {
        Tensor::from_parts(
            shape,
            dtype,
            Storage::Gpu {
                buffer: Arc::new(buffer),
                device: device.clone(),
            },
        )
    }

    pub(crate) fn from_host(host: HostBytes, shape: &[usize], dtype: DType) -> Result<Tensor> {
        Tensor::check_len(shape, dtype, host.len)?;
        Ok(Tensor::from_parts(
            shape.to_vec(),
            dtype,
            Storage::Host(Arc::new(host)),
        ))
    }

    /// A zero-filled tensor on `device`.
    pub fn zeros(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let n = numel_of(shape)?
            .checked_mul(dtype.size())
            .ok_or_else(|| Error::invalid(format!("shape {shape:?} is larger than memory")))?;
        match device {
            Device::Cpu => Tensor::from_host(HostBytes::zeroed(n)?, shape, dtype),
            Device::Gpu(g) => {
                // wgpu zero-initialises new buffers (pooled ones are not: not used here).
                let buffer =
                    g.0.scoped("zeros", || GpuBuffer::fresh(&g.0, n as u64, "wgnn zeros"))?;
                Ok(Tensor::from_gpu(buffer, shape.to_vec(), dtype, g))
            }
        }
    }

    /// The shape (`[]` for a scalar).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bytes of data (not counting device padding).
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
    /// Where the data lives.
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Host(_) => Device::Cpu,
            Storage::Gpu { device, .. } => Device::Gpu(device.clone()),
            Storage::Deferred(d) => d.device.clone(),
        }
    }
    /// True when on `device`.
    pub fn is_on(&self, device: &Device) -> bool {
        match (&self.storage, device) {
            (Storage::Host(_), Device::Cpu) => true,
            (Storage::Gpu { device: a, .. }, Device::Gpu(b)) => a == b,
            (Storage::Deferred(d), _) => d.device == *device,
            _ => false,
        }
    }

    /// `a + b` (same shape, dtype and device; nothing recorded for autograd), left uncomputed
    /// until something reads it: a layer norm taking it adds inside its own kernel. Falls back
    /// to the eager sum whenever those conditions do not hold.
    pub(crate) fn deferred_add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let records =
            crate::autograd::is_grad_enabled() && (a.requires_grad() || b.requires_grad());
        let same = a.shape == b.shape
            && a.dtype == b.dtype
            && crate::ops::cast::is_kernel_float(a.dtype)
            && a.device() == b.device();
        if records || !same {
            return crate::ops::broadcast_add(a, b);
        }
        let n = a.numel();
        Ok(Tensor {
            shape: a.shape.clone(),
            strides: crate::ops::contiguous_strides(&a.shape),
            offset: 0,
            storage_numel: n,
            dtype: a.dtype,
            storage: Storage::Deferred(Arc::new(Deferred {
                device: a.device(),
                operands: std::sync::Mutex::new(Some((a.clone(), b.clone()))),
                done: std::sync::OnceLock::new(),
            })),
            origin: None,
        })
    }

    /// The operands of a deferred sum not computed yet, when this tensor is that whole sum.
    pub(crate) fn pending_add(&self) -> Option<(Tensor, Tensor)> {
        match &self.storage {
            Storage::Deferred(d) if self.is_dense() => d.operands().clone(),
            _ => None,
        }
    }

    /// Whether both view one storage (the same allocation, not equal values).
    pub(crate) fn shares_storage(&self, other: &Tensor) -> bool {
        match (&self.storage, &other.storage) {
            (Storage::Host(a), Storage::Host(b)) => Arc::ptr_eq(a, b),
            (Storage::Gpu { buffer: a, .. }, Storage::Gpu { buffer: b, .. }) => Arc::ptr_eq(a, b),
            (Storage::Deferred(a), Storage::Deferred(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The storage, a deferred sum computed first (its error, if computing it failed).
    pub(crate) fn store(&self) -> Result<&Storage> {
        match &self.storage {
            Storage::Deferred(d) => d.resolve().map_err(|e| e.clone()),
            s => Ok(s),
        }
    }

    /// The storage when it can be had (`None` if a deferred sum failed: the op reading it then
    /// reports a missing operand, and [`Tensor::store`] the cause).
    fn st(&self) -> Option<&Storage> {
        self.store().ok()
    }

    /// The host bytes, when on the CPU and dense (a view has none: make it contiguous).
    pub(crate) fn host(&self) -> Option<&HostBytes> {
        match self.st()? {
            Storage::Host(h) if self.is_dense() => Some(h),
            _ => None,
        }
    }

    /// The whole storage's host bytes, whatever the layout (for the strided gather).
    pub(crate) fn storage_host(&self) -> Option<&HostBytes> {
        match self.st()? {
            Storage::Host(h) => Some(h),
            _ => None,
        }
    }

    /// The whole storage's device buffer, whatever the layout (for the strided gather).
    pub(crate) fn storage_buffer(&self) -> Option<&GpuBuffer> {
        match self.st()? {
            Storage::Gpu { buffer, .. } => Some(buffer),
            _ => None,
        }
    }

    /// The wgpu buffer, when on a GPU, for applications that use it in their own wgpu work.
    /// Ops wgnn recorded but has not submitted yet are submitted first, so work the caller
    /// submits afterwards sees the values. The tensor's bytes start at offset 0; the buffer may
    /// be larger than [`Tensor::nbytes`] (it is padded to 4 bytes, and op outputs come from a
    /// pool in size classes). `None` for a view that is not dense: call
    /// [`contiguous`](Tensor::contiguous) first.
    pub fn wgpu_buffer(&self) -> Option<&wgpu::Buffer> {
        match self.st()? {
            Storage::Gpu { buffer, device } if self.is_dense() => {
                if let Err(e) = device.0.flush("wgpu_buffer") {
                    log::error!("wgnn: submitting recorded work failed: {e}");
                }
                Some(buffer.buffer())
            }
            _ => None,
        }
    }

    /// The device buffer, when on a GPU and dense (no flush: for wgnn's own ops, which record
    /// in order).
    pub(crate) fn gpu_buffer(&self) -> Option<&GpuBuffer> {
        match self.st()? {
            Storage::Gpu { buffer, .. } if self.is_dense() => Some(buffer),
            _ => None,
        }
    }

    /// Copies the data to host bytes, in row-major order (reads back from the GPU, bounded
    /// wait; a view is made contiguous first). In a browser, where nothing may block, a GPU
    /// tensor is an error that points to [`Tensor::to_bytes_async`].
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if !self.is_dense() {
            return crate::autograd::no_grad(|| self.contiguous())?.to_bytes();
        }
        match self.store()? {
            Storage::Host(h) => Ok(h.bytes().to_vec()),
            Storage::Deferred(_) => Err(Error::internal("a deferred sum resolved to another")),
            #[cfg(not(target_arch = "wasm32"))]
            Storage::Gpu { .. } => pollster::block_on(self.to_bytes_async()),
            #[cfg(target_arch = "wasm32")]
            Storage::Gpu { .. } => Err(Error::invalid(
                "reading a GPU tensor back blocks, which a browser cannot do: use \
                 to_bytes_async / to_vec_async / item_async",
            )),
        }
    }

    /// [`Tensor::to_bytes`] for every target, the browser included: the one implementation
    /// the blocking form runs natively. In a browser it also reports the first error of the
    /// ops recorded since the last await point, naming the op.
    ///
    /// ```
    /// # fn main() -> wgnn::Result<()> {
    /// use wgnn::{ops, Device, Tensor};
    /// // The same call reads a GPU tensor back (tests/async_api.rs); here, the CPU device.
    /// let x = Tensor::from_slice(&[1f32, -2.0, 3.0], &[3])?.to(&Device::Cpu)?;
    /// let y = ops::relu(&x)?;
    /// // In a browser: `y.to_vec_async::<f32>().await?` inside an async function.
    /// let v = pollster::block_on(y.to_vec_async::<f32>())?;
    /// assert_eq!(v, [1.0, 0.0, 3.0]);
    /// # Ok(()) }
    /// ```
    pub async fn to_bytes_async(&self) -> Result<Vec<u8>> {
        if !self.is_dense() {
            let dense = crate::autograd::no_grad(|| self.contiguous())?;
            return Box::pin(dense.to_bytes_async()).await;
        }
        match self.store()? {
            Storage::Host(h) => Ok(h.bytes().to_vec()),
            Storage::Deferred(_) => Err(Error::internal("a deferred sum resolved to another")),
            Storage::Gpu { buffer, device } => {
                let mut v =
                    transfer::download_many_async(&device.0, &[(buffer, self.nbytes() as u64)])
                        .await?;
                v.pop()
                    .ok_or_else(|| Error::internal("read-back returned nothing"))
            }
        }
    }

    /// Copies the data into a `Vec<T>`; `T` must match the dtype (`u8` also reads `bool`).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        self.check_element::<T>()?;
        T::from_bytes(&self.to_bytes()?)
    }

    /// [`Tensor::to_vec`] for every target, the browser included.
    pub async fn to_vec_async<T: Element>(&self) -> Result<Vec<T>> {
        self.check_element::<T>()?;
        T::from_bytes(&self.to_bytes_async().await?)
    }

    fn check_element<T: Element>(&self) -> Result<()> {
        let ok = T::DTYPE == self.dtype || (T::DTYPE == DType::U8 && self.dtype == DType::Bool);
        if !ok {
            return Err(Error::Dtype {
                op: "to_vec".into(),
                expected: self.dtype.name().into(),
                got: T::DTYPE.name().into(),
            });
        }
        Ok(())
    }

    /// `torch.rand(shape)` with a seeded generator: float32 uniform in [0, 1), computed on
    /// `device`, the same bits on every device for the same seed.
    pub fn rand(
        shape: &[usize],
        generator: &mut crate::ops::Generator,
        device: &Device,
    ) -> Result<Tensor> {
        crate::ops::uniform(shape, 0.0, 1.0, generator, device)
    }

    /// `torch.randn(shape)` with a seeded generator: float32 standard normal, the same bits on
    /// every device for the same seed (see [`crate::ops::normal`]).
    pub fn randn(
        shape: &[usize],
        generator: &mut crate::ops::Generator,
        device: &Device,
    ) -> Result<Tensor> {
        crate::ops::normal(shape, generator, device)
    }

    /// The value of a one-element tensor (`t.item()`), from any device.
    pub fn item<T: Element>(&self) -> Result<T> {
        self.check_one("item")?;
        self.to_vec::<T>()?
            .pop()
            .ok_or_else(|| Error::internal("item read nothing"))
    }

    /// [`Tensor::item`] for every target, the browser included.
    pub async fn item_async<T: Element>(&self) -> Result<T> {
        self.check_one("item_async")?;
        self.to_vec_async::<T>()
            .await?
            .pop()
            .ok_or_else(|| Error::internal("item read nothing"))
    }

    fn check_one(&self, op: &str) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                op,
                format!(
                    "a tensor of shape {:?} has {} elements, not one",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        Ok(())
    }

    /// `torch.full(shape, value)` of `T`'s dtype, on `device`.
    ///
    /// ```
    /// use wgnn::{ops::Generator, Device, DType, Tensor};
    /// let cpu = Device::Cpu;
    /// assert_eq!(Tensor::full(&[2], 0.5f32, &cpu)?.to_vec::<f32>()?, [0.5, 0.5]);
    /// assert_eq!(Tensor::ones(&[2], DType::I64, &cpu)?.to_vec::<i64>()?, [1, 1]);
    /// assert_eq!(Tensor::arange::<i64>(0.0, 3.0, 1.0, &cpu)?.to_vec::<i64>()?, [0, 1, 2]);
    /// let mask = Tensor::from_slice(&[true, false], &[2])?; // bool is an Element
    /// assert_eq!(mask.to_vec::<bool>()?, [true, false]);
    /// let x = Tensor::rand(&[3], &mut Generator::new(0), &cpu)?; // same stream on every device
    /// assert!(x.to_vec::<f32>()?.iter().all(|v| (0.0..1.0).contains(v)));
    /// assert_eq!(Tensor::full(&[1], 7i64, &cpu)?.item::<i64>()?, 7);
    /// # Ok::<(), wgnn::Error>(())
    /// ```
    pub fn full<T: Element>(shape: &[usize], value: T, device: &Device) -> Result<Tensor> {
        let n = numel_of(shape)?;
        let one = T::as_bytes(std::slice::from_ref(&value)).into_owned();
        let mut host =
            HostBytes::zeroed(n.checked_mul(one.len()).ok_or_else(|| {
                Error::invalid(format!("shape {shape:?} is larger than memory"))
            })?)?;
        if one.iter().any(|&b| b != 0) {
            for c in host.bytes_mut().chunks_exact_mut(one.len()) {
                c.copy_from_slice(&one);
            }
        }
        Tensor::from_host(host, shape, T::DTYPE)?.to(device)
    }

    /// `torch.ones(shape, dtype)` on `device`, for every dtype (`true` for bool).
    pub fn ones(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        match dtype {
            DType::F32 => Tensor::full(shape, 1f32, device),
            DType::F64 => Tensor::full(shape, 1f64, device),
            DType::F16 => Tensor::full(shape, f16::ONE, device),
            DType::BF16 => Tensor::full(shape, bf16::ONE, device),
            DType::I64 => Tensor::full(shape, 1i64, device),
            DType::I32 => Tensor::full(shape, 1i32, device),
            DType::I16 => Tensor::full(shape, 1i16, device),
            DType::I8 => Tensor::full(shape, 1i8, device),
            DType::U8 => Tensor::full(shape, 1u8, device),
            DType::U16 => Tensor::full(shape, 1u16, device),
            DType::U32 => Tensor::full(shape, 1u32, device),
            DType::U64 => Tensor::full(shape, 1u64, device),
            DType::Bool => Tensor::full(shape, true, device),
        }
    }

    /// `torch.arange(start, end, step)` of `T` (`i64` like PyTorch's integer arange, or `f32`
    /// …) on `device`: `start + i·step` for every `i` with the value before `end`.
    pub fn arange<T: Element>(start: f64, end: f64, step: f64, device: &Device) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::invalid(format!(
                "arange({start}, {end}, {step}): the step must be finite and non-zero and the ends finite"
            )));
        }
        let n = ((end - start) / step).ceil().max(0.0);
        if n > (isize::MAX as f64) / 8.0 {
            return Err(Error::invalid(format!(
                "arange({start}, {end}, {step}) is larger than memory"
            )));
        }
        let v: Vec<T> = (0..n as usize)
            .map(|i| T::from_f64(start + i as f64 * step))
            .collect();
        Tensor::from_slice(&v, &[v.len()])?.to(device)
    }

    /// The same values on `device` (a no-op clone when already there; GPU→GPU across devices
    /// goes through the host).
    pub fn to(&self, device: &Device) -> Result<Tensor> {
        let mut v = to_device_many(&[self], device)?;
        let out = v
            .pop()
            .ok_or_else(|| Error::internal("to_device_many returned nothing"))?
            .detach();
        // Differentiable, as PyTorch's `.to()`: the gradient goes back to where `self` lives.
        Ok(crate::autograd::record("to", out, &[self], || {
            let home = self.device();
            Box::new(move |g, _| Ok(vec![Some(g.to(&home)?)]))
        }))
    }

    /// The same elements with `shape`, which must hold as many (`t.reshape(shape)`; one `-1`
    /// is inferred, `&[b, -1]`): a view when the layout allows it (a contiguous tensor always
    /// does), else a contiguous copy, as PyTorch's.
    pub fn reshape(&self, shape: impl crate::methods::Dims) -> Result<Tensor> {
        let shape = crate::methods::infer_shape("reshape", shape, self.numel())?;
        let shape = &shape[..];
        if numel_of(shape)? != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot view shape {:?} ({} elements) as {shape:?}",
                    self.shape,
                    self.numel()
                ),
            ));
        }
        let out = match view_strides(&self.shape, &self.strides, shape) {
            Some(strides) => self.view_of(shape.to_vec(), strides, self.offset),
            None => {
                let c = crate::autograd::no_grad(|| self.contiguous())?;
                c.view_of(
                    shape.to_vec(),
                    crate::ops::contiguous_strides(shape),
                    c.offset,
                )
            }
        };
        let from = self.shape.clone();
        Ok(crate::autograd::record("reshape", out, &[self], || {
            Box::new(move |g, _| Ok(vec![Some(g.reshape(&from)?)]))
        }))
    }

    /// Whether a gradient flows back through this tensor: it is a trainable parameter's value,
    /// or was computed from one while recording (PyTorch's `requires_grad`).
    pub fn requires_grad(&self) -> bool {
        self.origin.is_some()
    }

    /// The same values, cut off from the graph (`t.detach()`): no gradient flows through it.
    pub fn detach(&self) -> Tensor {
        self.view_of(self.shape.clone(), self.strides.clone(), self.offset)
    }

    /// `loss.backward()`: computes the gradient of this one-element tensor with respect to every
    /// trainable parameter it was computed from, and adds it into each parameter's
    /// [`grad`](crate::Parameter::grad). Frozen parameters and buffers get none. The gradients
    /// are computed on the tensors' device. An error if nothing trainable took part.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!(
                    "backward() needs a one-element tensor (a loss), got shape {:?}; use \
                     backward_with(grad) for others",
                    self.shape
                ),
            ));
        }
        let one = Tensor::ones(&self.shape, self.dtype, &self.device())?;
        crate::autograd::backward(self, one)
    }

    /// `t.backward(grad)`: backward from a tensor of any shape, `grad` being d(loss)/d(self).
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        crate::autograd::backward(self, grad.detach())
    }

    pub(crate) fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    pub(crate) fn with_origin(mut self, origin: Option<Origin>) -> Tensor {
        self.origin = origin;
        self
    }

    /// Converts to another dtype, on the tensor's own device. Floats round to nearest even;
    /// integers must fit the target (checked); float↔integer conversions are refused.
    ///
    /// Between float32, float16 and bfloat16 the conversion runs on the device (a GPU kernel
    /// gives the CPU's bits: see `src/ops/cast.rs`); other conversions go through the host.
    /// Float-to-float conversions are differentiable, as PyTorch's `.to(dtype)`: the gradient
    /// comes back converted to the source dtype, so a mixed-precision cast keeps the graph.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        use crate::ops::cast::{cast, is_kernel_float};
        let y = if is_kernel_float(self.dtype) && is_kernel_float(dtype) {
            cast(self, dtype)?
        } else {
            let bytes = convert(&self.to_bytes()?, self.dtype, dtype)?;
            Tensor::from_bytes(&bytes, &self.shape, dtype)?.to(&self.device())?
        };
        let from = self.dtype;
        if !(from.is_float() && dtype.is_float()) {
            return Ok(y);
        }
        Ok(crate::autograd::record("to_dtype", y, &[self], || {
            Box::new(move |g, _| Ok(vec![Some(g.to_dtype(from)?)]))
        }))
    }
}

/// Moves many tensors to `device` at once: everything that has to go up goes in one staging
/// copy and one submission; tensors already there are shared, not copied.
pub fn to_device_many(tensors: &[&Tensor], device: &Device) -> Result<Vec<Tensor>> {
    // What moves moves dense (views are copied on their own device first).
    let dense: Vec<Tensor> = crate::autograd::no_grad(|| {
        tensors
            .iter()
            .map(|t| {
                if t.is_on(device) {
                    Ok((*t).clone())
                } else {
                    t.contiguous()
                }
            })
            .collect::<Result<_>>()
    })?;
    let tensors: Vec<&Tensor> = dense.iter().collect();
    let tensors = tensors.as_slice();
    let mut out: Vec<Option<Tensor>> = vec![None; tensors.len()];
    // Read back everything on a *different* GPU first, per source device.
    let mut host: Vec<Option<Vec<u8>>> = vec![None; tensors.len()];
    let mut by_src: Vec<(GpuDevice, Vec<usize>)> = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        if t.is_on(device) {
            out[i] = Some((*t).clone());
        } else if let Ok(Storage::Gpu { device: d, .. }) = t.store() {
            match by_src.iter_mut().find(|(s, _)| s == d) {
                Some((_, v)) => v.push(i),
                None => by_src.push((d.clone(), vec![i])),
            }
        }
    }
    for (src, idx) in by_src {
        let list: Vec<(&GpuBuffer, u64)> = idx
            .iter()
            .filter_map(|&i| {
                tensors[i]
                    .gpu_buffer()
                    .map(|b| (b, tensors[i].nbytes() as u64))
            })
            .collect();
        let bytes = transfer::download_many(&src.0, &list)?;
        for (&i, b) in idx.iter().zip(bytes) {
            host[i] = Some(b);
        }
    }
    match device {
        Device::Cpu => {
            for (i, t) in tensors.iter().enumerate() {
                if out[i].is_none() {
                    let b = host[i].take().unwrap_or_default();
                    out[i] = Some(Tensor::from_bytes(&b, &t.shape, t.dtype)?);
                }
            }
        }
        Device::Gpu(g) => {
            let pending: Vec<usize> = (0..tensors.len()).filter(|&i| out[i].is_none()).collect();
            let datas: Vec<&[u8]> = pending
                .iter()
                .map(|&i| match (&host[i], tensors[i].host()) {
                    (Some(b), _) => b.as_slice(),
                    (None, Some(h)) => h.bytes(),
                    (None, None) => &[],
                })
                .collect();
            if !pending.is_empty() {
                let bufs = transfer::upload_many(&g.0, &datas)?;
                for (&i, buffer) in pending.iter().zip(bufs) {
                    out[i] = Some(Tensor::from_gpu(
                        buffer,
                        tensors[i].shape.clone(),
                        tensors[i].dtype,
                        g,
                    ));
                }
            }
        }
    }
    out.into_iter()
        .map(|t| t.ok_or_else(|| Error::internal("a tensor was not moved")))
        .collect()
}

#[derive(Clone, Copy)]
enum Value {
    F(f64),
    I(i128),
    B(bool),
}

fn read(b: &[u8], d: DType, i: usize) -> Value {
    let s = d.size();
    let c = &b[i * s..(i + 1) * s];
    match d {
        DType::Bool => Value::B(c[0] != 0),
        DType::U8 => Value::I(c[0] as i128),
        DType::I8 => Value::I(c[0] as i8 as i128),
        DType::I16 => Value::I(i16::from_le_bytes([c[0], c[1]]) as i128),
        DType::U16 => Value::I(u16::from_le_bytes([c[0], c[1]]) as i128),
        DType::I32 => Value::I(i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128),
        DType::U32 => Value::I(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128),
        DType::I64 => Value::I(i64::from_le_bytes(bytemuck::pod_read_unaligned(c)) as i128),
        DType::U64 => Value::I(u64::from_le_bytes(bytemuck::pod_read_unaligned(c)) as i128),
        DType::F16 => Value::F(f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64()),
        DType::BF16 => Value::F(bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f64()),
        DType::F32 => Value::F(f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64),
        DType::F64 => Value::F(f64::from_le_bytes(bytemuck::pod_read_unaligned(c))),
    }
}

fn int_range(d: DType) -> (i128, i128) {
    match d {
        DType::U8 => (0, u8::MAX as i128),
        DType::I8 => (i8::MIN as i128, i8::MAX as i128),
        DType::I16 => (i16::MIN as i128, i16::MAX as i128),
        DType::U16 => (0, u16::MAX as i128),
        DType::I32 => (i32::MIN as i128, i32::MAX as i128),
        DType::U32 => (0, u32::MAX as i128),
        DType::I64 => (i64::MIN as i128, i64::MAX as i128),
        DType::U64 => (0, u64::MAX as i128),
        _ => (0, 0),
    }
}

/// Converts raw little-endian data between dtypes. Exact where the target can hold the value;
/// floats round to nearest even; integer overflow and float↔integer/bool are errors.
pub(crate) fn convert(src: &[u8], from: DType, to: DType) -> Result<Vec<u8>> {
    let n = src.len() / from.size();
    let refuse = || Error::Dtype {
        op: format!("converting {from} to {to}"),
        expected: if from.is_float() {
            "a floating-point target".into()
        } else if from == DType::Bool {
            "bool".into()
        } else {
            "an integer target".into()
        },
        got: to.name().into(),
    };
    if from.is_float() != to.is_float() || (from == DType::Bool) != (to == DType::Bool) {
        return Err(refuse());
    }
    let mut out = Vec::with_capacity(n * to.size());
    for i in 0..n {
        match (read(src, from, i), to) {
            (Value::F(v), DType::F16) => out.extend_from_slice(&f16::from_f64(v).to_le_bytes()),
            (Value::F(v), DType::BF16) => out.extend_from_slice(&bf16::from_f64(v).to_le_bytes()),
            (Value::F(v), DType::F32) => out.extend_from_slice(&(v as f32).to_le_bytes()),
            (Value::F(v), DType::F64) => out.extend_from_slice(&v.to_le_bytes()),
            (Value::B(v), DType::Bool) => out.push(v as u8),
            (Value::I(v), d) => {
                let (lo, hi) = int_range(d);
                if v < lo || v > hi {
                    return Err(Error::Dtype {
                        op: format!("converting {from} to {to}"),
                        expected: format!("values in [{lo}, {hi}]"),
                        got: format!("{v} at element {i}"),
                    });
                }
                out.extend_from_slice(&v.to_le_bytes()[..d.size()]);
            }
            _ => return Err(refuse()),
        }
    }
    Ok(out)
}

const EDGE: usize = 3;
const THRESHOLD: usize = 1000;

fn fmt_value(v: Value) -> String {
    match v {
        Value::F(x) => format!("{x:.4}"),
        Value::I(x) => x.to_string(),
        Value::B(b) => if b { "True" } else { "False" }.to_string(),
    }
}

fn fmt_rec(
    out: &mut String,
    b: &[u8],
    d: DType,
    shape: &[usize],
    offset: usize,
    indent: usize,
    summarize: bool,
) {
    if shape.is_empty() {
        out.push_str(&fmt_value(read(b, d, offset)));
        return;
    }
    let n = shape[0];
    let inner: usize = shape[1..].iter().product();
    let idx: Vec<Option<usize>> = if summarize && n > 2 * EDGE {
        (0..EDGE)
            .map(Some)
            .chain([None])
            .chain((n - EDGE..n).map(Some))
            .collect()
    } else {
        (0..n).map(Some).collect()
    };
    out.push('[');
    for (k, i) in idx.iter().enumerate() {
        if k > 0 {
            if shape.len() > 1 {
                out.push_str(",\n");
                out.push_str(&" ".repeat(indent + 1));
            } else {
                out.push_str(", ");
            }
        }
        match i {
            Some(i) => fmt_rec(
                out,
                b,
                d,
                &shape[1..],
                offset + i * inner,
                indent + 1,
                summarize,
            ),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

impl fmt::Display for Tensor {
    /// PyTorch-like: values (summarised past 1000 elements), then shape, dtype and device.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("tensor(");
        match self.to_bytes() {
            Ok(b) => fmt_rec(
                &mut s,
                &b,
                self.dtype,
                &self.shape,
                0,
                7,
                self.numel() > THRESHOLD,
            ),
            Err(e) => s.push_str(&format!("<unreadable: {e}>")),
        }
        write!(
            f,
            "{s}, shape={:?}, dtype={}, device={})",
            self.shape,
            self.dtype,
            self.device()
        )
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor {{ shape: {:?}, dtype: {}, device: {:?} }}",
            self.shape,
            self.dtype,
            self.device()
        )
    }
}

/// Strides that show `shape` over a tensor of `old` shape and `strides` without moving any
/// element (PyTorch's `computeStride`), or `None` when a copy is needed: each run of old
/// dimensions that are contiguous with one another may be split and merged freely.
fn view_strides(old: &[usize], strides: &[usize], shape: &[usize]) -> Option<Vec<usize>> {
    if old.iter().product::<usize>() == 0 {
        return Some(crate::ops::contiguous_strides(shape));
    }
    let mut out = vec![0; shape.len()];
    let mut view_d = shape.len() as isize - 1;
    // The stride of the last element of the current chunk of old dimensions.
    let mut chunk_base = *strides.last().unwrap_or(&1);
    let mut tensor_numel = 1usize;
    let mut view_numel = 1usize;
    for d in (0..old.len()).rev() {
        tensor_numel *= old[d];
        // A chunk ends where the next old dimension is not contiguous with this one.
        let ends = d == 0 || (old[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base);
        if ends {
            while view_d >= 0 && (view_numel < tensor_numel || shape[view_d as usize] == 1) {
                out[view_d as usize] = view_numel * chunk_base;
                view_numel *= shape[view_d as usize];
                view_d -= 1;
            }
            if view_numel != tensor_numel {
                return None;
            }
            if d > 0 {
                chunk_base = strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    if view_d != -1 {
        return None;
    }
    Some(out)
}
