"""The zoo's architectures: registry, torchvision equivalence (keys, shapes, outputs), options."""
from __future__ import annotations

import inspect
import json

import pytest
import torch
import torch.nn.functional as F

from edgebase.errors import ConfigError, UnknownNameError
from zoo import aliases, create_model, get_entry, list_models
from zoo.models import ALIASES, SMALL_INPUT, small_input_adaptation

torch.set_num_threads(1)
GOLDEN = "torchvision-golden"
MODELS = list_models()


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_every_family_and_variant():
    expected = {
        "squeezenet1_0", "squeezenet1_1", "squeezenet1_0_bypass",
        "mobilenet_v1_x1_0", "mobilenet_v1_x0_75", "mobilenet_v1_x0_5", "mobilenet_v1_x0_25",
        "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
        "shufflenet_v1_g1", "shufflenet_v1_g2", "shufflenet_v1_g3", "shufflenet_v1_g4",
        "shufflenet_v1_g8", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
        "shufflenet_v2_x2_0",
    }
    assert expected <= set(MODELS)


@pytest.mark.parametrize("alias,target", sorted(ALIASES.items()))
def test_bare_family_names_map_to_documented_defaults(alias, target):
    """timm's convention: the family's trained entry when one ships, else the architecture
    default; the architecture default is what replaced weights (--weights) resolve to."""
    from zoo.registry import architecture_defaults, resolve_entry

    assert architecture_defaults()[alias] == target
    trained = [n for n in list_models(f"{alias}*.cifar10") if get_entry(n).trained]
    meant = aliases()[alias]
    assert get_entry(alias).name == meant
    if trained:
        assert meant in trained and get_entry(alias).trained
    else:
        assert meant == target
    replaced = resolve_entry(alias, weights_given=True)
    assert replaced.entry.name == target and "--weights" in replaced.note


def test_alias_defaults():
    from zoo.registry import architecture_defaults

    arch = {a: get_entry(t) for a, t in architecture_defaults().items()}
    assert arch["shufflenet_v1"].kwargs["groups"] == 3
    assert arch["shufflenet_v1"].kwargs["width"] == 1.0
    assert arch["mobilenet_v1"].kwargs["width_mult"] == 1.0
    assert arch["squeezenet"].name == "squeezenet1_1"
    assert get_entry("shufflenet_v2").name == "shufflenet_v2_x0_5.cifar10"
    assert get_entry("mobilenet_v2").name == "mobilenet_v2"  # a model name, not an alias


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as err:
        get_entry("shufflenet_v3")
    msg = str(err.value)
    assert "shufflenet_v3" in msg and "shufflenet_v2_x1_0" in msg and "squeezenet" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("name", MODELS)
def test_entry_metadata_and_keyword_only_builder(name):
    entry = get_entry(name)
    assert entry.doc and name.startswith(entry.arch)
    assert entry.trained == (entry.weights is not None)
    params = inspect.signature(entry.builder).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    names = {p.name for p in params}
    assert {"num_classes", "dropout", "small_input"} <= names
    if entry.width_kwarg:
        assert entry.width_kwarg in names


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape_at_several_resolutions(name):
    model, entry = create_model(name, num_classes=7, input_size=48)
    with torch.no_grad():
        for size in (48, 64, 97):  # any resolution, odd sizes too
            out = model(torch.randn(2, 3, size, size))
            assert out.shape == (2, 7)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in MODELS if get_entry(n).width_kwarg])
def test_width_override_changes_the_network(name):
    entry = get_entry(name)
    other = 0.5 if entry.kwargs[entry.width_kwarg] != 0.5 else 1.0
    model, e2 = create_model(name, width=other, num_classes=5, input_size=64)
    assert e2.kwargs[entry.width_kwarg] == other
    base, _ = create_model(name, num_classes=5, input_size=64)
    assert _n_params(model) != _n_params(base)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_fixed_width_models_refuse_width():
    with pytest.raises(ConfigError, match="no width option"):
        create_model("squeezenet1_1", width=0.5)


