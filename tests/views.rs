//! Tensors are layouts over shared storage (issue 20, views): the layout ops cost no kernel,
//! every op reads a view as it reads the same values made contiguous (bit for bit, forward
//! and backward), reshape copies only where PyTorch's would, and an optimizer step gives the
//! parameter new storage, so a view taken before it keeps the old values.

mod common;

use common::{gpu, randn};
use wgnn::nn::Linear;
use wgnn::optim::SGD;
use wgnn::{ops, Buffer, DType, Device, DynModule, Forward, ModuleExt, Parameter, Tensor};

fn base(d: &Device) -> Tensor {
    Tensor::from_slice(&randn(2 * 3 * 4, 11), &[2, 3, 4])
        .unwrap()
        .to(d)
        .unwrap()
}

/// What a view must read: x[idx] of the dense base, by hand.
fn at(v: &[f32], shape: &[usize], idx: &[usize]) -> f32 {
    let mut flat = 0;
    for (i, &s) in idx.iter().zip(shape) {
        flat = flat * s + i;
    }
    v[flat]
}

#[test]
fn layout_ops_are_views_that_cost_no_kernel() {
    for d in [Device::Cpu, gpu()] {
        let x = base(&d);
        let xs = x.to_vec::<f32>().unwrap();
        let count = || d.as_gpu().map(|g| g.dispatch_count(None)).unwrap_or(0);
        let before = count();
        let p = ops::permute(&x, &[2, 0, 1]).unwrap();
        let tr = ops::transpose(&x, 1, 2).unwrap();
        let n = ops::narrow(&x, 2, 1, 2).unwrap();
        let s = ops::select(&x, 1, 2).unwrap();
        let e = ops::expand(&ops::narrow(&x, 1, 0, 1).unwrap(), &[5, 2, 3, 4]).unwrap();
        let u = ops::unsqueeze(&x, 1).unwrap();
        let q = ops::squeeze(&u, 1).unwrap();
        let c = ops::chunk(&x, 2, 2).unwrap();
        let sp = ops::split(&x, 2, 1).unwrap();
        let m = ops::t(&ops::select(&x, 0, 1).unwrap()).unwrap();
        let r = x.reshape([6, 4]).unwrap();
        assert_eq!(count(), before, "views recorded dispatches on {d}");
        // Layouts, as PyTorch reports them.
        assert_eq!((p.shape(), p.strides()), (&[4, 2, 3][..], &[1, 12, 4][..]));
        assert!(!p.is_contiguous() && x.is_contiguous() && r.is_contiguous());
        assert_eq!((n.storage_offset(), n.strides()), (1, &[12, 4, 1][..]));
        assert_eq!((s.shape(), s.storage_offset()), (&[2, 4][..], 8));
        assert_eq!(e.strides(), [0, 12, 0, 1]);
        assert_eq!((u.shape(), q.shape()), (&[2, 1, 3, 4][..], &[2, 3, 4][..]));
        assert_eq!(c[1].storage_offset(), 2);
        assert_eq!(sp.len(), 2);
        assert_eq!(sp[1].shape(), [2, 1, 4]);
        assert_eq!(m.shape(), [4, 3]);
        // Values: what the index arithmetic of the dense tensor gives, bit for bit.
        let sh = [2, 3, 4];
        let pv = p.to_vec::<f32>().unwrap();
        let mut i = 0;
        for k in 0..4 {
            for a in 0..2 {
                for b in 0..3 {
                    assert_eq!(pv[i].to_bits(), at(&xs, &sh, &[a, b, k]).to_bits());
                    i += 1;
                }
            }
        }
        let ev = e.to_vec::<f32>().unwrap();
        for (j, v) in ev.iter().enumerate() {
            let (a, k) = ((j / 12) % 2, j % 4);
            assert_eq!(v.to_bits(), at(&xs, &sh, &[a, 0, k]).to_bits());
        }
        let mv = m.to_vec::<f32>().unwrap();
        assert_eq!(mv[3 + 2], at(&xs, &sh, &[1, 2, 1])); // m[1][2]
        assert_eq!(
            tr.to_vec::<f32>().unwrap(),
            ops::permute(&x, &[0, 2, 1])
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        );
        // contiguous(): the tensor itself when dense, one gather when not.
        let before = count();
        let dense = x.contiguous().unwrap();
        assert_eq!(count(), before);
        assert_eq!(dense.strides(), x.strides());
        let copies = || d.as_gpu().map(|g| g.dispatch_count(Some("strided_copy")));
        let before = copies();
        let pc = p.contiguous().unwrap();
        assert!(pc.is_contiguous());
        assert_eq!(copies(), before.map(|n| n + 1));
        assert_eq!(pc.to_vec::<f32>().unwrap(), pv);
        // reshape: a view when the layout allows (merging a narrowed view's leading
        // dimensions), a copy when not (a permuted view flattened), as PyTorch.
        let before = count();
        let nr = ops::narrow(&x, 0, 1, 1).unwrap().reshape([3, 4]).unwrap();
        assert_eq!((nr.storage_offset(), count()), (12, before));
        let pr = p.reshape([24]).unwrap();
        assert!(pr.is_contiguous());
        assert_eq!(pr.to_vec::<f32>().unwrap(), pv);
    }
}

