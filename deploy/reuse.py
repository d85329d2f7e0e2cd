"""The one reuse rule of the commands that keep a build folder (``deploy release``,
``deploy benchmark``): a finished file is taken as it is when the export stage would write it
again -- the same parent, the same export settings, the same toolchain -- it passed
validation and its bytes still match its manifest. Anything else is rebuilt. Target options
are compared less those at their default (a manifest may spell ``opset: 18`` out or not).

Not reused: random-init parents (another draw is another parent, and their weights have no
hash to compare) and int8 files (their calibration is not compared).
"""
from __future__ import annotations

import json

from deploy.overwrite import parent_identity
from edgebase.errors import DeployError
from edgebase.manifest import Artifact, files_match, read_manifest


def find_reusable(source, config) -> Artifact | None:
    """The Artifact of the file ``export(source, config)`` would write, if it can stay."""
    from deploy.placement import file_stem
    from deploy.toolchain import versions

    target = config.target_entry
    if config.precision == "int8" or not source.weights.get("sha256"):
        return None
    path = config.output_dir / target.file_name(file_stem(source), config.precision)
    try:
        art = read_manifest(path)
    except DeployError:
        return None
    if art is None or not art.passed or art.format != target.name:
        return None
    have = parent_identity(art.model, art.precision, art.preprocess, art.labels)
    step = art.passes[0] if len(art.passes) == 1 else {}
    same = (have == source.identity(config.precision)
            and _same(art.model.get("kwargs"), dict(source.entry.kwargs))
            and step.get("name") == "export" and step.get("batch") == config.batch
            and target.given_options(step.get("options") or {}) == dict(config.options)
            and art.toolchain == versions(target.tools))
    return art if same and files_match(art, path) else None


def _same(a, b) -> bool:
    """Equal as the manifest stores them (JSON: tuples become lists)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
