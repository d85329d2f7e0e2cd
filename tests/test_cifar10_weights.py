"""The shipped *.cifar10 weights: files match their records, load, and (slow) score what they claim."""
from __future__ import annotations

import pytest
import torch

from zoo import get_entry, list_models
from zoo.cifar10 import VARIANTS, trained_records
from zoo.weights import PACKAGED_DIR

torch.set_num_threads(1)
RECORDS = trained_records()
TRAINED = sorted(RECORDS)


def test_every_variant_is_registered_with_its_adaptation():
    assert set(VARIANTS) == set(list_models("*.cifar10"))
    for name in VARIANTS:
        entry = get_entry(name)
        assert entry.num_classes == 10 and entry.input_size == 32 and entry.labels == "cifar10"
        assert entry.kwargs["small_input"] is True and "stride" in entry.adaptation
        assert entry.trained == (name in RECORDS)


def test_records_name_only_shipped_variants():
    assert set(RECORDS) <= set(VARIANTS)
    shipped = {p.name for p in PACKAGED_DIR.glob("*.cifar10.pt")}
    assert shipped == {RECORDS[n]["weights_file"] for n in RECORDS}


@pytest.mark.parametrize("name", TRAINED)
def test_shipped_weights_load_and_carry_their_recipe(name):
    entry = get_entry(name)
    w = entry.weights
    assert w.dataset == "cifar10" and 80.0 <= w.top1 <= 100.0
    for key in ("epochs", "seed", "lr", "batch_size", "wall_time_s", "command"):
        assert key in w.recipe, key
    assert w.recipe["command"].startswith(f"deploy train {name} ")
    assert w.recipe["test_images"] == 10000 and w.recipe["train_images"] == 50000
    model = entry.build()  # verifies the sha256, then loads strictly
    state = torch.load(PACKAGED_DIR / w.file, weights_only=True)
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED)
def test_shipped_top1_is_reproduced_on_the_full_test_set(name, shared_data):
    """Through the runner's image pipeline (ImageSet + Preprocess), not the training cache."""
    from edgebase.images import ImageSet, batches

    entry = get_entry(name)
    model = entry.build()
    images = ImageSet(shared_data / "cifar10.zip", split="test")
    assert len(images) == 10000
    correct = 0
    with torch.inference_mode():
        for x, y in batches(images, list(range(len(images))), entry.preprocess, 500):
            correct += int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
    top1 = 100.0 * correct / len(images)
    assert top1 == pytest.approx(entry.weights.top1, abs=0.05)
    assert top1 >= 80.0