/// Every op reads a permuted, narrowed (offset), expanded or selected view exactly as it
/// reads the same values made contiguous: the same bits forward, the same gradients back.
#[test]
fn every_op_reads_views_as_their_contiguous_copies() {
    type Op = fn(&Tensor) -> wgnn::Result<Tensor>;
    // Matrix products read views in place, through their strides: on the CPU the GEMM crate
    // may then block the sums differently, so they are held to the matmul bound (relative to
    // the output's largest magnitude); every other op copies a view first, bit for bit.
    let in_place = ["matmul with its transpose", "matmul_nt", "linear"];
    let ops_list: Vec<(&str, Op)> = vec![
        ("relu", |x| ops::relu(x)),
        ("scale", |x| ops::scale(x, 0.5)),
        ("softmax", |x| ops::softmax(x)),
        ("layer_norm", |x| {
            let w = *x.shape().last().unwrap();
            ops::layer_norm(x, &[w], None, None, 1e-5)
        }),
        ("broadcast_add", |x| ops::broadcast_add(x, x)),
        ("matmul with its transpose", |x| {
            ops::matmul(
                x,
                &ops::transpose(x, x.shape().len() - 2, x.shape().len() - 1)?,
            )
        }),
        ("matmul_nt", |x| ops::matmul_nt(x, x, 0.25)),
        ("linear", |x| {
            let w = *x.shape().last().unwrap();
            let weight = ops::narrow(x, 0, 0, 1)?.reshape([x.numel() / x.shape()[0]])?;
            let weight = ops::narrow(&weight, 0, 0, w)?.reshape([1, w])?;
            ops::linear(x, &ops::expand(&weight, &[3, w])?, None)
        }),
        ("mean", |x| ops::mean(x)),
        ("masked_fill", |x| {
            let mask = Tensor::from_slice(&[1f32, 0., 1., 1.], &[4])?.to(&x.device())?;
            let w = *x.shape().last().unwrap();
            ops::masked_fill(x, &ops::narrow(&mask, 0, 0, w)?, -1.0)
        }),
        ("dropout", |x| {
            ops::dropout(x, 0.5, true, &mut ops::Generator::new(3))
        }),
    ];
    for d in [Device::Cpu, gpu()] {
        let x = base(&d);
        let views: Vec<(&str, Tensor)> = vec![
            ("permuted", ops::permute(&x, &[1, 0, 2]).unwrap()),
            ("narrowed", ops::narrow(&x, 2, 1, 3).unwrap()),
            ("offset rows", ops::narrow(&x, 1, 1, 2).unwrap()),
            (
                "expanded",
                ops::expand(&ops::narrow(&x, 0, 1, 1).unwrap(), &[3, 3, 4]).unwrap(),
            ),
            ("transposed", ops::transpose(&x, 1, 2).unwrap()),
        ];
        for (vname, v) in &views {
            assert!(!v.is_contiguous() || v.storage_offset() > 0, "{vname}");
            let c = v.contiguous().unwrap();
            for (oname, f) in &ops_list {
                let (a, b) = (f(v), f(&c));
                match (a, b) {
                    (Ok(a), Ok(b)) => {
                        let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
                        assert_eq!(a.len(), b.len());
                        if in_place.contains(oname) {
                            close(&a, &b, 1e-6, &format!("{oname} of a {vname} view on {d}"));
                        } else {
                            let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
                            assert!(same, "{oname} of a {vname} view on {d}");
                        }
                    }
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("{oname} of a {vname} view on {d}: {a:?} vs {b:?}"),
                }
            }
            // Backward through the view equals backward through its copy.
            let grad_of = |through_view: bool| -> Vec<f32> {
                let p = Parameter::new(x.clone());
                let pv = match *vname {
                    "permuted" => ops::permute(p.tensor(), &[1, 0, 2]),
                    "narrowed" => ops::narrow(p.tensor(), 2, 1, 3),
                    "offset rows" => ops::narrow(p.tensor(), 1, 1, 2),
                    "expanded" => {
                        ops::expand(&ops::narrow(p.tensor(), 0, 1, 1).unwrap(), &[3, 3, 4])
                    }
                    _ => ops::transpose(p.tensor(), 1, 2),
                }
                .unwrap();
                let input = if through_view {
                    pv
                } else {
                    pv.contiguous().unwrap()
                };
                let y = ops::softmax(&ops::matmul_nt(&input, &input, 0.5).unwrap()).unwrap();
                // Σ y · r with random r (a softmax's rows sum to one: a plain mean would have
                // a zero gradient).
                let n = y.numel();
                let r = Tensor::from_slice(&randn(n, 5), &[1, n])
                    .unwrap()
                    .to(&d)
                    .unwrap();
                ops::linear(&y.reshape([1, n]).unwrap(), &r, None)
                    .unwrap()
                    .reshape([1])
                    .unwrap()
                    .backward()
                    .unwrap();
                p.grad().unwrap().to_vec::<f32>().unwrap()
            };
            let (gv, gc) = (grad_of(true), grad_of(false));
            close(
                &gv,
                &gc,
                1e-5,
                &format!("gradient through a {vname} view on {d}"),
            );
        }
    }
}

