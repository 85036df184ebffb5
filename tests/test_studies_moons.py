"""What remains of the moons-* study tests: the many-model trainer they used.

The studies' own tests are in test_studies_hyperparameters.py (hyperparameters,
reproducibility, noise-shift) and test_studies_moons_generative.py.
"""


def test_train_stack_stacks_same_shape_models_and_reports_divergence():
    import torch

    from aelab import data
    from aelab.studies._common import train_stack
    from aelab.studies.moons import build_mlp, diverged

    train, test = data.moons(64, seed=0), data.moons(32, seed=1)
    models = [build_mlp(8, 1, s) for s in (0, 1)]
    before = [m.state_dict()["encoder.0.weight"].clone() for m in models]
    histories = train_stack(models, [train] * 2, test=test, epochs=3, batch_size=16,
                            lr=[1e-3, 1e7], seeds=[0, 1], on_diverge="restore")
    assert [h.config["ensemble_size"] for h in histories] == [2, 2]
    assert [diverged(h) for h in histories] == [False, True]
    assert len(histories[0].test_loss) == 3
    # the diverged member is back at its initial weights; the other one trained
    assert torch.equal(models[1].state_dict()["encoder.0.weight"], before[1])
    assert not torch.equal(models[0].state_dict()["encoder.0.weight"], before[0])
