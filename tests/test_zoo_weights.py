"""Loading weights: state dicts, checkpoint dicts, prefixes, errors, importers, packaged files."""
from __future__ import annotations

import pytest
import torch

from edgebase.errors import WeightsError
from edgebase.files import sha256_file
from zoo import Weights, get_entry
from zoo import weights as zw
from zoo.weights import load_packaged_weights, load_weights, register_importer

torch.set_num_threads(1)
ARCH = "shufflenet_v2_x0_5"


def _model(num_classes=10):
    entry = get_entry(ARCH)
    return entry.builder(**{**entry.kwargs, "num_classes": num_classes}).eval()


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():  # distinct values so a successful load is visible
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_raw_state_dict_loads_and_reports_sha256(tmp_path, source):
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    target = _model()
    assert not _same(source, target)
    info = load_weights(target, path, ARCH)
    assert _same(source, target)
    assert info.sha256 == sha256_file(path) and info.format == "torch"
    assert info.source_key is None and info.stripped_prefix is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict", "model", "ema"])
def test_checkpoint_dict_holding_a_state_dict(tmp_path, source, key):
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}, key: source.state_dict()}, path)
    target = _model()
    info = load_weights(target, path, ARCH)
    assert info.source_key == key and _same(source, target)


def test_module_prefix_is_stripped_and_bn_counters_may_be_missing(tmp_path, source):
    state = {f"module.{k}": v for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path / "ddp.pth"
    torch.save({"state_dict": state}, path)
    target = _model()
    info = load_weights(target, path, ARCH)
    assert info.stripped_prefix == "module."
    sd, src = target.state_dict(), source.state_dict()
    assert all(torch.equal(sd[k], src[k]) for k in src if not k.endswith("num_batches_tracked"))


def test_mismatched_keys_listed_in_one_line(tmp_path, source):
    state = dict(source.state_dict())
    for k in [k for k in state if not k.endswith("num_batches_tracked")][:7]:
        del state[k]  # 7 missing: the listing shows 5 plus a count
    state["extra.weight"] = torch.zeros(3)
    state["fc.weight"] = torch.zeros(10, 99)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    target = _model()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_weights(target, path, ARCH)
    msg = str(err.value)
    assert "\n" not in msg and ARCH in msg and "bad.pth" in msg
    assert "7 missing (conv1.0.weight" in msg and "+2 more" in msg
    assert "1 unexpected (extra.weight)" in msg
    assert "1 mis-shaped (fc.weight [10, 99] vs [10, 1024])" in msg
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # untouched


def test_wrong_num_classes_suggests_the_option(tmp_path, source):
    path = tmp_path / "ten.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(WeightsError, match=r"2 mis-shaped .*has 10 classes: pass --num-classes"):
        load_weights(_model(num_classes=1000), path, ARCH)


def test_other_architecture_is_refused(tmp_path):
    entry = get_entry("mobilenet_v3_small")
    path = tmp_path / "mnv3.pth"
    torch.save(entry.builder(**entry.kwargs).state_dict(), path)
    with pytest.raises(WeightsError, match=r"missing .*unexpected"):
        load_weights(_model(), path, ARCH)


@pytest.mark.parametrize("content,match", [
    (b"", r"is empty \(0 bytes\)"),
    (b"not a checkpoint at all", "cannot read .*: not a pickle of tensors"),
])
def test_unreadable_files(tmp_path, content, match):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=match):
        load_weights(_model(), path, ARCH)


def test_pickled_code_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _model().state_dict(), "cfg": Weights("a", "b", "c", 1.0)}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        load_weights(_model(), path, ARCH)


@pytest.mark.parametrize("obj,match", [
    (torch.zeros(3), "holds a Tensor, not a state dict"),
    ([1, 2], "holds a list"),
    ({"epoch": 1, "lr": 0.1}, "holds no state dict .*keys: epoch, lr"),
])
def test_not_a_checkpoint(tmp_path, obj, match):
    path = tmp_path / "x.pt"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match=match):
        load_weights(_model(), path, ARCH)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights(_model(), tmp_path / "nope.pth", ARCH)
    with pytest.raises(WeightsError, match="is not a file"):
        load_weights(_model(), tmp_path, ARCH)


def test_unsupported_suffix_lists_valid_ones(tmp_path):
    path = tmp_path / "w.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(WeightsError, match=r"no importer for '\.onnx'; valid suffixes: .*\.pth"):
        load_weights(_model(), path, ARCH)


@pytest.fixture
def fill_importer():
    """A real importer for a made-up '.fill' format: one float, copied into every tensor."""
    def importer(model, path):
        value = float(path.read_text())
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
        return {"value": value}

    register_importer("shufflenet_v2_*", ".fill", importer, build_kwargs={"dropout": 0.1})
    yield
    del zw._IMPORTERS[("shufflenet_v2_*", ".fill")]


def test_importer_registry(tmp_path, fill_importer):
    path = tmp_path / "w.fill"
    path.write_text("0.25")
    model = _model()
    info = load_weights(model, path, ARCH)
    assert info.format == ".fill" and info.info == {"value": 0.25}
    assert info.sha256 == sha256_file(path)
    assert all(bool((p == 0.25).all()) for p in model.parameters())
    assert zw.build_kwargs_for(ARCH, path) == {"dropout": 0.1}
    assert zw.build_kwargs_for(ARCH, tmp_path / "w.pth") == {}
    assert ".fill" in zw.supported_suffixes(ARCH)
    with pytest.raises(WeightsError, match="no importer for '.fill'"):  # pattern does not match
        load_weights(get_entry("squeezenet1_1").build(), path, "squeezenet1_1")
    with pytest.raises(ValueError, match="twice"):
        register_importer("shufflenet_v2_*", ".fill", lambda m, p: None)


@pytest.fixture
def packaged(tmp_path, monkeypatch, source):
    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save(source.state_dict(), folder / "sv2.pt")
    monkeypatch.setattr(zw, "PACKAGED_DIR", folder)
    return folder


def test_packaged_weights_verify_sha256(packaged, source):
    digest = sha256_file(packaged / "sv2.pt")
    model = _model()
    info = load_packaged_weights(model, Weights("sv2.pt", digest, "cifar10", 90.0))
    assert info.sha256 == digest and _same(model, source)
    with pytest.raises(WeightsError, match="corrupt or was replaced"):
        load_packaged_weights(_model(), Weights("sv2.pt", "0" * 64, "cifar10", 90.0))
    with pytest.raises(WeightsError, match="missing"):
        load_packaged_weights(_model(), Weights("gone.pt", digest, "cifar10", 90.0))
    with pytest.raises(WeightsError, match="leaves"):
        load_packaged_weights(_model(), Weights("../sv2.pt", digest, "cifar10", 90.0))