/// Within `rel` of the largest magnitude: 1e-6 for products of K ≤ 4 (the matmul bound
/// `K · 2⁻²⁴ · Σ|aᵢbᵢ|` is below it), 1e-5 for gradients through them (the autograd bound).
fn close(a: &[f32], b: &[f32], rel: f32, what: &str) {
    let max = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= rel * max, "{what}: {x} vs {y} (max {max})");
    }
}

/// Writing into existing storage: wgnn never does. An optimizer step gives the parameter new
/// storage, so a view taken before the step keeps the old values (PyTorch's would see the
/// step: its optimizers write in place).
#[test]
fn an_optimizer_step_gives_the_parameter_new_storage() {
    for d in [Device::Cpu, gpu()] {
        let mut lin = Linear::new(4, 3).unwrap();
        lin.to_device(&d).unwrap();
        let row = ops::select(lin.weight.tensor(), 0, 1).unwrap();
        let before = row.to_vec::<f32>().unwrap();
        let x = Tensor::from_slice(&randn(8, 2), &[2, 4])
            .unwrap()
            .to(&d)
            .unwrap();
        let mut opt = SGD::new(&lin, 0.5, 0.0);
        ops::mean(&lin.forward(&x).unwrap())
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&mut lin).unwrap();
        assert_eq!(row.to_vec::<f32>().unwrap(), before, "the old view on {d}");
        let now = ops::select(lin.weight.tensor(), 0, 1)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_ne!(now, before, "the parameter itself stepped on {d}");
    }
}

/// state_dict, save, to_device and to_vec hand out dense data, whatever layout a module holds.
#[test]
fn views_held_by_a_module_save_and_move_as_dense_tensors() {
    let x = base(&Device::Cpu);
    let view = ops::permute(&x, &[2, 1, 0]).unwrap();
    let want = view.contiguous().unwrap().to_vec::<f32>().unwrap();
    let mut m = DynModule::new("M");
    m.register_buffer("t", Buffer::new(view)).unwrap();
    let sd = m.state_dict().unwrap();
    let t = sd.get("t").unwrap();
    assert!(t.is_contiguous() && t.storage_offset() == 0);
    assert_eq!(t.to_vec::<f32>().unwrap(), want);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    sd.save(&path).unwrap();
    let back = wgnn::StateDict::load(&path).unwrap();
    assert_eq!(back.get("t").unwrap().to_vec::<f32>().unwrap(), want);
    let g = gpu();
    m.to_device(&g).unwrap();
    let moved = m.get_buffer("t").unwrap().tensor().clone();
    assert!(moved.is_on(&g) && moved.is_contiguous());
    assert_eq!(moved.to_vec::<f32>().unwrap(), want);
    assert_eq!(
        moved
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec::<f64>()
            .unwrap()
            .len(),
        24
    );
}

