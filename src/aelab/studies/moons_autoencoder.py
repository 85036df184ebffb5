"""The first main job: an autoencoder with a 1-D bottleneck on two moons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aelab import data, plots
from aelab._seed import seeded
from aelab.evaluate import reconstruct, reconstruction_error
from aelab.models import Autoencoder
from aelab.studies._base import StudyResult, study
from aelab.studies._common import mean_predictor_mse
from aelab.train import train_autoencoder


@study("moons-autoencoder", "MLP autoencoder 2-64-64-1-64-64-2 on two moons: loss curves and reconstructions")
def moons_autoencoder(quick: bool = True, seed: int = 0, n: int | None = None,
                      noise: float = 0.1, epochs: int | None = None, hidden_size: int = 64,
                      layers: int = 2, progress=None) -> StudyResult:
    """Train a 1-D-bottleneck autoencoder on two moons and show what it learned.

    Examples
    --------
    >>> result = moons_autoencoder(quick=True)
    >>> sorted(result.figures)
    ['loss', 'reconstruction']
    """
    n = n or (1000 if quick else 2000)
    epochs = epochs or (150 if quick else 1000)
    config = dict(n=n, noise=noise, epochs=epochs, batch_size=32, lr=3e-3,
                  hidden_size=hidden_size, layers=layers, seed=seed, quick=quick)
    train, test = data.split(data.moons(n, noise=noise, seed=seed), test_size=0.2, seed=seed)
    with seeded(seed):
        model = Autoencoder(2, 1, hidden_size, layers)
    history = train_autoencoder(model, train, epochs=epochs, batch_size=config["batch_size"],
                                lr=config["lr"], test=test, seed=seed, device="cpu",
                                progress=progress)
    train_mse = reconstruction_error(model, train.X)
    test_mse = reconstruction_error(model, test.X)
    X_hat = reconstruct(model, test.X)
    lost = {name: mse / mean_predictor_mse(ds.X) for name, mse, ds in
            [("train", train_mse, train), ("test", test_mse, test)]}
    table = pd.DataFrame({
        "split": ["train", "test"],
        "n_samples": [len(train), len(test)],
        "reconstruction MSE": [train_mse, test_mse],
        "share of variance lost": [lost["train"], lost["test"]],
    })
    best_epoch = int(np.argmin(history.test_loss)) + 1
    findings = [
        f"After {epochs} epochs ({history.examples_seen[-1]:,} examples, "
        f"{history.seconds[-1]:.1f} s) the test reconstruction MSE is {test_mse:.4f} "
        f"(train {train_mse:.4f}): the 1-D code loses {100 * lost['test']:.1f}% "
        "of the test set's variance.",
        f"The lowest test loss, {min(history.test_loss):.4f}, came at epoch {best_epoch} of {epochs}"
        + (" (the last): more epochs may still help." if best_epoch == epochs else "."),
    ]
    figures = {
        "loss": plots.loss_curves({"2-D moons AE": history},
                                  title=f"Two moons, bottleneck 1: loss per epoch ({len(train)} training points)"),
        "reconstruction": plots.reconstruction_scatter(
            test.X, X_hat, title=f"Test points and their reconstructions (MSE {test_mse:.4f})"),
    }
    metrics = {"train_mse": train_mse, "test_mse": test_mse, "epochs": epochs,
               "seconds": history.seconds[-1], "final_train_loss": history.train_loss[-1]}
    return StudyResult("moons-autoencoder", {"errors": table}, figures, findings, config, metrics)
