"""`deploy train`: train a zoo model's 32x32 variant on CIFAR-10 with the documented recipe."""
from __future__ import annotations

import shlex

HELP = ("train a *.cifar10 zoo model from scratch or from earlier weights (seeded, resumable) "
        "and report test top-1")

DEFAULT_OUTPUT = "runs/train"


def add_arguments(p) -> None:
    from edgebase.cli_flags import POSITIVE, above, output_dir
    from zoo.train import Recipe

    d = Recipe()
    p.add_argument("model", metavar="MODEL",
                   help="a *.cifar10 zoo name, or its base name (shufflenet_v2_x0_5)")
    p.add_argument("--data", required=True, metavar="ZIP_OR_DIR",
                   help="ImageFolder zip/folder with train/ and test/ (../shared/data/cifar10.zip)")
    p.add_argument("--epochs", type=POSITIVE, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR", type=output_dir,
                   help=f"where <model>.ckpt/.pt/.json go (default {DEFAULT_OUTPUT})")
    p.add_argument("--resume", action="store_true",
                   help="continue from <output>/<model>.ckpt (written after every epoch)")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start from these weights (a .pt state_dict, e.g. a finished run's) and "
                        "run a new full schedule: a warm restart")
    p.add_argument("--limit", type=POSITIVE, default=None, metavar="N",
                   help="train on a class-balanced subset of N images (tests, timing)")
    p.add_argument("--batch-size", type=POSITIVE, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=above(0), default=d.lr, help=f"peak learning rate (default {d.lr})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    p.add_argument("--threads", type=POSITIVE, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def resolve(name: str):
    """A *.cifar10 entry for ``name`` (``x`` means ``x.cifar10``); others are refused by name."""
    from edgebase.errors import UnknownNameError
    from zoo import aliases, get_entry, list_models

    trainable = list_models("*.cifar10") + sorted(a for a in aliases() if a.endswith(".cifar10"))
    candidates = [name] if name.endswith(".cifar10") else [f"{name}.cifar10", name]
    for cand in candidates:
        if cand in trainable:
            return get_entry(cand)
    raise UnknownNameError("trainable model", name, trainable)


def run(args) -> int:
    import torch

    from edgebase.errors import ConfigError
    from zoo.train import Recipe, train
    from zoo.traindata import load_dataset

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    entry = resolve(args.model)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    limit=args.limit)
    torch.set_num_threads(args.threads)
    if args.init:  # an unreadable or unfitting --init fails before the data is decoded
        from zoo.weights import load_weights

        load_weights(entry.builder(**entry.kwargs), args.init, entry.arch)
    data = load_dataset(args.data, size=entry.input_size, progress=not args.no_progress)
    command = " ".join(shlex.quote(str(a)) for a in [
        "deploy", "train", entry.name, "--data", args.data, "--epochs", recipe.epochs,
        "--batch-size", recipe.batch_size, "--lr", recipe.lr, "--seed", recipe.seed,
        *(["--limit", recipe.limit] if recipe.limit else []),
        *(["--init", args.init] if args.init else [])])
    from edgebase.files import folder_lock

    with folder_lock(args.output, "training run"):  # two runs would share one checkpoint
        train(entry, data, recipe, args.output, resume=args.resume, init=args.init,
              progress=not args.no_progress, command=command)
    return 0
