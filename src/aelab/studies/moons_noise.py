"""Two moons at another noise level (course sheet 002, tasks 1.4 and 1.5).

A model trained at noise 0.1 is tested at 0.2 without retraining; then a model
is trained at 0.2. The reconstructed set is measured against the noise-free
curve: its mean distance to it, the radius of each reconstructed moon (1 on the
true curve), whether points keep their moon, and the length of the decoder's curve.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from aelab.evaluate import reconstruct, reconstruction_error
from aelab.plots import new_figure
from aelab.quality import distance_to_moons
from aelab.studies._base import StudyResult, study
from aelab.studies._common import (
    collapsed,
    curve_length,
    decoded_curve,
    mean_predictor_mse,
    setting,
    train_stack,
)
from aelab.studies.moons import (
    build_mlp,
    diverged,
    draw_moons_curve,
    draw_reconstruction,
    finish_plane,
    median_member,
    moon_radius,
    moons_data,
    moons_test,
)

# length of the noise-free two-moons curve: two half circles of radius 1
TRUE_CURVE_LENGTH = 2 * np.pi
IN_DIST = "test points' distance to curve"
REC_DIST = "reconstructions' distance to curve"
RADIUS = "reconstructions' moon radius"


@study("moons-noise-shift",
       "1-D bottleneck trained at noise 0.1 tested at 0.2, and trained at 0.2: how reconstructions move")
def moons_noise_shift(quick: bool = True, seed: int = 0, *, progress=None,
                      train_noises=(0.1, 0.2), test_noises=(0.1, 0.2), n_seeds: int | None = None,
                      n_train: int | None = None, n_test: int | None = None,
                      epochs: int | None = None, batch_size: int | None = None, lr: float = 3e-3,
                      hidden_size: int = 32, layers: int = 2) -> StudyResult:
    """Train at each of ``train_noises`` and test every model at each of ``test_noises``.

    Every train/test pair is measured by the test MSE, the noise floor
    ``sigma²/2`` (the per-feature error left by noise across a 1-D curve, which
    no 1-D code can remove), the mean distance of the reconstructions to the
    noise-free curve, their mean radius around their moon's centre, and the
    share of points whose reconstruction lies nearest their own moon.

    Examples
    --------
    >>> r = moons_noise_shift(quick=True, n_seeds=1, epochs=2)
    >>> len(r.tables["errors"])
    4
    """
    n_seeds = setting("n_seeds", n_seeds, quick, 2, 5)
    n_train = setting("n_train", n_train, quick, 400, 1000)
    n_test = setting("n_test", n_test, quick, 500, 2000)
    epochs = setting("epochs", epochs, quick, 200, 1000)
    batch_size = setting("batch_size", batch_size, quick, 64, 32)
    train_noises, test_noises = [float(v) for v in train_noises], [float(v) for v in test_noises]
    seeds = [seed + i for i in range(n_seeds)]
    config = dict(quick=quick, seed=seed, seeds=seeds, train_noises=train_noises,
                  test_noises=test_noises, n_train=n_train, n_test=n_test, epochs=epochs,
                  batch_size=batch_size, lr=lr, hidden_size=hidden_size, layers=layers,
                  optimizer="adam")
    tests = {s: moons_test(n_test, s, seed) for s in test_noises}
    models = {sigma: [build_mlp(hidden_size, layers, s) for s in seeds] for sigma in train_noises}
    trains = {sigma: moons_data(n_train, sigma, seed) for sigma in train_noises}
    # each model watches the test set at its own noise level during training
    watch = {sigma: tests[sigma] if sigma in tests else moons_test(n_test, sigma, seed)
             for sigma in train_noises}
    jobs = [(sigma, i) for sigma in train_noises for i in range(n_seeds)]
    histories = train_stack([models[sigma][i] for sigma, i in jobs],
                            [trains[sigma] for sigma, _ in jobs],
                            test=[watch[sigma] for sigma, _ in jobs], epochs=epochs,
                            batch_size=batch_size, lr=lr, seeds=[seeds[i] for _, i in jobs],
                            on_diverge="restore", progress=progress)
    failed = dict(zip(jobs, map(diverged, histories)))

    rows = []
    for sigma_train, members in models.items():
        for sigma_test, test in tests.items():
            dist_in = float(distance_to_moons(test.X)[0].mean())
            for i, (s, m) in enumerate(zip(seeds, members)):
                X_hat = reconstruct(m, test.X)
                err = reconstruction_error(m, test.X)
                dist, moon = distance_to_moons(X_hat)
                rows.append({"train noise": sigma_train, "test noise": sigma_test, "seed": s,
                             "test MSE": err, "noise floor σ²/2": sigma_test**2 / 2,
                             IN_DIST: dist_in, REC_DIST: float(dist.mean()),
                             RADIUS: moon_radius(X_hat),
                             "share kept on own moon": float((moon == test.y).float().mean()),
                             "decoded curve length": curve_length(decoded_curve(m, test.X)),
                             "collapsed": collapsed(err, mean_predictor_mse(test.X)),
                             "diverged": failed[(sigma_train, i)]})
    runs = pd.DataFrame(rows)
    measures = ["test MSE", "noise floor σ²/2", IN_DIST, REC_DIST, RADIUS, "share kept on own moon",
                "decoded curve length"]
    errors = runs.groupby(["train noise", "test noise"])[measures].mean().reset_index()
    errors["std test MSE"] = runs.groupby(["train noise", "test noise"])["test MSE"].std().values
    errors["seeds"] = n_seeds
    errors["collapsed runs"] = runs.groupby(["train noise", "test noise"])["collapsed"].sum().values

    def at(train_sigma, test_sigma, column):
        row = errors[(errors["train noise"] == train_sigma) & (errors["test noise"] == test_sigma)]
        return float(row[column].iloc[0])

    # one typical member per training noise (median test MSE at its own noise) for the figures
    shown = {}
    for sigma, members in models.items():
        own = tests.get(sigma, tests[test_noises[0]])
        shown[sigma] = members[median_member([reconstruction_error(m, own.X) for m in members])]

    fig_rec, axs = new_figure(len(test_noises), len(train_noises), width=5.0, height=4.3)
    for i, sigma_train in enumerate(train_noises):
        for j, sigma_test in enumerate(test_noises):
            test = tests[sigma_test]
            draw_reconstruction(axs[i, j], test.X, reconstruct(shown[sigma_train], test.X),
                                f"trained at noise {sigma_train:g}, tested at {sigma_test:g}\n"
                                f"test MSE {at(sigma_train, sigma_test, 'test MSE'):.4f} "
                                f"(floor {sigma_test**2 / 2:.4f})")
    fig_rec.suptitle("Reconstructed vs original test points (rows: training noise, "
                     "columns: test noise)")

    fig_curve, axc = new_figure(1, 1, width=7.0, height=5.0)
    ax = axc[0, 0]
    widest = tests[max(test_noises)]
    ax.scatter(widest.X[:, 0], widest.X[:, 1], s=5, color="0.82",
               label=f"test points (noise {max(test_noises):g})", zorder=1)
    for k, (sigma, model) in enumerate(shown.items()):
        c = decoded_curve(model, widest.X).numpy()
        ax.plot(c[:, 0], c[:, 1], color=f"C{k}", lw=2.2,
                label=f"decoder's curve, trained at noise {sigma:g} "
                      f"(length {curve_length(decoded_curve(model, widest.X)):.2f})", zorder=3)
    draw_moons_curve(ax, label=f"noise-free moons (length {TRUE_CURVE_LENGTH:.2f})")
    finish_plane(ax, "The reconstructed set: each model's decoder over the test codes' range")

    lo, hi = min(train_noises), max(train_noises)
    t_lo, t_hi = min(test_noises), max(test_noises)
    findings = [
        f"Trained at noise {lo:g}, the model's test MSE rises from {at(lo, t_lo, 'test MSE'):.4f} "
        f"at noise {t_lo:g} to {at(lo, t_hi, 'test MSE'):.4f} at {t_hi:g} without retraining; "
        f"the noise floor σ²/2 rises from {t_lo**2 / 2:.4f} to {t_hi**2 / 2:.4f}, so the excess over "
        f"the floor goes from {at(lo, t_lo, 'test MSE') - t_lo**2 / 2:.4f} to "
        f"{at(lo, t_hi, 'test MSE') - t_hi**2 / 2:.4f}.",
        f"Its reconstructions of the noise-{t_hi:g} points stay {at(lo, t_hi, REC_DIST):.3f} "
        f"from the noise-free curve (the points themselves: {at(lo, t_hi, IN_DIST):.3f}); "
        f"{at(lo, t_hi, 'share kept on own moon'):.1%} of them stay on their own moon "
        f"(at noise {t_lo:g}: {at(lo, t_lo, 'share kept on own moon'):.1%}).",
        f"Trained at noise {hi:g} and tested at {t_hi:g}: test MSE {at(hi, t_hi, 'test MSE'):.4f} "
        f"(vs {at(lo, t_hi, 'test MSE'):.4f} for the model trained at {lo:g}). Its reconstructions "
        f"lie {at(hi, t_hi, REC_DIST):.3f} from the noise-free curve against "
        f"{at(lo, t_hi, REC_DIST):.3f}"
        + (" (the curve learned from noisier data follows the true moons less closely)"
           if at(hi, t_hi, REC_DIST) > 1.25 * at(lo, t_hi, REC_DIST) else "")
        + f", {at(hi, t_hi, 'share kept on own moon'):.1%} stay on their own moon against "
        f"{at(lo, t_hi, 'share kept on own moon'):.1%}, the reconstructed moons have mean radius "
        f"{at(hi, t_hi, RADIUS):.3f} against {at(lo, t_hi, RADIUS):.3f} (true curve: 1), and the "
        f"decoder's curve is {at(hi, t_hi, 'decoded curve length'):.2f} long against "
        f"{at(lo, t_hi, 'decoded curve length'):.2f} "
        f"({at(hi, t_hi, 'decoded curve length') / at(lo, t_hi, 'decoded curve length'):.2f} "
        f"times as long; the two true half circles: {TRUE_CURVE_LENGTH:.2f}, without the bridge "
        "a 1-D code must draw between them).",
    ]
    n_diverged = int(runs.drop_duplicates(["train noise", "seed"])["diverged"].sum())
    if n_diverged:
        findings.append(f"{n_diverged} of {len(jobs)} models diverged (loss NaN or infinite) and "
                        "were put back to their initial weights.")
    n_collapsed = int(runs["collapsed"].sum())
    if n_collapsed:
        findings.append(f"{n_collapsed} of {len(runs)} model/test pairs are no better than "
                        "predicting the mean (collapsed models).")
    metrics = {f"mse_train{a:g}_test{b:g}": at(a, b, "test MSE")
               for a in train_noises for b in test_noises}
    metrics.update({f"radius_train{a:g}_test{t_hi:g}": at(a, t_hi, RADIUS)
                    for a in train_noises})
    return StudyResult("moons-noise-shift", {"errors": errors, "runs": runs},
                       {"reconstructions": fig_rec, "curves": fig_curve}, findings, config, metrics)
