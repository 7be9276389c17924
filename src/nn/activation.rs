//! Activations by name: a factory that gives a fresh layer per call, as a Python class does
//! (`act_fn()`), with the names of `torch.nn` and their keyword arguments.

use crate::error::{Error, Result};
use crate::module::Layer;
use crate::nn::{Hardtanh, Identity, LeakyReLU, ReLU, SiLU, Sigmoid, Softplus, Tanh, ELU, GELU};

/// A keyword argument's value: a number, a string (`approximate='tanh'`) or a flag.
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    /// A number (`negative_slope=0.1`).
    Num(f64),
    /// A string (`approximate='tanh'`).
    Str(String),
    /// A flag (`inplace=True`).
    Bool(bool),
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Num(v)
    }
}
impl From<f32> for Arg {
    fn from(v: f32) -> Self {
        Arg::Num(v as f64)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Str(v.to_string())
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// The activations [`Activation`] knows: `torch.nn`'s class name and its keyword arguments.
const KNOWN: [(&str, &[&str]); 10] = [
    ("ReLU", &["inplace"]),
    ("Tanh", &[]),
    ("Sigmoid", &[]),
    ("GELU", &["approximate"]),
    ("SiLU", &["inplace"]),
    ("ELU", &["alpha", "inplace"]),
    ("LeakyReLU", &["negative_slope", "inplace"]),
    ("Softplus", &["beta", "threshold"]),
    ("Hardtanh", &["min_val", "max_val", "inplace"]),
    ("Identity", &[]),
];

/// An activation class with its keyword arguments: what a Python model stores as `act_fn` (a
/// class) and calls once per layer. [`Activation::build`] gives a fresh layer each time.
///
/// ```
/// use wgnn::nn::{activation, Activation};
/// use wgnn::ModuleExt;
/// let act = Activation::new("leaky_relu")?.arg("negative_slope", 0.1)?;
/// let (a, b) = (act.build(), act.build()); // two layers, as `act_fn()` twice
/// assert_eq!(a.repr(), "LeakyReLU(negative_slope=0.1)");
/// assert_eq!(activation("gelu")?.repr(), "GELU(approximate='none')");
/// assert!(activation("swishy").is_err()); // names the ones it knows
/// assert!(Activation::new("ReLU")?.arg("alpha", 1.0).is_err()); // ReLU takes no alpha
/// # Ok::<(), wgnn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Activation {
    class: &'static str,
    args: Vec<(String, Arg)>,
}

impl Activation {
    /// The class `name`: `torch.nn`'s (`"ReLU"`, `"LeakyReLU"`, `"GELU"`, `"SiLU"`, …), in
    /// any case, with or without underscores (`"relu"`, `"leaky_relu"`, `"leakyrelu"`).
    pub fn new(name: &str) -> Result<Self> {
        let key: String = name
            .chars()
            .filter(|c| *c != '_')
            .collect::<String>()
            .to_lowercase();
        let class = KNOWN
            .iter()
            .map(|k| k.0)
            .find(|k| k.to_lowercase() == key)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown activation {name:?}: expected one of {}",
                    KNOWN.map(|k| k.0).join(", ")
                ))
            })?;
        Ok(Activation {
            class,
            args: Vec::new(),
        })
    }
    /// The class name (`"LeakyReLU"`).
    pub fn name(&self) -> &str {
        self.class
    }
    /// Sets a keyword argument (`negative_slope=0.1`); an error naming the ones the class
    /// takes, or a value of the wrong kind.
    pub fn arg(mut self, key: &str, value: impl Into<Arg>) -> Result<Self> {
        let value = value.into();
        let takes = KNOWN
            .iter()
            .find(|k| k.0 == self.class)
            .map(|k| k.1)
            .unwrap_or(&[]);
        if !takes.contains(&key) {
            return Err(Error::invalid(format!(
                "{}() got an unexpected keyword argument '{key}' (it takes: {})",
                self.class,
                if takes.is_empty() {
                    "none".to_string()
                } else {
                    takes.join(", ")
                }
            )));
        }
        let ok = match (key, &value) {
            ("inplace", Arg::Bool(_)) | (_, Arg::Num(_)) => key != "approximate",
            ("approximate", Arg::Str(s)) => s == "none" || s == "tanh",
            _ => false,
        };
        if !ok {
            return Err(Error::invalid(format!(
                "{}: {value:?} is not a valid value of {key}",
                self.class
            )));
        }
        self.args.retain(|a| a.0 != key);
        self.args.push((key.to_string(), value));
        Ok(self)
    }
    fn num(&self, key: &str, default: f32) -> f32 {
        self.args
            .iter()
            .find_map(|(k, v)| match v {
                Arg::Num(n) if k == key => Some(*n as f32),
                _ => None,
            })
            .unwrap_or(default)
    }
    /// A fresh layer (`act_fn()`).
    pub fn build(&self) -> Box<dyn Layer> {
        match self.class {
            "ReLU" => Box::new(ReLU::new()),
            "Tanh" => Box::new(Tanh::new()),
            "Sigmoid" => Box::new(Sigmoid::new()),
            "GELU" => Box::new(
                GELU::new().tanh_approximation(
                    self.args
                        .iter()
                        .any(|(k, v)| k == "approximate" && *v == Arg::Str("tanh".into())),
                ),
            ),
            "SiLU" => Box::new(SiLU::new()),
            "ELU" => Box::new(ELU::new().alpha(self.num("alpha", 1.0))),
            "LeakyReLU" => {
                Box::new(LeakyReLU::new().negative_slope(self.num("negative_slope", 0.01)))
            }
            "Softplus" => Box::new(
                Softplus::new()
                    .beta(self.num("beta", 1.0))
                    .threshold(self.num("threshold", 20.0)),
            ),
            "Hardtanh" => Box::new(
                Hardtanh::new()
                    .min_val(self.num("min_val", -1.0))
                    .max_val(self.num("max_val", 1.0)),
            ),
            _ => Box::new(Identity::new()),
        }
    }
}

/// `nn.<Name>()` by name: a fresh layer with PyTorch's defaults (see [`Activation`] for the
/// names and for keyword arguments).
pub fn activation(name: &str) -> Result<Box<dyn Layer>> {
    Ok(Activation::new(name)?.build())
}
