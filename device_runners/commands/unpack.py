"""runner unpack FILE -o DIR: the model file(s) inside a Deep Compression container."""
from __future__ import annotations

HELP = "decode a Deep Compression container (.edc) into the model file(s) it carries, each " \
       "checked against its sha256"


def add_arguments(p) -> None:
    from edgebase.cli_flags import output_dir, output_file

    p.add_argument("container", metavar="FILE", help="the .edc container")
    p.add_argument("-o", "--output", required=True, type=output_dir, metavar="DIR", help="folder to write into")
    p.add_argument("--json", metavar="PATH", type=output_file, help="also write what was decoded as JSON")


def run(args) -> int:
    import json
    import time

    from edgebase.files import write_text_atomic
    from device_runners.container import describe, read, unpack

    t0 = time.perf_counter()
    container = read(args.container)
    files = unpack(container, args.output)
    facts = {**describe(container), "decode_ms": (time.perf_counter() - t0) * 1e3,
             "written": [str(f) for f in files]}
    for f in facts["files"]:
        print(f"{f['name']}  {f['size_bytes']:,} bytes  sha256 {f['sha256'][:16]}... ok")
    print(f"{facts['container_bytes']:,} bytes -> {facts['decoded_bytes']:,} bytes "
          f"({facts['decoded_bytes'] / facts['container_bytes']:.1f}x) in "
          f"{facts['decode_ms']:.0f} ms")
    if args.json:
        write_text_atomic(args.json, json.dumps(facts, indent=2) + "\n")
    return 0
