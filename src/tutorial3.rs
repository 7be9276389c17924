//! The MLP of the UvA DL tutorial 3 ("Activation Functions"), ported class for class: the
//! tutorial's own activation classes (`Sigmoid`, `Tanh`, `ReLU`, `LeakyReLU`, `ELU`, `Swish`,
//! written out as the notebook writes them) and `BaseNetwork`, whose `layers` keys
//! (`layers.0.weight`, …) are the published state dicts' keys. [`load_model`] is the notebook's
//! `load_model`: the `.config` JSON picks the activation and sizes, the `.tar` (a plain
//! `torch.save(state_dict)`, not a tar archive) gives the weights.
//!
//! ```
//! use wgnn::tutorial3::{act_fn_by_name, BaseNetwork};
//! use wgnn::{Device, ModuleExt, Tensor, DType};
//! let mut net = BaseNetwork::new("swish", 1.0, 784, 10, &[512, 256, 256, 128], &Device::Cpu)?;
//! assert_eq!(net.state_dict()?.len(), 10); // five Linear layers; activations have no state
//! let x = Tensor::zeros(&[2, 1, 28, 28], DType::F32, &Device::Cpu)?;
//! assert_eq!(net.forward(&x)?.shape(), [2, 10]);
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::impl_module;
use crate::module::{Forward, Layer};
use crate::nn::Linear;
use crate::ops;
use crate::tensor::Tensor;
use crate::torch::Checkpoint;
use crate::{ModuleExt, Sequential};

fn one(x: &Tensor) -> Result<Tensor> {
    Tensor::full(&[1], 1f32, &x.device())
}

use crate::nn::vision::activation as tutorial_activation;

