//! Several threads on one GPU device (issue 19, defect 0). `Tensor`, modules and devices are
//! `Send + Sync`; every thread's results must be what the same work gives alone: bit-identical
//! to the CPU path for elementwise and layout ops, and to the same kernel run single-threaded
//! for reductions (matmul, layer norm, softmax), whose summation order is fixed per kernel.

mod common;

use std::sync::Barrier;

use wgnn::nn::Linear;
use wgnn::ops::{layer_norm, linear, matmul, relu, scale, softmax};
use wgnn::{Device, ModuleExt, PositionalEncoding, Tensor};

const THREADS: usize = 4;
const ROUNDS: usize = 6;
const SEQS: [usize; 4] = [50, 110, 170, 230];

/// The report, as it was seen: four threads share one `PositionalEncoding` and run
/// `forward` + `to_vec` six rounds each. Before the fix 5 runs out of 5 gave wrong numbers.
#[test]
fn threads_sharing_a_positional_encoding_get_the_cpu_bits() {
    let gpu = common::gpu();
    let pe_gpu = PositionalEncoding::on(64, 256, &gpu).unwrap();
    let pe_cpu = PositionalEncoding::on(64, 256, &Device::Cpu).unwrap();
    let inputs: Vec<Vec<f32>> = SEQS
        .iter()
        .enumerate()
        .map(|(i, &s)| common::randn(3 * s * 64, 100 + i as u64))
        .collect();
    let want: Vec<Vec<u32>> = SEQS
        .iter()
        .zip(&inputs)
        .map(|(&s, x)| {
            let x = Tensor::from_slice(x, &[3, s, 64]).unwrap();
            bits(&pe_cpu.forward(&x).unwrap())
        })
        .collect();
    let wrong = race(|t, round| {
        let i = (t + round) % SEQS.len();
        let x = Tensor::from_slice(&inputs[i], &[3, SEQS[i], 64])
            .unwrap()
            .to(&gpu)
            .unwrap();
        let y = pe_gpu.forward(&x).unwrap();
        if bits(&y) != want[i] {
            vec![format!("thread {t} round {round}")]
        } else {
            vec![]
        }
    });
    assert!(wrong.is_empty(), "results differ from the CPU: {wrong:?}");
}

/// Threads × rounds × ops of several kinds: uploads, a forward of several layers, elementwise
/// chains whose intermediates are dropped at once (so their buffers go back to the pool and
/// another thread's op takes them while the first thread's reads may still be pending), read
/// backs of intermediates, and explicit flushes and synchronizes from some threads.
#[test]
fn mixed_ops_on_many_threads_match_a_single_thread() {
    let gpu = common::gpu();
    let lin_cpu = Linear::new(64, 48).unwrap();
    let mut lin = Linear::new(64, 48).unwrap();
    lin.load_state_dict(&lin_cpu.state_dict().unwrap(), true)
        .unwrap();
    lin.to_device(&gpu).unwrap();
    let w = Tensor::from_slice(&common::randn(48 * 32, 7), &[48, 32]).unwrap();
    let w_gpu = w.to(&gpu).unwrap();

    // One job = (elementwise chain on the CPU reference, GPU reductions single-threaded).
    let job = |x: &Tensor, lin: &Linear, w: &Tensor| -> Vec<Vec<u32>> {
        let a = relu(&scale(x, 0.75).unwrap()).unwrap(); // elementwise
        let h = linear(
            x,
            lin.weight.tensor(),
            lin.bias.as_ref().map(|b| b.tensor()),
        )
        .unwrap();
        let n = layer_norm(&h, &[48], None, None, 1e-5).unwrap();
        let p = softmax(&matmul(&n, w).unwrap()).unwrap();
        vec![bits(&a), bits(&h), bits(&n), bits(&p)]
    };
    let xs: Vec<Vec<f32>> = (0..8).map(|i| common::randn(5 * 37 * 64, i)).collect();
    // References: the elementwise result from the CPU, the reductions from the GPU alone.
    let want: Vec<Vec<Vec<u32>>> = xs
        .iter()
        .map(|x| {
            let xc = Tensor::from_slice(x, &[5, 37, 64]).unwrap();
            let cpu = job(&xc, &lin_cpu, &w);
            let g = job(&xc.to(&gpu).unwrap(), &lin, &w_gpu);
            assert_eq!(cpu[0], g[0], "relu(scale) is bit-identical on CPU and GPU");
            g
        })
        .collect();
    let wrong = race(|t, round| {
        let i = (t * 3 + round) % xs.len();
        let x = Tensor::from_slice(&xs[i], &[5, 37, 64])
            .unwrap()
            .to(&gpu)
            .unwrap();
        // Garbage work whose outputs are dropped at once: pool churn.
        for _ in 0..3 {
            drop(scale(&x, -2.0).unwrap());
        }
        let got = job(&x, &lin, &w_gpu);
        match t % 3 {
            0 => gpu.as_gpu().unwrap().flush().unwrap(),
            1 => gpu.as_gpu().unwrap().synchronize().unwrap(),
            _ => {}
        }
        got.iter()
            .zip(&want[i])
            .enumerate()
            .filter(|(_, (g, e))| g != e)
            .map(|(k, _)| format!("thread {t} round {round} output {k}"))
            .collect()
    });
    assert!(
        wrong.is_empty(),
        "results differ from one thread's: {wrong:?}"
    );
}

/// Runs `round(t, r)` on `THREADS` threads × `ROUNDS` rounds, the threads starting together;
/// returns what the rounds report wrong.
fn race(round: impl Fn(usize, usize) -> Vec<String> + Sync) -> Vec<String> {
    let start = Barrier::new(THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (start, round) = (&start, &round);
                s.spawn(move || {
                    start.wait();
                    (0..ROUNDS).flat_map(|r| round(t, r)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}
