"""`deploy export MODEL --target T`: convert a zoo model (or a checkpoint of one), validate it
against PyTorch on real images, write the model file(s) and the manifest."""
from __future__ import annotations

import sys

HELP = ("export a zoo model or checkpoint to one target format (see --target), validated on "
        "real images")


def add_arguments(p) -> None:
    from deploy import preprocess_flags, target_flags
    from edgebase.cli_flags import POSITIVE, add_json, add_model_build, at_least, old_name, output_dir
    from edgebase.capabilities import TARGETS, all_int8_io, target_names

    p.add_argument("model", metavar="MODEL", help="zoo name or alias (see `deploy models`)")
    p.add_argument("--target", required=True, choices=target_names(),
                   help="output format")
    fp16 = ", ".join(n for n, t in TARGETS.items() if "fp16" in t.precisions)
    p.add_argument("--fp16", action="store_true",
                   help=f"float16 weights ({fp16}); validated at >= 99%% top-1 agreement")
    p.add_argument("--weights", metavar="PATH",
                   help="checkpoint of the model's architecture (state dict or checkpoint dict)")
    add_model_build(p)
    p.add_argument("--batch", type=POSITIVE, default=1, help="batch size baked into the file (default 1)")
    p.add_argument("--output", metavar="DIR", type=output_dir, help="output folder (default: out/<file's "
                   "model name>, e.g. out/shufflenet_v2_x0_5.cifar10)")
    p.add_argument("--force", action="store_true", help="replace an existing file of the same "
                   "name that was made from a different parent (classes, weights, input size, "
                   "preprocessing); without it the export refuses")
    p.add_argument("--data", metavar="PATH",
                   help="labelled images, folder or zip: validation against PyTorch and, with "
                        "--int8, fp32 vs int8 accuracy (default for validation: CIFAR-10 test "
                        "split for 32x32 nets, the ImageNet sample otherwise, from "
                        "$EDGEDEPLOY_DATA or ../shared/data)")
    old_name(p, "--validate-data", "--data", dest="validate_data", metavar="PATH")
    p.add_argument("--threads", type=POSITIVE, help="runtime threads during validation")
    target_flags.add_arguments(p)
    add_json(p, "the manifest")
    preprocess_flags.add_arguments(p)
    q = p.add_argument_group("int8 post-training quantization (quant/)")
    q.add_argument("--int8", action="store_true",
                   help="int8 with the target's own quantizer (also writes the fp32 parent)")
    q.add_argument("--calib", metavar="PATH|zeroq|synthetic",
                   help="calibration images (folder, zip or .npz), or zeroq (inputs distilled "
                   "from BatchNorm statistics), or synthetic (noise: the file is marked latency "
                   "only). Default: the training images that ship with a packaged model; ZeroQ "
                   "for a trained --weights checkpoint; random-init weights must choose")
    q.add_argument("--calib-size", type=POSITIVE, metavar="N",
                   help="calibration images (default 300, all the packaged ones; 32 with zeroq, "
                   "64 synthetic)")
    methods = ", ".join(f"{n} {'|'.join(t.calib_methods)}" for n, t in TARGETS.items()
                        if t.calib_methods)
    q.add_argument("--calib-method", metavar="M", help=f"activation range estimation: "
                   f"{methods} (first: default)")
    io = all_int8_io()
    integer_io = ", ".join(n for n, t in TARGETS.items() if t.ptq and len(t.int8_io) > 1)
    q.add_argument("--int8-io", choices=io, default=io[0],
                   help=f"input/output type of the int8 file (other than {io[0]}: "
                        f"{integer_io})")
    old_name(q, "--io", "--int8-io", dest="int8_io", choices=io)
    # the old --eval set the accuracy images only (validation kept its default images)
    old_name(q, "--eval", "--data", dest="eval", metavar="PATH")
    q.add_argument("--limit", type=POSITIVE, metavar="N", help="measure accuracy on N images of "
                   "--data, class-balanced, calibration images left out (default all)")
    old_name(q, "--eval-limit", "--limit", dest="limit", type=POSITIVE, metavar="N")
    q.add_argument("--max-drop", type=at_least(0, float), metavar="D", help="largest top-1 drop (points) "
                   "allowed; worse layers fall back to float until it holds (needs --data)")


