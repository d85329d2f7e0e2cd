"""runner eval MODEL --data PATH: top-1 / top-5 over a labelled image set."""
from __future__ import annotations

HELP = "top-1/top-5 accuracy of a classifier file over an image folder, zip or ImageNet sample"


def add_arguments(p) -> None:
    from edgebase.cli_flags import COUNT, POSITIVE, above, add_json, at_least
    from device_runners.commands.bench import add_precision_hint, runtime_help

    p.add_argument("model", help="model file (.tflite, .onnx, .xml)")
    p.add_argument("--data", required=True, help="ImageFolder dir or zip, or ImageNet files "
                   "named <wnid>_*.JPEG")
    p.add_argument("--split", default="test", help="split folder inside the data (default test)")
    p.add_argument("--limit", type=POSITIVE, help="evaluate N images (class-balanced, seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed for --limit's choice")
    p.add_argument("--runtime", help=runtime_help())
    p.add_argument("--threads", type=POSITIVE, help="inference threads (default: the runtime's)")
    add_precision_hint(p)
    p.add_argument("--batch", type=POSITIVE, default=1, help="images per inference (default 1)")
    g = p.add_argument_group("preprocessing (files without a manifest)")
    g.add_argument("--size", type=POSITIVE, help="centre-crop size (default: the input's)")
    g.add_argument("--resize", type=POSITIVE, help="short side before cropping")
    g.add_argument("--mean", type=at_least(0, float), nargs="+", help="per-channel mean, 0..1 units")
    g.add_argument("--std", type=above(0), nargs="+", help="per-channel std, 0..1 units")
    g.add_argument("--scale", type=above(0), help="instead of mean/std: x*scale (1/127.5 means "
                   "x/127.5-1, 1/255 means x/255)")
    g.add_argument("--layout", choices=("NCHW", "NHWC"), help="default: from the input shape")
    g.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"))
    g.add_argument("--crop-offset", choices=("round", "floor"), help="crop placement for odd "
                   "margins: round (torchvision, default) or floor (TensorFlow's central crop)")
    g.add_argument("--label-offset", type=COUNT, help="add to each label (1 for 1001-class "
                   "models with background at 0)")
    add_json(p, "the result")
    p.add_argument("--outputs", metavar="FILE.npz",
                   help="also write every image's scores (and labels, names) to FILE.npz, "
                        "to compare two machines or runtimes image by image")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="skip the load-and-run check in a child process")


def run(args) -> int:
    from device_runners.commands.bench import print_result
    from device_runners.evaluate import evaluate, format_table

    result = evaluate(args.model, args.data, limit=args.limit, split=args.split,
                      runtime=args.runtime, threads=args.threads, batch=args.batch,
                      size=args.size, resize=args.resize, mean=args.mean, std=args.std,
                      scale=args.scale, layout=args.layout, label_offset=args.label_offset,
                      interpolation=args.interpolation, crop_offset=args.crop_offset,
                      seed=args.seed,
                      progress=args.progress, isolate=args.isolate,
                      precision_hint=args.precision_hint, outputs=args.outputs)
    return print_result(result, format_table(result), args.json)
