"""`deploy device bench|eval|verify FILE --device ssh://user@host[:port]`: run the torch-free
runner on a board over SSH with the runner's own flags; the model (manifest, companions), the
images and, when the board lacks it, the runner itself are pushed once (cached by hash)."""
from __future__ import annotations

HELP = ("run `runner bench|eval|verify` on a device over SSH (ssh://user@host[:port] or a "
        "~/.ssh/config alias); results carry the device's fingerprint")

ACTIONS = {"bench": "device_runners.commands.bench", "eval": "device_runners.commands.eval",
           "verify": "device_runners.commands.verify"}
DEVICE_DESTS = {"device", "python", "remote_dir", "ssh_config", "connect_timeout", "install",
                "json", "debug", "action", "_run", "_runner_parser", "timeout"}
PATH_DESTS = {"model", "bundle", "data", "input"}  # local files that travel to the device
# files the runner writes, by flag: made in the run's folder on the device, brought back
OUTPUT_DESTS = {"outputs": "outputs.npz"}


def add_device_arguments(p, required: bool = True) -> None:
    from edgebase.cli_flags import POSITIVE

    g = p.add_argument_group("device")
    g.add_argument("--device", required=required, metavar="ADDRESS",
                   help="ssh://user@host[:port] or a host alias from ~/.ssh/config (key "
                        "authentication; passwords are never asked)")
    g.add_argument("--python", metavar="PATH",
                   help="the device's Python (default: the address's ?python=PATH, else "
                        "python3 on its PATH)")
    g.add_argument("--remote-dir", default="~/.cache/edgedeploy", metavar="DIR",
                   help="cache on the device for files, wheels and the runner's venv "
                        "(default ~/.cache/edgedeploy)")
    g.add_argument("--ssh-config", metavar="FILE", help="ssh config file instead of ~/.ssh/config")
    g.add_argument("--connect-timeout", type=POSITIVE, default=10, metavar="S",
                   help="seconds to wait for the connection (default 10)")
    g.add_argument("--no-install", dest="install", action="store_false",
                   help="never push the runner; fail when the device's Python lacks it")


def add_arguments(p) -> None:
    import importlib

    from edgebase.cli_flags import above

    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, module_name in ACTIONS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=f"runner {name} on the device: {module.HELP}",
                            description=f"runner {name} on the device: {module.HELP}")
        module.add_arguments(sp)  # the runner's own flags, passed through
        add_device_arguments(sp)
        sp.add_argument("--timeout", type=above(0), metavar="S",
                        help="give up on the remote run after S seconds")
        sp.set_defaults(_runner_parser=sp)
    from deploy.commands import device_emulate

    sp = sub.add_parser("emulate", help=device_emulate.HELP, description=device_emulate.HELP)
    device_emulate.add_arguments(sp)


def runner_argv(args, parser, paths: dict[str, str]) -> list[str]:
    """The runner command line from the parsed flags (values that differ from the defaults),
    local paths replaced by their copies on the device."""
    import argparse

    argv, positional = [], []
    for action in parser._actions:
        dest = action.dest
        if dest in DEVICE_DESTS or isinstance(action, argparse._HelpAction):
            continue
        value = getattr(args, dest, None)
        if dest in paths:
            value = paths[dest]
        if not action.option_strings:
            positional.append(str(value))
            continue
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") \
            else action.option_strings[0]
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            if action.nargs in ("+", "*"):
                argv += [flag, *map(str, value)]
            else:  # a parsed shape such as 1,3,224,224
                argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return positional + argv


