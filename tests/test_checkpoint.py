import os
import pickle

import pytest
import torch

import aelab


@pytest.mark.parametrize("model", [aelab.Autoencoder(3, 1, 5, 2),
                                   aelab.Autoencoder.from_widths([20, 10], 1, 2),
                                   aelab.LinearAutoencoder(4, 2)])
def test_save_load_round_trip(tmp_path, model):
    path = aelab.save(model, tmp_path / "sub" / "model.pt")
    loaded = aelab.load(path)
    assert type(loaded) is type(model) and loaded.init_args == model.init_args
    x = torch.randn(7, model.input_size)
    assert torch.equal(loaded(x), model(x))
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temporary file left behind


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loading_a_malicious_pickle_never_runs_its_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "aelab-model", "payload": _Payload(marker)}, path)
    with open(tmp_path / "raw.pt", "wb") as f:
        pickle.dump(_Payload(marker), f)
    with pytest.raises(ValueError, match="not a safe aelab model file"):
        aelab.load(path)
    with pytest.raises(ValueError, match="not an aelab model file"):
        aelab.load(tmp_path / "raw.pt")
    assert not marker.exists()


def test_load_refuses_unknown_classes_and_foreign_files(tmp_path):
    torch.save({"format": "aelab-model", "version": 1, "class": "Sequential",
                "init_args": {}, "state_dict": {}}, tmp_path / "a.pt")
    with pytest.raises(ValueError, match="model class 'Sequential'"):
        aelab.load(tmp_path / "a.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="not an aelab model file"):
        aelab.load(tmp_path / "b.pt")
    with pytest.raises(FileNotFoundError):
        aelab.load(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="must be an aelab model"):
        aelab.save(torch.nn.Linear(2, 2), tmp_path / "c.pt")


def _tampered(tmp_path, **changes):
    path = aelab.save(aelab.Autoencoder(3, 1, 5, 2), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)
    return path


def test_load_names_the_file_and_the_mismatch(tmp_path):
    path = _tampered(tmp_path, init_args=dict(input_size=3, bottleneck_size=1, width=5))
    with pytest.raises(ValueError, match=r"model\.pt: its init_args .*'width': 5.* do not fit "
                                         r"Autoencoder: .*unexpected keyword argument 'width'"):
        aelab.load(path)
    path = _tampered(tmp_path, init_args=dict(input_size=3, bottleneck_size=4))
    with pytest.raises(ValueError, match=r"model\.pt: its init_args .* do not fit Autoencoder: "
                                         r"bottleneck_size \(4\) must not exceed"):
        aelab.load(path)
    path = _tampered(tmp_path, init_args=dict(input_size=3, bottleneck_size=1, hidden_size=6,
                                              layers=2))
    with pytest.raises(ValueError, match=r"(?s)model\.pt: its state_dict does not match "
                                         r"Autoencoder\(input_size=3, .*hidden_size=6.*size mismatch"):
        aelab.load(path)
    path = _tampered(tmp_path, state_dict={"encoder.0.weight": torch.zeros(5, 3)})
    with pytest.raises(ValueError, match=r"(?s)model\.pt: its state_dict does not match .*Missing key"):
        aelab.load(path)
    path = _tampered(tmp_path, state_dict=[1, 2])
    with pytest.raises(ValueError, match=r"model\.pt is damaged: .*got dict and list"):
        aelab.load(path)