def run(args) -> int:
    import dataclasses
    from pathlib import Path

    import torch

    from deploy import preprocess_flags, target_flags
    from edgebase.cli_flags import write_json
    from deploy.export import ExportConfig, export, file_stem, load_source

    torch.set_num_threads(args.threads or torch.get_num_threads())
    options = target_flags.given(args)
    from deploy.int8_stage import Int8Config
    from quant.cli import int8_config

    validate = getattr(args, "validate_data", None) or args.data
    int8 = Int8Config(**int8_config(args)) if precision(args) == "int8" else None
    config = ExportConfig(
        target=args.target, precision=precision(args), batch=args.batch,
        output_dir=Path(args.output) if args.output else Path("out"),
        validate_data=Path(validate) if validate else None,
        threads=args.threads, options=options, force=args.force,
    )  # checks target, precision and options (and the int8 flags) before anything slow
    # cheap flag checks before the model is built
    preprocess_flags.normalization(args.preset, args.mean, args.std)
    if args.resize is not None and args.resize < 1:
        from edgebase.errors import ConfigError
        raise ConfigError(f"--resize must be a positive number of pixels, got {args.resize}")
    source = load_source(args.model, weights=args.weights, num_classes=args.num_classes,
                         width=args.width, input_size=args.input_size)
    if source.alias_note:  # first line: which model a bare family name meant
        print(source.alias_note, file=sys.stderr)
    source = preprocess_flags.apply(source, args)
    if not args.output:  # the folder is named as the file: by the model it holds
        config = dataclasses.replace(config, output_dir=Path("out") / file_stem(source))
    if not source.weights["trained"]:
        print(f"note: {source.name} has random-init weights: latency work only, no accuracy "
              f"claims (recorded in the manifest)", file=sys.stderr)
    elif args.weights and not preprocess_flags.given(args):
        from zoo.weights import entry_overrides_for

        pre = source.entry.preprocess
        whose = (f"that of {Path(args.weights).suffix} weights"
                 if "preprocess" in entry_overrides_for(source.entry.arch, args.weights)
                 else f"{source.entry.arch}'s own")
        print(f"note: preprocessing is {whose} (resize {pre.resize}, crop "
              f"{pre.crop}, mean {pre.mean}, std {pre.std}); pass --preset or --mean/--std/"
              f"--resize if the checkpoint was trained otherwise", file=sys.stderr)
    artifact = export(source, config, int8)
    if args.json == "-":
        write_json(artifact.to_dict(), "-")
        return 0
    print(report(artifact, config.output_dir))
    if artifact.precision == "int8":
        from quant.cli import report_lines
        print("\n".join(report_lines(artifact)))
    if args.json:
        write_json(artifact.to_dict(), args.json)
    return 0


def precision(args) -> str:
    from quant.cli import int8_precision

    return int8_precision(args) or ("fp16" if args.fp16 else "fp32")


def report(a, out_dir) -> str:
    from deploy.validate import runtime_default_line, summary_line

    path = out_dir / a.file
    lines = [f"exported {a.model['name']} -> {a.format} {a.precision}",
             f"  file:        {path}  ({_size(a.size_bytes)}, sha256 {a.sha256[:16]}...)"]
    for comp in a.companions:
        lines.append(f"               {out_dir / comp['file']}  ({_size(comp['size_bytes'])})")
    lines.append(f"  manifest:    {path}.json")
    for t in a.inputs:
        lines.append(f"  input:       {t.name} {t.dtype}[{','.join(map(str, t.shape))}] {t.layout}")
    lines.append(f"  validation:  {summary_line(a.validation)}")
    default_mode = runtime_default_line(a.validation)
    if default_mode:
        lines.append(f"               {default_mode}")
    x = a.extra
    top = ", ".join(f"{k} {v}" for k, v in list(x["op_histogram"].items())[:6])
    lines.append(f"  graph:       {x['op_count']} ops, {x['transpose_count']} transposes ({top}, ...)")
    lines.append(f"  time:        {timings(x)}")
    return "\n".join(lines)


def timings(extra) -> str:
    """Each step on its own: conversion is the converter alone, never quantization."""
    steps = extra.get("seconds") or {"conversion": extra["conversion_seconds"]}
    return ", ".join(f"{k} {v:.1f} s" for k, v in steps.items())


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
