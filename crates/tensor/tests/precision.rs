//! Mixed precision (CPU autocast) and the channels-last layout.

use contrastive_tensor::{
    Device, Kind, ModuleT, Precision, Tensor, autocast, is_channels_last, nn, no_grad, seeded,
    to_channels_last, to_contiguous, var_store_to_channels_last,
};

/// A small conv net in the shape of the W1 backbone (conv-BN-ReLU blocks, pooling).
fn small_cnn(vs: &nn::VarStore) -> nn::SequentialT {
    let p = vs.root();
    let conv = nn::ConvConfig {
        padding: 1,
        bias: false,
        ..Default::default()
    };
    let mut net = nn::seq_t();
    for (i, (c_in, c_out)) in [(1, 16), (16, 16), (16, 32), (32, 32)]
        .into_iter()
        .enumerate()
    {
        net = net
            .add(nn::conv2d(&p / format!("conv{i}"), c_in, c_out, 3, conv))
            .add(nn::batch_norm2d(
                &p / format!("bn{i}"),
                c_out,
                Default::default(),
            ))
            .add_fn(|x| x.relu());
        if i % 2 == 1 {
            net = net.add_fn(|x| x.max_pool2d_default(2));
        }
    }
    net.add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1))
        .add(nn::linear(&p / "fc", 32, 10, Default::default()))
}

fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a.to_kind(Kind::Float) - b.to_kind(Kind::Float))
        .norm()
        .double_value(&[]);
    diff / b.to_kind(Kind::Float).norm().double_value(&[])
}

#[test]
fn bf16_autocast_forward_is_within_one_percent_of_fp32() {
    let vs = nn::VarStore::new(Device::Cpu);
    let (net, x) = seeded(3, || {
        let net = small_cnn(&vs);
        (
            net,
            Tensor::rand([32, 1, 28, 28], (Kind::Float, Device::Cpu)),
        )
    });
    let fp32 = no_grad(|| net.forward_t(&x, false));
    let bf16 = {
        let guard = autocast(Device::Cpu, Precision::Bf16).unwrap();
        assert!(guard.is_active());
        no_grad(|| net.forward_t(&x, false))
    };
    // Autocast really ran the layers in bf16: the last linear layer's output is bf16.
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let err = relative_error(&bf16, &fp32);
    assert!(err < 1e-2, "relative error {err}");
    assert!(
        err > 0.0,
        "bf16 and fp32 gave identical outputs: autocast did nothing"
    );
}

#[test]
fn guards_nest_and_restore_the_previous_state() {
    let a = Tensor::ones([8, 8], (Kind::Float, Device::Cpu));
    assert_eq!(a.matmul(&a).kind(), Kind::Float);
    {
        let _outer = autocast(Device::Cpu, Precision::Bf16).unwrap();
        assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        {
            let _inner = autocast(Device::Cpu, Precision::Fp16).unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::Half);
        }
        assert_eq!(
            a.matmul(&a).kind(),
            Kind::BFloat16,
            "the inner guard restored bf16"
        );
        let noop = autocast(Device::Cpu, Precision::Fp32).unwrap();
        assert!(!noop.is_active());
        assert_eq!(
            a.matmul(&a).kind(),
            Kind::BFloat16,
            "fp32 guards change nothing"
        );
    }
    assert_eq!(a.matmul(&a).kind(), Kind::Float, "autocast is off again");
}

#[test]
fn autocast_is_refused_where_libtorch_has_none() {
    let err = autocast(Device::Mps, Precision::Bf16).unwrap_err();
    assert!(err.to_string().contains("bf16"), "{err}");
}

#[test]
fn precisions_parse_and_print() {
    for (text, precision) in [
        ("fp32", Precision::Fp32),
        ("BF16", Precision::Bf16),
        ("half", Precision::Fp16),
    ] {
        assert_eq!(text.parse::<Precision>().unwrap(), precision);
    }
    assert_eq!(Precision::Bf16.to_string(), "bf16");
    assert!("int8".parse::<Precision>().is_err());
    assert_eq!(Precision::fastest_for(Device::Cuda(0)), Precision::Bf16);
}

#[test]
fn channels_last_keeps_values_and_model_outputs() {
    let x = seeded(5, || Tensor::rand([4, 3, 9, 7], (Kind::Float, Device::Cpu)));
    let nhwc = to_channels_last(&x).unwrap();
    assert!(is_channels_last(&nhwc).unwrap());
    assert!(!is_channels_last(&x).unwrap());
    assert_eq!(nhwc.size(), x.size());
    assert!(nhwc.equal(&x));
    let back = to_contiguous(&nhwc).unwrap();
    assert!(back.is_contiguous() && back.equal(&x));
    // Other ranks pass through unchanged.
    let bias = Tensor::ones([16], (Kind::Float, Device::Cpu));
    assert!(!is_channels_last(&to_channels_last(&bias).unwrap()).unwrap());

    let vs = nn::VarStore::new(Device::Cpu);
    let (net, input) = seeded(6, || {
        let net = small_cnn(&vs);
        (
            net,
            Tensor::rand([8, 1, 28, 28], (Kind::Float, Device::Cpu)),
        )
    });
    let before = no_grad(|| net.forward_t(&input, false));
    var_store_to_channels_last(&vs).unwrap();
    assert!(is_channels_last(&vs.variables()["conv1.weight"]).unwrap());
    let after = no_grad(|| net.forward_t(&to_channels_last(&input).unwrap(), false));
    assert!(after.allclose(&before, 1e-4, 1e-5, false));
}