def _group(path):
    """A model file with its manifest and companions, a folder's files, or one file."""
    from pathlib import Path

    from edgebase.capabilities import TARGETS
    from edgebase.errors import DataError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        files = [(p, str(p.relative_to(path.parent))) for p in sorted(path.rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts]
        return files, path.name
    files = [(path, path.name)]
    suffixes = {c for t in TARGETS.values() for c in t.companions}
    for extra in [path.with_suffix(s) for s in sorted(suffixes)] + [Path(str(path) + ".json")]:
        if extra.is_file() and extra != path:
            files.append((extra, extra.name))
    return files, path.name


def run(args) -> int:
    if args.action == "emulate":
        from deploy.commands import device_emulate

        return device_emulate.run(args)
    from deploy.device.address import parse_address
    from deploy.device.session import Device

    address = parse_address(args.device)
    device = Device(address, python=args.python, remote_dir=args.remote_dir,
                    ssh_config=args.ssh_config, connect_timeout=args.connect_timeout,
                    install=args.install)
    try:
        return _run(args, address, device)
    finally:
        device.ssh.close()


def _run(args, address, device) -> int:
    import base64
    import json
    from pathlib import Path

    from deploy.device.ssh import DeviceError
    from deploy.device.summary import fingerprint_line
    from edgebase.capabilities import get_runtime, runtime_for_suffix
    from edgebase.errors import ConfigError
    from edgebase.files import write_bytes_atomic, write_text_atomic

    main_path = args.bundle if args.action == "verify" else args.model
    if getattr(args, "runtime", None):
        runtimes = [get_runtime(args.runtime)]
    elif args.action == "verify":
        runtimes = _bundle_runtimes(Path(main_path))
    else:
        suffix = Path(main_path).suffix
        runtime = runtime_for_suffix(suffix) or runtime_for_suffix(
            Path(Path(main_path).stem).suffix)  # containers: model.onnx.edc
        if runtime is None:
            raise ConfigError(f"{main_path}: no runtime reads {suffix!r} files; pass --runtime")
        runtimes = [runtime]
    fetch = {dest: name for dest, name in OUTPUT_DESTS.items() if getattr(args, dest, None)}
    for dest, name in fetch.items():
        if not str(getattr(args, dest)).endswith(Path(name).suffix):
            raise ConfigError(f"--{dest} {getattr(args, dest)}: name a file ending in "
                              f"{Path(name).suffix}")
    env = device.ensure_runner(",".join(sorted({r.extra for r in runtimes})))
    paths = dict(fetch)  # relative: the runner runs in its own folder on the device
    dests = [d for d in sorted(PATH_DESTS) if getattr(args, d, None)]
    groups = [_group(getattr(args, d)) for d in dests]
    for dest, (files, name), remote in zip(dests, groups,
                                           device.push_groups([g[0] for g in groups])):
        paths[dest] = remote[0] if not Path(getattr(args, dest)).is_dir() else \
            remote[0][: -len(files[0][1])] + name
    argv = [args.action] + runner_argv(args, args._runner_parser, paths)
    out = device.run_runner(env, argv, timeout=args.timeout)
    if out.get("text"):
        print(out["text"], end="" if out["text"].endswith("\n") else "\n")
    fp = out.get("fingerprint", {})
    device_doc = {"address": str(address), "python": env.python, "fingerprint": fp,
                  "installed": env.installed}
    print(fingerprint_line(address, fp))
    result = out.get("result")
    if not out.get("rc"):
        for dest, name in fetch.items():
            if name in (out.get("files") or {}):
                write_bytes_atomic(getattr(args, dest), base64.b64decode(out["files"][name]))
                if result is not None:
                    result[dest] = str(getattr(args, dest))
    if args.json and result is not None:
        doc = dict(result, device=device_doc)
        if fp.get("emulated"):  # the timings in it are the emulator's, not a board's
            doc["emulated"] = fp["emulated"]
        write_text_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    if out.get("rc"):
        error = (out.get("error") or f"exit code {out['rc']}").removeprefix("runner: error: ")
        err = DeviceError(f"on {address}: {error}")
        err.exit_code = out["rc"]
        raise err
    return 0


def _bundle_runtimes(bundle):
    """The runtimes a release bundle's model files need (by suffix: each suffix's default)."""
    import zipfile

    from edgebase.capabilities import model_suffixes, runtime_for_suffix
    from edgebase.errors import ConfigError

    names = ([str(p) for p in bundle.rglob("*")] if bundle.is_dir()
             else zipfile.ZipFile(bundle).namelist() if zipfile.is_zipfile(bundle) else [])
    found = {runtime_for_suffix(s).name: runtime_for_suffix(s) for s in model_suffixes()
             if any(n.endswith(s) for n in names)}
    if not found:
        raise ConfigError(f"{bundle}: no model file found in the bundle")
    return list(found.values())
