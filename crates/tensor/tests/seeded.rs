//! `seeded` keeps each draw a function of its seed while other threads draw too. A test
//! binary of its own: other tests' unguarded draws from libtorch's generators would disturb
//! it.

use contrastive_tensor::{Device, Kind, Tensor, seeded};

fn draw() -> Tensor {
    Tensor::randn([64], (Kind::Float, Device::Cpu))
}

#[test]
fn seeded_draws_depend_on_the_seed_alone_across_threads() {
    let (three, four) = (seeded(3, draw), seeded(4, draw));
    assert!(!three.equal(&four), "two seeds, two draws");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let seed = 3 + t % 2;
            std::thread::spawn(move || {
                (
                    seed,
                    (0..50).map(|_| seeded(seed, draw)).collect::<Vec<_>>(),
                )
            })
        })
        .collect();
    for thread in threads {
        let (seed, draws) = thread.join().unwrap();
        let expected = if seed == 3 { &three } else { &four };
        assert!(
            draws.iter().all(|x| x.equal(expected)),
            "a draw with seed {seed} was disturbed by another thread"
        );
    }
}