/// The ops with index, table, loss and statistics inputs read views too: each against the same
/// call on `contiguous()` inputs, the same bits on the CPU and the GPU.
#[test]
fn index_table_loss_and_norm_ops_read_views() {
    type Run = Box<dyn Fn(&[Tensor]) -> wgnn::Result<Tensor>>;
    for d in [Device::Cpu, gpu()] {
        let idx = Tensor::from_slice(&[3i64, 0, 2, 1, 4, 2, 0, 1], &[2, 4])
            .unwrap()
            .to(&d)
            .unwrap();
        let f = |shape: &[usize], seed| {
            let n = shape.iter().product();
            Tensor::from_slice(&randn(n, seed), shape)
                .unwrap()
                .to(&d)
                .unwrap()
        };
        let (w, x) = (f(&[5, 6], 1), f(&[4, 3, 6], 2));
        let cases: Vec<(&str, Vec<Tensor>, Run)> = vec![
            // Transposed int64 indices, and a weight narrowed to an offset.
            (
                "embedding",
                vec![
                    ops::t(&idx).unwrap(),
                    ops::narrow(&f(&[7, 6], 3), 0, 2, 5).unwrap(),
                ],
                Box::new(|v| ops::embedding(&v[0], &v[1])),
            ),
            (
                "one_hot",
                vec![ops::t(&idx).unwrap()],
                Box::new(|v| ops::one_hot(&v[0], 5)),
            ),
            (
                "argmax",
                vec![ops::transpose(&x, 0, 2).unwrap()],
                Box::new(|v| ops::argmax(&v[0])),
            ),
            (
                "cross_entropy",
                vec![
                    ops::narrow(&ops::t(&w).unwrap(), 1, 0, 5).unwrap(),
                    ops::narrow(&idx.reshape([8]).unwrap(), 0, 2, 6).unwrap(),
                ],
                Box::new(|v| ops::cross_entropy(&v[0], &v[1])),
            ),
            (
                "layer_norm with a view as weight",
                vec![
                    ops::permute(&x, &[1, 0, 2]).unwrap(),
                    ops::select(&w, 0, 1).unwrap(),
                ],
                Box::new(|v| ops::layer_norm(&v[0], &[6], Some(&v[1]), None, 1e-5)),
            ),
            (
                "batch_norm with given statistics",
                vec![
                    ops::transpose(&f(&[6, 4], 5), 0, 1).unwrap(),
                    ops::select(&w, 0, 2).unwrap(),
                    ops::expand(&f(&[1], 6), &[6]).unwrap(),
                ],
                Box::new(|v| {
                    let var = ops::clamp(&v[2], 0.5, 10.0)?;
                    ops::batch_norm(
                        &v[0],
                        &v[1],
                        &ops::broadcast_add(&var, &v[2])?,
                        None,
                        None,
                        1e-5,
                    )
                }),
            ),
            (
                "add_positional",
                vec![
                    ops::narrow(&x, 1, 1, 2).unwrap(),
                    ops::narrow(&wgnn::ops::positional_table(8, 6, &d).unwrap(), 0, 0, 2).unwrap(),
                ],
                Box::new(|v| ops::add_positional(&v[0], &v[1])),
            ),
        ];
        for (name, views, run) in cases {
            let dense: Vec<Tensor> = views.iter().map(|v| v.contiguous().unwrap()).collect();
            let (a, b) = (run(&views).unwrap(), run(&dense).unwrap());
            assert_eq!(a.shape(), b.shape(), "{name} on {d}");
            assert_eq!(
                a.to_bytes().unwrap(),
                b.to_bytes().unwrap(),
                "{name} on {d}"
            );
        }
    }
}