tutorial_activation!(
    /// `1 / (1 + torch.exp(-x))`.
    Sigmoid {}
    repr = |_s| String::new(),
    forward = |_s, x| {
        let d = ops::broadcast_add(&ops::exp(&ops::neg(x)?)?, &one(x)?)?;
        ops::div(&one(x)?, &d)
    }
);
tutorial_activation!(
    /// `(exp(x) - exp(-x)) / (exp(x) + exp(-x))` (NaN where both overflow, as the notebook's).
    Tanh {}
    repr = |_s| String::new(),
    forward = |_s, x| {
        let (e, ne) = (ops::exp(x)?, ops::exp(&ops::neg(x)?)?);
        ops::div(&ops::sub(&e, &ne)?, &ops::broadcast_add(&e, &ne)?)
    }
);
tutorial_activation!(
    /// `x * (x > 0).float()`: `relu` (the same values, up to the sign of a zero, and the same
    /// gradient).
    ReLU {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::relu(x)
);
tutorial_activation!(
    /// `torch.where(x > 0, x, alpha * x)`: `leaky_relu(x, alpha)`, the same values and gradient.
    LeakyReLU { alpha: f32 }
    repr = |_s| String::new(),
    forward = |s, x| ops::leaky_relu(x, s.alpha)
);
tutorial_activation!(
    /// `torch.where(x > 0, x, torch.exp(x) - 1)`: `elu(x, 1)`, which computes `exp(x) - 1`
    /// as `expm1` (within 1.2e-7 absolute of the notebook's, more accurate near 0).
    ELU {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::elu(x, 1.0)
);
tutorial_activation!(
    /// `x * torch.sigmoid(x)`, through `mul` and `sigmoid` as autograd sees it.
    Swish {}
    repr = |_s| String::new(),
    forward = |_s, x| ops::mul(x, &ops::sigmoid(x)?)
);

/// `act_fn_by_name` of the notebook (`"sigmoid"`, `"tanh"`, `"relu"`, `"leakyrelu"`, `"elu"`,
/// `"swish"`); `alpha` is LeakyReLU's (the notebook's default 0.1).
pub fn act_fn_by_name(name: &str, alpha: f32) -> Result<Box<dyn Layer>> {
    Ok(match name {
        "sigmoid" => Box::new(Sigmoid {}),
        "tanh" => Box::new(Tanh {}),
        "relu" => Box::new(ReLU {}),
        "leakyrelu" => Box::new(LeakyReLU { alpha }),
        "elu" => Box::new(ELU {}),
        "swish" => Box::new(Swish {}),
        other => {
            return Err(Error::invalid(format!(
                "unknown activation {other:?}: tutorial 3's are sigmoid, tanh, relu, \
                 leakyrelu, elu and swish"
            )))
        }
    })
}

/// `BaseNetwork(act_fn, input_size, num_classes, hidden_sizes)`: `layers`, Linear and
/// activation in turn, then the output Linear.
pub struct BaseNetwork {
    /// `Linear, act_fn, Linear, act_fn, …, Linear`.
    pub layers: Sequential,
}
impl_module!(BaseNetwork {
    parameters: [],
    buffers: [],
    modules: [layers]
});

impl BaseNetwork {
    /// The network with zero weights; `act_fn` a key of [`act_fn_by_name`] (LeakyReLU takes
    /// `alpha`).
    pub fn new(
        act_fn: &str,
        alpha: f32,
        input_size: usize,
        num_classes: usize,
        hidden_sizes: &[usize],
        device: &Device,
    ) -> Result<Self> {
        let mut sizes = vec![input_size];
        sizes.extend_from_slice(hidden_sizes);
        let mut layers = Sequential::new();
        for w in sizes.windows(2) {
            layers = layers
                .push(Linear::new(w[0], w[1], device)?)
                .push_boxed(act_fn_by_name(act_fn, alpha)?);
        }
        let last = *sizes.last().unwrap_or(&input_size);
        layers = layers.push(Linear::new(last, num_classes, device)?);
        Ok(BaseNetwork { layers })
    }

    /// `forward(x)`: `x.view(x.size(0), -1)` (images `[N, 1, 28, 28]` or rows `[N, 784]`), then
    /// the layers.
    pub fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = *x.shape().first().ok_or_else(|| {
            Error::shape("BaseNetwork", "expected a batch dimension, got a scalar")
        })?;
        let rest = x.numel().checked_div(n).unwrap_or(0);
        self.layers.forward(&x.reshape(&[n, rest])?)
    }
}

/// The notebook's `load_model(config_file, model_file)`: the network the JSON config describes
/// (`{"act_fn": {"name": "Swish"}, "input_size": 784, "num_classes": 10, "hidden_sizes": […]}`)
/// with the state dict of `model_file` loaded strictly, on the CPU.
pub fn load_model(
    config_file: impl AsRef<Path>,
    model_file: impl AsRef<Path>,
) -> Result<BaseNetwork> {
    let cpath = config_file.as_ref();
    let text = std::fs::read_to_string(cpath).map_err(|e| Error::io("reading", cpath, e))?;
    let bad = |what: &str| Error::invalid(format!("{}: {what}", cpath.display()));
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let act = config["act_fn"]["name"]
        .as_str()
        .ok_or_else(|| bad("act_fn.name missing"))?
        .to_lowercase();
    let alpha = config["act_fn"]["alpha"].as_f64().unwrap_or(0.1) as f32;
    let int = |k: &str| {
        config[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| bad(&format!("{k} missing or not a count")))
    };
    let hidden: Vec<usize> = config["hidden_sizes"]
        .as_array()
        .ok_or_else(|| bad("hidden_sizes missing"))?
        .iter()
        .map(|v| {
            v.as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| bad("hidden_sizes: not counts"))
        })
        .collect::<Result<_>>()?;
    let mut net = BaseNetwork::new(
        &act,
        alpha,
        int("input_size")?,
        int("num_classes")?,
        &hidden,
        &Device::Cpu,
    )?;
    let mpath = model_file.as_ref();
    let sd = Checkpoint::load(mpath)?.state_dict(None)?;
    net.load_state_dict(&sd, true)
        .map_err(|e| e.with_path(mpath))?;
    net.eval();
    Ok(net)
}
