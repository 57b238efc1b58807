//! Forward pass of the W1 small CNN (see docs/benchmarks.md) on a batch of 256 28x28 images:
//! fp32 against bf16 autocast, each in the default and the channels-last layout.

use contrastive_tensor::{
    Device, Kind, ModuleT, Precision, Tensor, autocast, nn, no_grad, seed_all, set_threads,
    to_channels_last, var_store_to_channels_last,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn block(p: nn::Path, c_in: i64, c_out: i64) -> nn::SequentialT {
    let conv = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    nn::seq_t()
        .add(nn::conv2d(&p / "conv", c_in, c_out, 3, conv))
        .add(nn::batch_norm2d(&p / "bn", c_out, Default::default()))
        .add_fn(|x| x.relu())
}

fn small_cnn(p: &nn::Path) -> nn::SequentialT {
    nn::seq_t()
        .add(block(p / "0", 1, 32))
        .add(block(p / "1", 32, 32))
        .add_fn(|x| x.max_pool2d_default(2))
        .add(block(p / "2", 32, 64))
        .add(block(p / "3", 64, 64))
        .add_fn(|x| x.max_pool2d_default(2))
        .add(block(p / "4", 64, 128))
        .add(block(p / "5", 128, 128))
        .add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
}

fn bench_forward(c: &mut Criterion) {
    set_threads(2).expect("two threads");
    seed_all(0);
    let mut group = c.benchmark_group("small_cnn_forward_256x28x28");
    for channels_last in [false, true] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = small_cnn(&vs.root());
        let mut input = Tensor::rand([256, 1, 28, 28], (Kind::Float, Device::Cpu));
        if channels_last {
            var_store_to_channels_last(&vs).expect("convert weights");
            input = to_channels_last(&input).expect("convert input");
        }
        for precision in [Precision::Fp32, Precision::Bf16] {
            let layout = if channels_last {
                "channels_last"
            } else {
                "nchw"
            };
            group.bench_function(format!("{precision}_{layout}"), |b| {
                b.iter(|| {
                    let _guard = autocast(Device::Cpu, precision).expect("autocast");
                    no_grad(|| net.forward_t(&input, false))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_forward
}
criterion_main!(benches);
