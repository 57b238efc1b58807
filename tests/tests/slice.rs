//! The vertical slice so far: a folder of PNG files is read by `contrastive-data`, batched by
//! `contrastive-samplers`, turned into tensors by `contrastive-tensor`, and a small CNN learns
//! embeddings with NT-Xent from `contrastive-losses` in bf16 on the CPU, without labels. The
//! loss must fall clearly; the labels are used only to check that the learned space still
//! groups the four shapes (it has not collapsed), which a random encoder already does here.

use contrastive_data::{Channels, Dataset, FolderOptions, ImageFolder, Resize};
use contrastive_e2e::{tiny_cnn, write_shapes};
use contrastive_losses::{InfoNce, InfoNceConfig};
use contrastive_samplers::MultiView;
use contrastive_tensor::{
    Device, Kind, ModuleT, Normalize, Precision, Tensor, autocast, nn, nn::OptimizerConfig,
    no_grad, seed_all, set_threads, stack_hwc,
};

/// A random view: shifted by up to 4 pixels each way (wrapping), flipped half the time.
fn view(batch: &Tensor) -> Tensor {
    let shifts = Tensor::randint(9, [2], (Kind::Int64, Device::Cpu)) - 4;
    let shifted = batch.roll([shifts.int64_value(&[0]), shifts.int64_value(&[1])], [2, 3]);
    if Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[0]) < 0.5 {
        shifted.flip([3])
    } else {
        shifted
    }
}

/// Leave-one-out nearest-neighbour accuracy of cosine similarity on `embeddings`.
fn nearest_neighbour_accuracy(embeddings: &Tensor, labels: &Tensor) -> f64 {
    let z = embeddings / embeddings.norm_scalaropt_dim(2.0, [1], true);
    let n = z.size()[0];
    let sim = z.matmul(&z.tr()) - Tensor::eye(n, (Kind::Float, Device::Cpu)) * 10.0;
    let nearest = sim.argmax(1, false);
    labels
        .index_select(0, &nearest)
        .eq_tensor(labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float)
        .double_value(&[])
}

#[test]
fn a_folder_of_images_trains_an_encoder_without_labels() {
    set_threads(2).unwrap();
    seed_all(4);
    let dir = tempfile::tempdir().unwrap();
    write_shapes(dir.path(), 24, 32, 0);
    let options = FolderOptions {
        channels: Channels::Gray,
        resize: Resize::Exact {
            height: 28,
            width: 28,
        },
        ..Default::default()
    };
    let folder = ImageFolder::open(dir.path(), options).unwrap();
    assert_eq!((folder.len(), folder.class_names().len()), (96, 4));
    let samples = folder
        .get_many(&(0..folder.len()).collect::<Vec<_>>())
        .unwrap();
    let views: Vec<_> = samples.iter().map(|s| s.image.view()).collect();
    let norm = Normalize::new(vec![0.2], vec![0.3]).unwrap();
    let images = norm.apply(&stack_hwc(&views).unwrap()).unwrap();
    let labels = Tensor::from_slice(
        &samples
            .iter()
            .map(|s| s.label.unwrap() as i64)
            .collect::<Vec<_>>(),
    );

    let vs = nn::VarStore::new(Device::Cpu);
    let net = tiny_cnn(&vs, 32);
    let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
    let nt_xent = InfoNce::new(InfoNceConfig::new(0.5).with_chunk_size(Some(24))).unwrap();
    let sampler = MultiView::new(folder.len(), 32, true, 9).unwrap();
    let embed = |x: &Tensor| no_grad(|| net.forward_t(x, false));
    let before = nearest_neighbour_accuracy(&embed(&images), &labels);

    let mut losses = Vec::new();
    for epoch in 0..25 {
        for batch in sampler.epoch(epoch) {
            let index = Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let x = images.index_select(0, &index);
            let loss = {
                let _bf16 = autocast(Device::Cpu, Precision::Bf16).unwrap();
                nt_xent
                    .views(
                        &net.forward_t(&view(&x), true),
                        &net.forward_t(&view(&x), true),
                    )
                    .unwrap()
            };
            opt.backward_step(&loss);
            losses.push(loss.double_value(&[]));
        }
    }
    let first: f64 = losses[..6].iter().sum::<f64>() / 6.0;
    let last: f64 = losses[losses.len() - 6..].iter().sum::<f64>() / 6.0;
    let after = nearest_neighbour_accuracy(&embed(&images), &labels);
    assert!(
        last < first * 0.8,
        "NT-Xent went from {first:.3} to {last:.3}"
    );
    assert!(
        after >= 0.85,
        "nearest-neighbour accuracy {after:.2} (before training {before:.2})"
    );
}
