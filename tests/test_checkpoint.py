import os
import pickle

import pytest
import torch

import aelab


@pytest.mark.parametrize(
    "model",
    [
        aelab.Autoencoder(3, 1, 5, 2),
        aelab.Autoencoder.from_widths([20, 10], 1, 2),
        aelab.LinearAutoencoder(4, 2),
    ],
)
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
    torch.save(
        {
            "format": "aelab-model",
            "version": 1,
            "class": "Sequential",
            "init_args": {},
            "state_dict": {},
        },
        tmp_path / "a.pt",
    )
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
    with pytest.raises(
        ValueError,
        match=r"model\.pt: its init_args .*'width': 5.* do not fit "
        r"Autoencoder: .*unexpected keyword argument 'width'",
    ):
        aelab.load(path)
    path = _tampered(tmp_path, init_args=dict(input_size=3, bottleneck_size=4))
    with pytest.raises(
        ValueError,
        match=r"model\.pt: its init_args .* do not fit Autoencoder: "
        r"bottleneck_size \(4\) must not exceed",
    ):
        aelab.load(path)
    path = _tampered(
        tmp_path, init_args=dict(input_size=3, bottleneck_size=1, hidden_size=6, layers=2)
    )
    with pytest.raises(
        ValueError,
        match=r"(?s)model\.pt: its state_dict does not match "
        r"Autoencoder\(input_size=3, .*hidden_size=6.*size mismatch",
    ):
        aelab.load(path)
    state = aelab.Autoencoder(3, 1, 5, 2).state_dict()
    del state["decoder.2.bias"]
    path = _tampered(tmp_path, state_dict=state)
    with pytest.raises(
        ValueError,
        match=r"(?s)model\.pt: its state_dict does not match .*Missing "
        r"key\(s\): decoder.2.bias",
    ):
        aelab.load(path)
    path = _tampered(tmp_path, state_dict=[1, 2])
    with pytest.raises(ValueError, match=r"model\.pt is damaged: .*got dict and list"):
        aelab.load(path)


# --- issue 14, item 7: a small file never costs large memory or time --------------------------------


def test_a_small_file_declaring_a_huge_model_is_refused_before_building_it(tmp_path):
    import time

    path = _tampered(
        tmp_path, init_args=dict(input_size=3, bottleneck_size=1, hidden_size=20000, layers=2)
    )
    assert path.stat().st_size < 8000
    start = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"(?s)model\.pt: its state_dict does not match .*size "
        r"mismatch for encoder.0.weight: the file stores \(5, 3\), "
        r"the model needs \(20000, 3\)",
    ):
        aelab.load(path)
    assert time.perf_counter() - start < 1.0


def test_a_long_widths_list_is_refused_before_building_its_layers(tmp_path):
    import time

    path = _tampered(tmp_path, init_args=dict(input_size=3, bottleneck_size=1, widths=[1] * 200000))
    start = time.perf_counter()
    with pytest.raises(
        ValueError,
        match=r"init_args declare 200000 widths, but the file stores "
        r"only 12 tensors",
    ):
        aelab.load(path)
    path = _tampered(
        tmp_path, init_args=dict(input_size=3, bottleneck_size=1, hidden_size=5, layers=10**9)
    )
    with pytest.raises(ValueError, match=r"init_args declare layers=1000000000"):
        aelab.load(path)
    assert time.perf_counter() - start < 1.0


def test_max_parameters_caps_what_is_loaded_and_can_be_raised(tmp_path):
    model = aelab.Autoencoder(3, 1, 5, 2)  # 3-5-5-1-5-5-3: 20 + 30 + 6 + 10 + 30 + 18 = 114
    n_params = sum(p.numel() for p in model.parameters())
    path = aelab.save(model, tmp_path / "model.pt")
    with pytest.raises(
        ValueError,
        match=rf"model\.pt holds {n_params} parameters, more than "
        r"max_parameters=100; pass max_parameters=",
    ):
        aelab.load(path, max_parameters=100)
    assert aelab.load(path, max_parameters=n_params).init_args == model.init_args
    with pytest.raises(ValueError, match="max_parameters must be an int >= 1, got 0"):
        aelab.load(path, max_parameters=0)


def test_the_cap_is_checked_from_the_zip_directory_before_unpickling(tmp_path, monkeypatch):
    path = aelab.save(aelab.Autoencoder(3, 1, 600, 2), tmp_path / "model.pt")  # 1.5 MB of weights

    def must_not_run(*args, **kwargs):
        raise AssertionError("torch.load ran before the size check")

    monkeypatch.setattr(torch, "load", must_not_run)
    with pytest.raises(
        ValueError,
        match=r"model\.pt stores .* bytes, more than max_parameters=100 "
        r"allows",
    ):
        aelab.load(path, max_parameters=100)


def test_broadcast_views_and_non_tensors_in_the_state_dict_are_refused(tmp_path):
    state = aelab.Autoencoder(3, 1, 5, 2).state_dict()
    state["encoder.0.weight"] = torch.zeros(1).expand(5, 3)
    path = _tampered(tmp_path, state_dict=state)
    with pytest.raises(ValueError, match=r"encoder.0.weight .* 15 values but only 1 stored"):
        aelab.load(path)
    state["encoder.0.weight"] = [[0.0] * 3] * 5
    path = _tampered(tmp_path, state_dict=state)
    with pytest.raises(
        ValueError, match=r"state_dict\['encoder.0.weight'\] is a list, not a tensor"
    ):
        aelab.load(path)
    state["encoder.0.weight"] = torch.zeros(5, 3, dtype=torch.complex64)
    path = _tampered(tmp_path, state_dict=state)
    with pytest.raises(ValueError, match=r"encoder.0.weight has dtype torch.complex64"):
        aelab.load(path)


def test_a_damaged_pickle_inside_the_zip_is_a_clear_error(tmp_path):
    # single bytes changed inside data.pkl make torch's reader fail with IndexError,
    # AttributeError, ...: every one of them is reported as a damaged file
    good = aelab.save(aelab.Autoencoder(3, 1, 4, 1), tmp_path / "good.pt").read_bytes()
    start = good.index(b"data.pkl") + len(b"data.pkl")
    failures = 0
    for offset in range(start, start + 400, 7):
        raw = bytearray(good)
        raw[offset] ^= 0xFF
        path = tmp_path / "m.pt"
        path.write_bytes(bytes(raw))
        try:
            aelab.load(path)
        except ValueError as err:
            assert "m.pt" in str(err)
            failures += 1
    assert failures > 10
