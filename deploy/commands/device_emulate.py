"""`deploy device emulate aarch64`: an emulated board on this host, reachable over real SSH.

Prepares the emulated root once (deploy.device.emulator), starts OpenSSH's sshd on 127.0.0.1
with temporary keys (deploy.device.loopback), prints the board's ``ssh://`` address and the
flag that names its key on one line, and runs until Ctrl-C or SIGTERM, then cleans up.
"""
from __future__ import annotations

HELP = ("start an emulated board on 127.0.0.1 (QEMU user mode, Debian Python, a real sshd) "
        "and print its ssh:// address; runs until Ctrl-C")


def add_arguments(p) -> None:
    from deploy.device.emulator import ARCHITECTURES

    measured = "; ".join(f"{a.name}: {', '.join(a.measured_cpus)}"
                         for a in ARCHITECTURES.values())
    p.add_argument("arch", choices=sorted(ARCHITECTURES), metavar="ARCH",
                   help=f"the board's architecture: {', '.join(sorted(ARCHITECTURES))}")
    p.add_argument("--cpu", metavar="NAME",
                   help="the CPU QEMU emulates (default: neoverse-n1 for aarch64); measured: "
                        f"{measured}; `max` is refused (it turns on SME)")
    p.add_argument("--port", type=int, default=0, metavar="N",
                   help="port of the board's sshd on 127.0.0.1 (default: a free one)")
    p.add_argument("--offline", action="store_true",
                   help="the board's Python has no network (a network namespace of its own), "
                        "like a board without internet")
    p.add_argument("--prepare-only", action="store_true",
                   help="prepare the cached root (downloads once) and exit")
    p.add_argument("--json", metavar="FILE",
                   help="also write the address, ssh config, key and Python as JSON to FILE "
                        "(removed when the board stops)")


class _Stop(Exception):
    pass


def run(args) -> int:
    import json
    import os
    import signal
    import sys
    from pathlib import Path

    from deploy.device.address import DeviceAddress
    from deploy.device.emulator import get_architecture, prepare
    from deploy.device.loopback import LoopbackError, LoopbackSSHD
    from edgebase.errors import ConfigError
    from edgebase.files import write_text_atomic

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: expected 1-65535, or 0 for a free port")
    arch = get_architecture(args.arch)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    root = prepare(arch, log)
    python = root.python(args.cpu or arch.default_cpu, offline=args.offline)
    if args.prepare_only:
        log(f"emulate: {arch.name} board prepared in {root.path}; its Python: {python}")
        return 0

    def stop(signum, frame):
        raise _Stop

    previous = signal.signal(signal.SIGTERM, stop)
    server = LoopbackSSHD(port=args.port)
    try:
        server.start()
        address = DeviceAddress("127.0.0.1", server.user, server.port, python=str(python))
        if args.json:
            write_text_atomic(args.json, json.dumps({
                "address": str(address), "ssh_config": str(server.client_config),
                "identity": str(server.key), "python": str(python), "arch": arch.name,
                "cpu": args.cpu or arch.default_cpu, "qemu": root.qemu_version,
                "offline": args.offline, "pid": os.getpid()}, indent=2) + "\n")
        print(f"{address} --ssh-config {server.client_config}", flush=True)
        log(f"emulate: {arch.name} board up (QEMU {root.qemu_version} -cpu "
            f"{args.cpu or arch.default_cpu}, Debian Python {root.python_version}"
            f"{', no network' if args.offline else ''}); use it as "
            f"`deploy device bench MODEL --device '{address}' --ssh-config "
            f"{server.client_config}` or `ssh -F {server.client_config} {server.alias}`; "
            "its timings are emulated, not a board's. Ctrl-C stops it")
        server.proc.wait()
        said = server.log.read_text(errors="replace").strip().splitlines()
        raise LoopbackError(f"the board's sshd stopped by itself (exit code "
                            f"{server.proc.returncode}: {said[-1] if said else 'no output'})")
    except (KeyboardInterrupt, _Stop):
        log(f"emulate: stopping the {arch.name} board")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        if args.json:
            Path(args.json).unlink(missing_ok=True)
