"""Build ``zoo/calib/cifar10-train-300.zip`` and its record from the CIFAR-10 zip.

    python -m zoo.calib.build_cifar10 ../shared/data/cifar10.zip

Takes a class-balanced, seeded subset of the *train* split (``ImageSet.subset``, the same
selection ``--calib`` makes) and copies the JPEG bytes unchanged into a stored (uncompressed:
JPEGs do not shrink) zip with fixed timestamps, so the output is byte-identical on every run.
"""
from __future__ import annotations

import json
import sys
import zipfile
from collections import Counter
from pathlib import Path

from zoo.calib import HERE, SETS

IMAGES = 300
SEED = 0
SPLIT = "train"  # never "test": int8 accuracy is measured on the test split


def build(source: Path, out_dir: Path = HERE) -> dict:
    from edgebase.files import atomic_path, sha256_file, write_text_atomic
    from edgebase.images import ImageSet

    images = ImageSet(source, split=SPLIT)
    keys = [images.samples[i].key for i in images.subset(IMAGES, seed=SEED, balanced=True)]
    if any(f"/{SPLIT}/" not in f"/{k}" for k in keys):
        raise SystemExit(f"refusing: a chosen image is not from the {SPLIT} split")
    name = SETS["cifar10"]
    zip_path = out_dir / f"{name}.zip"
    with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for key in keys:
            info = zipfile.ZipInfo(key, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, images.read_bytes(key))
    per_class = Counter(k.split("/")[-2] for k in keys)
    record = {
        "dataset": "cifar10", "split": SPLIT, "images": len(keys), "seed": SEED,
        "selection": "edgebase.images.ImageSet.subset(balanced=True): round-robin over "
                     "classes, each shuffled with random.Random(seed)",
        "per_class": dict(sorted(per_class.items())),
        "source": {"file": source.name, "sha256": sha256_file(source)},
        "file": zip_path.name, "sha256": sha256_file(zip_path),
        "size_bytes": zip_path.stat().st_size,
        "command": f"python -m zoo.calib.build_cifar10 {source.name}",
        "keys": keys,
    }
    write_text_atomic(out_dir / f"{name}.json", json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m zoo.calib.build_cifar10 PATH/cifar10.zip")
    r = build(Path(sys.argv[1]))
    print(f"{r['file']}: {r['images']} {r['split']} images, {r['size_bytes'] / 1e3:.0f} kB, "
          f"sha256 {r['sha256'][:16]}... from {r['source']['file']} {r['source']['sha256'][:16]}...")