@pytest.mark.parametrize("name,width", [("shufflenet_v2_x1_0", 0.75), ("shufflenet_v1_g3", 0.3)])
def test_unsupported_width_lists_valid_ones(name, width):
    with pytest.raises(ConfigError, match="valid: "):
        create_model(name, width=width)


@pytest.mark.parametrize("name", MODELS)
def test_small_input_keeps_keys_and_fits_32x32(name):
    entry = get_entry(name)
    normal = entry.builder(**{**entry.kwargs, "num_classes": 10})
    small = entry.builder(**{**entry.kwargs, "num_classes": 10, "small_input": True})
    assert [(k, v.shape) for k, v in small.state_dict().items()] == \
        [(k, v.shape) for k, v in normal.state_dict().items()]
    small.load_state_dict(normal.state_dict())
    small.eval()
    with torch.no_grad():
        assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    adaptation = small_input_adaptation(name + ".cifar10")
    assert adaptation in SMALL_INPUT.values() and "stride" in adaptation


def _golden_files(shared_data):
    return sorted((shared_data / GOLDEN).glob("*.pt"))


def test_golden_outputs_match_torchvision(shared_data):
    files = _golden_files(shared_data)
    assert len(files) == 7
    for path in files:
        g = torch.load(path, weights_only=True)
        entry = get_entry(g["arch"])
        model = entry.builder(**{**entry.kwargs, **g["builder_kwargs"]}).eval()
        model.load_state_dict(g["state_dict"], strict=True)
        with torch.no_grad():
            diff = (model(g["input"]) - g["output"]).abs().max().item()
        assert diff <= 1e-5, f"{path.name}: max abs diff {diff}"


def test_state_dict_keys_and_shapes_equal_torchvision(shared_data):
    ref = json.loads((shared_data / GOLDEN / "torchvision-state-dict-keys.json").read_text())
    assert ref["num_classes"] == 1000 and len(ref["models"]) == 9
    for name, info in ref["models"].items():
        model = get_entry(name).build()
        ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
        assert ours == info["state_dict"], name
        assert _n_params(model) == info["num_params"], name


def test_bypass_variant_shares_squeezenet1_0_keys_but_computes_differently():
    plain = get_entry("squeezenet1_0").build()
    bypass = get_entry("squeezenet1_0_bypass").build()
    bypass.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert not torch.allclose(plain(x), bypass(x))
    assert sum(getattr(m, "bypass", False) for m in bypass.modules()) == 4


def test_mobilenet_v1_tf_padding_is_tf_same_padding():
    from zoo.models.mobilenet_v1 import mobilenet_v1

    torch.manual_seed(0)
    pt = mobilenet_v1(num_classes=10, width_mult=0.25).eval()
    tf = mobilenet_v1(num_classes=10, width_mult=0.25, tf_padding=True).eval()
    assert list(pt.state_dict()) == list(tf.state_dict())
    tf.load_state_dict(pt.state_dict())
    x = torch.randn(1, 3, 224, 224)
    conv = tf.features[0][0]
    # stride 2 on an even size: TF pads one row/column, bottom/right only
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, None, 2)
    assert torch.equal(conv(x), ref)
    assert not torch.allclose(pt.features[0][0](x), ref)
    # stride 1: symmetric, identical to PyTorch padding
    y = torch.randn(1, 8, 20, 20)
    assert torch.allclose(tf.features[1][0](y), pt.features[1][0](y))
    assert tf.features[0][1].eps == 1e-3 and pt.features[0][1].eps == 1e-5
    with torch.no_grad():
        assert tf(torch.randn(1, 3, 193, 193)).shape == (1, 10)  # any resolution, odd too


def test_shufflenet_v1_groups_and_scales_build():
    from zoo.models.shufflenet_v1 import GROUPS, SCALES, shufflenet_v1

    # every group count and every scale at least once, extremes combined
    combos = list(zip(GROUPS, SCALES)) + [(8, 0.25), (1, 2.0)]
    assert {g for g, _ in combos} == set(GROUPS) and {s for _, s in combos} == set(SCALES)
    for g, s in combos:
        model = shufflenet_v1(groups=g, width=s, num_classes=3).eval()
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups > 1:
                assert m.groups == g
        with torch.no_grad():
            assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
