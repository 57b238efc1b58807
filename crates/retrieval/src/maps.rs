//! Two-dimensional maps of embeddings for pictures: PCA (the two leading principal
//! components) and t-SNE (van der Maaten & Hinton 2008, Barnes-Hut approximation, through
//! the `bhtsne` crate), started from the PCA map scaled to a standard deviation of 1e-4 as
//! Kobak & Linderman (2021) recommend, so a map is the same for the same points.

use bhtsne::tSNE;
use contrastive_tensor::{Kind, Tensor, no_grad, with_f32_slice};

use crate::error::invalid;
use crate::{Error, Result};

fn check(x: &Tensor, op: &'static str, at_least: i64) -> Result<()> {
    let size = x.size();
    if size.len() != 2 || size[0] < at_least || size[1] < 2 {
        return Err(Error::Shape {
            op,
            message: format!("expected at least {at_least} rows of width 2 or more, got {size:?}"),
        });
    }
    Ok(())
}

/// The rows of `x` `[N, D]` on their two leading principal components, `[N, 2]`.
pub fn pca_2d(x: &Tensor) -> Result<Tensor> {
    check(x, "pca", 2)?;
    Ok(no_grad(|| {
        let x = x.to_kind(Kind::Float);
        let centred = &x - x.mean_dim(0, true, Kind::Float);
        // The two leading eigenvectors of the covariance (eigh sorts eigenvalues ascending).
        let covariance = centred.tr().matmul(&centred) / x.size()[0] as f64;
        let (_, vectors) = Tensor::linalg_eigh(&covariance, "L");
        let width = vectors.size()[1];
        centred.matmul(&vectors.narrow(1, width - 2, 2).flip([1]))
    }))
}

/// A t-SNE map of the rows of `x` `[N, D]` (Euclidean distances), `[N, 2]`. `perplexity`
/// (5 to 100; 30 is usual) is about how many neighbours each point keeps close; it must be
/// below `N / 3`. Takes some seconds per thousand points.
pub fn tsne_2d(x: &Tensor, perplexity: f32) -> Result<Tensor> {
    check(x, "t-SNE", 4)?;
    let n = x.size()[0];
    if !(5.0..=100.0).contains(&perplexity) || perplexity * 3.0 >= (n - 1) as f32 {
        return Err(invalid(
            "perplexity",
            format!("{perplexity} must be within 5..=100 and below a third of the {n} points"),
        ));
    }
    let init = pca_2d(x)?;
    let init = &init / (init.select(1, 0).std(true).double_value(&[]).max(1e-12) / 1e-4);
    let init = Vec::<f32>::try_from(&init.flatten(0, -1))?;
    let x = no_grad(|| x.to_kind(Kind::Float).contiguous());
    let d = x.size()[1] as usize;
    let map = with_f32_slice(&x, |values| {
        let rows: Vec<&[f32]> = values.chunks(d).collect();
        tSNE::<f32, &[f32]>::new(&rows)
            .perplexity(perplexity)
            .epochs(1000)
            .initial_embedding(init)
            .barnes_hut(0.5, |a, b| {
                a.iter()
                    .zip(b.iter())
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum::<f32>()
                    .sqrt()
            })
            .embedding()
    });
    Ok(Tensor::from_slice(&map).view([n, 2]))
}

#[cfg(test)]
mod tests {
    use contrastive_tensor::{Device, seeded};

    use super::*;

    /// Three tight groups far apart in 16 dimensions.
    fn groups() -> Tensor {
        seeded(4, || {
            let cpu = (Kind::Float, Device::Cpu);
            let centres = Tensor::randn([3, 16], cpu) * 10.0;
            let pick = Tensor::arange(150, (Kind::Int64, Device::Cpu)).remainder(3);
            centres.index_select(0, &pick) + Tensor::randn([150, 16], cpu)
        })
    }

    /// Share of points whose nearest other point on the map is of their own group.
    fn own_group_share(map: &Tensor) -> f64 {
        let d = map.unsqueeze(1) - map.unsqueeze(0);
        let d = d.square().sum_dim_intlist(2, false, Kind::Float)
            + Tensor::eye(150, (Kind::Float, Device::Cpu)) * 1e9;
        let nearest = Vec::<i64>::try_from(&d.argmin(1, false)).unwrap();
        let same = nearest
            .iter()
            .enumerate()
            .filter(|&(i, &j)| i % 3 == j as usize % 3);
        same.count() as f64 / 150.0
    }

    #[test]
    fn both_maps_keep_groups_apart() {
        let x = groups();
        let pca = pca_2d(&x).unwrap();
        assert_eq!(pca.size(), [150, 2]);
        assert!(own_group_share(&pca) > 0.95);
        let tsne = tsne_2d(&x, 10.0).unwrap();
        assert_eq!(tsne.size(), [150, 2]);
        assert!(own_group_share(&tsne) > 0.95, "{}", own_group_share(&tsne));
        assert!(tsne.isfinite().all().int64_value(&[]) == 1);
    }

    #[test]
    fn bad_input_is_refused() {
        let x = groups();
        assert!(
            tsne_2d(&x, 60.0)
                .unwrap_err()
                .to_string()
                .contains("perplexity")
        );
        assert!(tsne_2d(&x, 2.0).is_err());
        let one = Tensor::zeros([1, 4], (Kind::Float, Device::Cpu));
        assert!(pca_2d(&one).is_err());
    }
}
