//! PyTorch porting idioms, one for one: replacing a buffer, deleting a submodule, `bias=False`,
//! a typed `ModuleList` edited in place, and a DataParallel checkpoint's `module.` keys renamed
//! and loaded strictly — with errors, not panics, for misuse.

use wgnn::nn::Linear;
use wgnn::{
    Buffer, DType, Device, DynModule, Error, ModuleExt, ModuleList, Parameter, StateDict, Tensor,
};

fn z(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
}

#[test]
fn register_buffer_again_replaces_and_del_removes() {
    // m.register_buffer("stats", t); m.register_buffer("stats", t2, persistent=False)
    let mut m = DynModule::new("M");
    m.register_buffer("stats", Buffer::new(z(&[2]))).unwrap();
    m.register_parameter("w", Parameter::new(z(&[3]))).unwrap();
    m.add_module("child", Linear::new(2, 2, &Device::Cpu).unwrap())
        .unwrap();
    m.register_buffer("stats", Buffer::non_persistent(z(&[4])))
        .unwrap();
    assert_eq!(m.get_buffer("stats").unwrap().tensor().shape(), [4]);
    assert_eq!(
        m.state_dict().unwrap().keys(),
        ["w", "child.weight", "child.bias"]
    );
    // A buffer over a parameter's name: PyTorch's KeyError.
    let e = m
        .register_buffer("w", Buffer::new(z(&[1])))
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
    // add_module over a child replaces it; over a buffer's name is an error.
    m.add_module("child", Linear::no_bias(2, 5, &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(m.state_dict().unwrap().keys(), ["w", "child.weight"]);
    assert!(m.add_module("stats", DynModule::new("X")).is_err());
    // del m.child; del m.stats
    m.remove("child").unwrap();
    m.remove("stats").unwrap();
    assert!(m.named_children().is_empty() && m.named_buffers().is_empty());
    let e = m.remove("nope").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains('w'), "{e}");
}

#[test]
fn bias_false_layers_have_no_bias_anywhere() {
    let l = Linear::no_bias(3, 2, &Device::Cpu).unwrap();
    assert_eq!(l.state_dict().unwrap().keys(), ["weight"]);
    assert_eq!(l.named_parameters().len(), 1);
    assert_eq!(
        l.repr(),
        "Linear(in_features=3, out_features=2, bias=False)"
    );
    let mut sd = StateDict::new();
    sd.insert("weight", z(&[2, 3]));
    sd.insert("bias", z(&[2]));
    let mut l = l;
    let e = l.load_state_dict(&sd, true).unwrap_err().to_string();
    assert!(
        e.contains("Unexpected key(s)") && e.contains("\"bias\""),
        "{e}"
    );
}

#[test]
fn a_typed_module_list_is_edited_in_place() {
    let d = Device::Cpu;
    let mut blocks: ModuleList<Linear> =
        ModuleList::from_items((0..3).map(|_| Linear::new(4, 4, &d).unwrap()).collect());
    // for block in self.blocks: block.bias = None
    for b in blocks.iter_mut() {
        b.bias = None;
    }
    // self.blocks[1] = nn.Linear(4, 8)
    *blocks.get_mut(1).unwrap() = Linear::new(4, 8, &d).unwrap();
    blocks.push_item(Linear::new(8, 2, &d).unwrap());
    assert_eq!(
        blocks.state_dict().unwrap().keys(),
        ["0.weight", "1.weight", "1.bias", "2.weight", "3.weight", "3.bias"]
    );
    assert_eq!(blocks.get(1).unwrap().weight.tensor().shape(), [8, 4]);
    assert!(blocks
        .repr()
        .starts_with("ModuleList(\n  (0): Linear(in_features=4, out_features=4, bias=False)"));
}

#[test]
fn a_dataparallel_checkpoint_loads_strictly_after_renaming() {
    let d = Device::Cpu;
    let mut net = DynModule::new("Net");
    net.add_module("fc", Linear::new(2, 3, &d).unwrap())
        .unwrap();
    let mut ckpt = StateDict::new();
    ckpt.insert(
        "module.fc.weight",
        Tensor::from_slice(&[1f32; 6], &[3, 2]).unwrap(),
    );
    ckpt.insert(
        "module.fc.bias",
        Tensor::from_slice(&[2f32; 3], &[3]).unwrap(),
    );
    assert!(net.load_state_dict(&ckpt, true).is_err());
    // {k.removeprefix("module."): v for k, v in ckpt.items()}
    net.load_state_dict_with(&ckpt, true, |k| k.trim_start_matches("module.").to_string())
        .unwrap();
    assert_eq!(
        net.get_parameter("fc.bias")
            .unwrap()
            .tensor()
            .to_vec::<f32>()
            .unwrap(),
        [2.0; 3]
    );
    net.load_state_dict(&ckpt.strip_prefix("module."), true)
        .unwrap();
    // Editing the dict: rename, remove, retain, and errors for misuse.
    let mut sd = ckpt.strip_prefix("module.");
    sd.rename("fc.bias", "fc.b").unwrap();
    assert_eq!(sd.keys(), ["fc.weight", "fc.b"]);
    assert!(sd.rename("nope", "x").is_err());
    assert!(sd.rename("fc.b", "fc.weight").is_err());
    assert!(sd.remove("fc.b").is_some() && sd.remove("fc.b").is_none());
    sd.insert("extra", z(&[1]));
    sd.retain(|k, _| k.starts_with("fc."));
    assert_eq!(sd.keys(), ["fc.weight"]);
    assert!(
        ckpt.map_keys(|_| "same".into()).is_err(),
        "two keys mapped to one name"
    );
}
