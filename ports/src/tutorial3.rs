//! The MLP of the UvA DL tutorial 3 ("Activation Functions"), class for class: the tutorial's
//! own activation classes, written out as the notebook writes them, and `BaseNetwork`, whose
//! `layers` keys (`layers.0.weight`, …) are the published state dicts'. [`load_model`] is the
//! notebook's: the `.config` JSON picks the activation and sizes, the `.tar` (a plain
//! `torch.save(state_dict)`) gives the weights.
//!
//! ```
//! use wgnn_ports::tutorial3::{act_fn_by_name, BaseNetwork};
//! use wgnn::{DType, Device, Forward, ModuleExt, Tensor};
//! let mut net = BaseNetwork::new(&act_fn_by_name("swish", 0.1)?, 784, 10, &[512, 256, 256, 128])?;
//! assert_eq!(net.state_dict()?.len(), 10); // five Linear layers; activations have no state
//! let x = Tensor::zeros(&[2, 1, 28, 28], DType::F32, &Device::Cpu)?;
//! assert_eq!(net.forward(&x)?.shape(), [2, 10]);
//! # Ok::<(), wgnn::Error>(())
//! ```

use std::path::Path;

use wgnn::nn::Linear;
use wgnn::torch::Checkpoint;
use wgnn::{bail, Error, Forward, Layer, Module, ModuleExt, Result, ResultExt, Sequential, Tensor};

/// The notebook's `ActivationFunction` subclasses: a struct, its repr and its forward.
macro_rules! activation {
    ($(#[$doc:meta])* $name:ident { $($f:ident: $t:ty),* } |$s:ident, $x:ident| $fwd:expr) => {
        $(#[$doc])*
        #[derive(Module, Clone, Copy)]
        pub struct $name { $(#[module(skip)] #[allow(missing_docs)] pub $f: $t),* }
        impl Forward for $name {
            fn forward(&mut self, $x: &Tensor) -> Result<Tensor> {
                let $s = *self;
                $fwd
            }
        }
    };
}

activation!(/// `1 / (1 + torch.exp(-x))`.
    Sigmoid {} |_s, x| 1f32 / (x.neg()?.exp()? + 1f32)?);
activation!(/// `(exp(x) - exp(-x)) / (exp(x) + exp(-x))` (NaN where both overflow, as the notebook's).
Tanh {} |_s, x| {
    let (e, ne) = (x.exp()?, x.neg()?.exp()?);
    (&e - &ne)? / (&e + &ne)?
});
activation!(/// `x * (x > 0).float()`: `relu` (the same values up to the sign of a zero, the same gradient).
    ReLU {} |_s, x| x.relu());
activation!(/// `torch.where(x > 0, x, alpha * x)`: `leaky_relu(x, alpha)`, the same values and gradient.
    LeakyReLU { alpha: f32 } |s, x| x.leaky_relu(s.alpha));
activation!(/// `torch.where(x > 0, x, torch.exp(x) - 1)`: `elu(x, 1)` (its `exp(x) - 1` is `expm1`, within 1.2e-7).
    ELU {} |_s, x| x.elu(1.0));
activation!(/// `x * torch.sigmoid(x)`.
    Swish {} |_s, x| x * x.sigmoid()?);

/// An activation object as `BaseNetwork` places it after every hidden layer.
pub type ActFn = Box<dyn Fn() -> Box<dyn Layer> + Send + Sync>;

fn act<L: Layer + Copy + 'static>(l: L) -> ActFn {
    Box::new(move || Box::new(l))
}

/// `act_fn_by_name[name](alpha)`: `"sigmoid"`, `"tanh"`, `"relu"`, `"leakyrelu"` (which takes
/// `alpha`, 0.1 in the notebook), `"elu"`, `"swish"`.
pub fn act_fn_by_name(name: &str, alpha: f32) -> Result<ActFn> {
    Ok(match name {
        "sigmoid" => act(Sigmoid {}),
        "tanh" => act(Tanh {}),
        "relu" => act(ReLU {}),
        "leakyrelu" => act(LeakyReLU { alpha }),
        "elu" => act(ELU {}),
        "swish" => act(Swish {}),
        _ => bail!("unknown activation {name:?}: sigmoid, tanh, relu, leakyrelu, elu or swish"),
    })
}

/// `BaseNetwork(act_fn, input_size, num_classes, hidden_sizes)`: `layers`, Linear and the one
/// activation object in turn, then the output Linear.
#[derive(Module)]
pub struct BaseNetwork {
    /// `Linear, act_fn, Linear, act_fn, …, Linear`.
    pub layers: Sequential,
}

impl BaseNetwork {
    /// The network, its Linear layers initialised as PyTorch's.
    pub fn new(
        act_fn: &ActFn, input_size: usize, num_classes: usize, hidden_sizes: &[usize],
    ) -> Result<Self> {
        let sizes: Vec<usize> = [&[input_size], hidden_sizes].concat();
        let mut layers = Sequential::new();
        for w in sizes.windows(2) {
            layers = layers.push(Linear::new(w[0], w[1])?).push(act_fn());
        }
        let layers = layers.push(Linear::new(sizes[sizes.len() - 1], num_classes)?);
        Ok(BaseNetwork { layers })
    }
}

impl Forward for BaseNetwork {
    /// `x.view(x.size(0), -1)` (images `[N, 1, 28, 28]` or rows `[N, 784]`), then the layers.
    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let n = x.shape().first().map_or(1, |&n| n as isize);
        self.layers.forward(&x.reshape([n, -1])?)
    }
}

/// The notebook's `.config` file: `{"act_fn": {"name": "Swish", "alpha"?: 0.1}, "input_size",
/// "num_classes", "hidden_sizes"}`.
#[derive(serde::Deserialize)]
struct Config {
    act_fn: ActConfig,
    input_size: usize,
    num_classes: usize,
    hidden_sizes: Vec<usize>,
}
#[derive(serde::Deserialize)]
struct ActConfig {
    name: String,
    alpha: Option<f32>,
}

/// `load_model(config_file, model_file)`: the network the config describes, the state dict of
/// `model_file` loaded strictly, on the CPU, in eval mode.
pub fn load_model(
    config_file: impl AsRef<Path>, model_file: impl AsRef<Path>,
) -> Result<BaseNetwork> {
    let (cpath, mpath) = (config_file.as_ref(), model_file.as_ref());
    let text = std::fs::read_to_string(cpath).map_err(|e| Error::msg(e).context(cpath.display()));
    let c: Config =
        serde_json::from_str(&text?).map_err(|e| Error::msg(e).context(cpath.display()))?;
    let act_fn = act_fn_by_name(&c.act_fn.name.to_lowercase(), c.act_fn.alpha.unwrap_or(0.1))?;
    let mut net = BaseNetwork::new(&act_fn, c.input_size, c.num_classes, &c.hidden_sizes)?;
    net.load_state_dict(&Checkpoint::load(mpath)?.state_dict(None)?, true)
        .with_context(|| mpath.display())?;
    net.eval();
    Ok(net)
}
