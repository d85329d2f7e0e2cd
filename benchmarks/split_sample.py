"""Split the ImageNet sample in two halves that never meet: one to fine-tune on, one to
evaluate on (Deep Compression runs of ImageNet nets; no ImageNet training images are here).

The 1000 photos' names are sorted; the even-numbered ones go to ``imagenet-sample-tune500.zip``
(used unlabelled, for distillation from the dense parent), the odd-numbered ones to
``imagenet-sample-held500.zip`` (evaluation only). Each zip keeps the sample's layout: one
folder of ``<wnid>_<name>.JPEG`` files, named after the zip. The sample holds one photo per
class, so the halves share no class (distillation uses no labels).

    .venv/bin/python benchmarks/split_sample.py OUT_DIR [--sample SAMPLE_ZIP]
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HALVES = ("imagenet-sample-tune500", "imagenet-sample-held500")  # even, odd


def split(sample: Path, out_dir: Path) -> list[Path]:
    from edgebase.files import atomic_path

    with zipfile.ZipFile(sample) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith((".jpeg", ".jpg")))
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for parity, half in enumerate(HALVES):
            target = out_dir / f"{half}.zip"
            with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w") as dst:
                for name in names[parity::2]:
                    dst.writestr(f"{half}/{Path(name).name}", z.read(name))
            written.append(target)
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--sample", type=Path, default=REPO / "../shared/data/imagenet-sample-1k.zip")
    args = p.parse_args()
    for path in split(args.sample, args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
