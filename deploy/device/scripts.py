'''Fixed Python scripts run on the device with its own Python (``python -c SCRIPT ARGS``).

Nothing here is built from user input: values travel as separate, quoted arguments and each
script prints one JSON document on stdout, which is all the host reads. They run on Python
3.6+ with the standard library only, so that they can also tell an old board what it lacks.
'''
from __future__ import annotations

# sys.argv[1]: JSON list of distribution names the runner needs (numpy, the runtime, ...);
# [2]: where the runtime's venv goes, without its platform tag; [3]: the runner's folder.
# The venv is named for this Python's machine and version (a home shared by boards of two
# architectures keeps two); it, the --target folder beside it and the runner's folder are
# reported as present or not.
PROBE = r'''
import json, os, platform, sys, sysconfig
out = {"python": platform.python_version(), "executable": sys.executable,
       "implementation": sys.implementation.name, "machine": platform.machine(),
       "platform": sysconfig.get_platform(), "glibc": "-".join(platform.libc_ver()),
       "home": os.path.expanduser("~"), "runner": None, "missing": []}
deps = sys.argv[2] if len(sys.argv) > 2 else ""
out["venv_path"] = venv = os.path.expanduser("%s-%s-cp%d%d" % (
    deps, platform.machine(), sys.version_info[0], sys.version_info[1]))
out["venv"] = bool(deps) and os.path.isfile(os.path.join(venv, "bin", "python"))
out["site"] = bool(deps) and os.path.isdir(venv + "-site")
runner = os.path.expanduser(sys.argv[3]) if len(sys.argv) > 3 else ""
out["runner_path"] = runner
out["runner_dir"] = bool(runner) and os.path.isdir(os.path.join(runner, "device_runners"))
try:
    from importlib import metadata
except ImportError:
    metadata = None
try:
    import edgebase, device_runners
    out["runner"] = edgebase.__version__
except Exception:
    pass
for name in json.loads(sys.argv[1]):
    try:
        metadata.version(name)
    except Exception:
        out["missing"].append(name)
print(json.dumps(out))
'''

# sys.argv[1]: cache root; sys.argv[2]: JSON list of [relative path, size]. Prints the
# indices of the files that are not there yet.
HAVE = r'''
import json, os, sys
root = os.path.expanduser(sys.argv[1])
files = json.loads(sys.argv[2])
# copies cut off by a dropped connection leave a dotted .part file: clear those a day old
import time
for d in set(os.path.dirname(os.path.join(root, rel)) for rel, _ in files):
    try:
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if name.startswith(".") and name.endswith(".part") and time.time() - os.path.getmtime(p) > 86400:
                os.unlink(p)
    except OSError:
        pass
missing = [i for i, (rel, size) in enumerate(files)
           if not (os.path.isfile(os.path.join(root, rel))
                   and os.path.getsize(os.path.join(root, rel)) == size)]
try:
    usage = os.statvfs(root if os.path.isdir(root) else os.path.dirname(root.rstrip("/")) or "/")
    free = usage.f_bavail * usage.f_frsize
except OSError:
    free = None
print(json.dumps({"missing": missing, "free": free}))
'''

# sys.argv[1]: cache root, [2]: JSON list of [relative path, sha256, size]. Reads the files one
# after the other from stdin (one connection and one Python start for all of them, which an
# emulated or slow board feels), each into a temporary name beside its final one; checks size
# and sha256, then renames it. A failure leaves only the files finished before it.
RECEIVE = r'''
import errno, hashlib, json, os, sys, tempfile
root, files = os.path.expanduser(sys.argv[1]), json.loads(sys.argv[2])
def fail(kind, msg):
    print(json.dumps({"error": kind, "message": msg})); sys.exit(3)
tmp = None
try:
    for rel, sha, size in files:
        final = os.path.join(root, rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        st = os.statvfs(os.path.dirname(final))
        if st.f_bavail * st.f_frsize < size:
            fail("nospace", "%d bytes free in %s, %d needed"
                 % (st.f_bavail * st.f_frsize, root, size))
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(final) + ".", suffix=".part",
                                   dir=os.path.dirname(final))
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f:
            while n < size:
                block = sys.stdin.buffer.read(min(1 << 20, size - n))
                if not block:
                    break
                h.update(block); n += len(block); f.write(block)
            f.flush(); os.fsync(f.fileno())
        if n != size or h.hexdigest() != sha:
            fail("corrupt", "%s: received %d bytes (sha256 %s), expected %d (%s)"
                 % (os.path.basename(final), n, h.hexdigest()[:12], size, sha[:12]))
        os.chmod(tmp, 0o644)
        os.replace(tmp, final); tmp = None
    if sys.stdin.buffer.read(1):
        fail("corrupt", "more bytes arrived than the %d file(s) announced" % len(files))
    print(json.dumps({"ok": True}))
except OSError as e:
    fail("nospace" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "oserror",
         "%s: %s" % (getattr(e, "filename", None) or root, e.strerror or e))
finally:
    if tmp and os.path.exists(tmp):
        os.unlink(tmp)
'''

# sys.argv[1]: venv path, [2]: JSON list of --find-links dirs, [3]: JSON list of requirements
# (the runtime's, not edgedeploy itself), [4]: a pip wheel (for Pythons without venv/ensurepip).
# Builds the venv under a temporary name and renames it when complete; where `python -m venv`
# cannot work (Debian without python3-venv), pip run from its wheel installs into VENV-site with
# --target. --no-compile: Python caches the bytecode of what it imports on first use, and
# compiling every module of numpy and the runtime is half of pip's time on a slow board.
INSTALL = r'''
import json, os, shutil, subprocess, sys
venv = os.path.expanduser(sys.argv[1])
links, reqs = json.loads(sys.argv[2]), json.loads(sys.argv[3])
pip_wheel = os.path.expanduser(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else ""
links = [os.path.expanduser(l) for l in links]
tmp = venv + ".part-%d" % os.getpid()
def fail(kind, msg):
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"error": kind, "message": msg})); sys.exit(3)
def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    return p.returncode, p.stdout
def last(log, default):
    lines = [l for l in log.strip().splitlines() if l.strip()]
    return lines[-1] if lines else default
flags = ["--no-index", "--disable-pip-version-check", "--no-cache-dir", "--no-compile"]
for l in links:
    flags += ["--find-links", l]
os.makedirs(os.path.dirname(venv), exist_ok=True)
import glob, importlib.util
if importlib.util.find_spec("ensurepip") is None:  # Debian without python3-venv
    rc, log = 1, "ensurepip is not available"
else:
    rc, log = run([sys.executable, "-m", "venv", tmp])
final, mode = venv, "venv"
if rc:
    shutil.rmtree(tmp, ignore_errors=True)
    if "No space left" in log:
        fail("nospace", last(log, "python -m venv failed"))
    if not pip_wheel:
        fail("venv", last(log, "python -m venv failed"))
    final, mode = venv + "-site", "site"
    pip = [sys.executable, os.path.join(pip_wheel, "pip")]
    rc, log = run(pip + ["install", "--target", tmp] + flags + reqs)
    site = tmp
else:
    py = os.path.join(tmp, "bin", "python")
    rc, log = run([py, "-m", "pip", "install"] + flags + reqs)
    site = os.path.join(tmp, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
if rc:
    fail("nospace" if "No space left" in log else "pip", last(log, "pip install failed"))
installed = []  # from the .dist-info folders: no second pip run to list them
for meta in sorted(glob.glob(os.path.join(site, "*.dist-info", "METADATA"))):
    fields = {}
    with open(meta, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("name"):
        installed.append({"name": fields["name"], "version": fields.get("version", "?")})
if os.path.exists(final):
    shutil.rmtree(tmp, ignore_errors=True)
else:
    os.rename(tmp, final)
print(json.dumps({"ok": True, "installed": installed, "mode": mode, "path": final}))
'''

# sys.argv[1]: the edgedeploy wheel (pure Python), [2]: the runner's folder, [3]: JSON list of
# the top-level packages the runner is made of. Unpacks those and the wheel's .dist-info (the
# runner's version for the fingerprint) into a temporary folder, then renames it: no pip run
# needed for a pure-Python wheel, and nothing else of it (the host's torch-side packages).
UNPACK = r'''
import errno, json, os, shutil, sys, zipfile
wheel, final = os.path.expanduser(sys.argv[1]), os.path.expanduser(sys.argv[2])
parts = json.loads(sys.argv[3])
tmp = final + ".part-%d" % os.getpid()
def fail(kind, msg):
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"error": kind, "message": msg})); sys.exit(3)
try:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.split("/")[0] in parts
                 or n.split("/")[0].endswith(".dist-info")]
        for n in names:
            if n.startswith("/") or ".." in n.split("/"):
                fail("corrupt", "%s: unsafe path %r in the wheel" % (wheel, n))
        z.extractall(tmp, names)
    if os.path.exists(final):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.rename(tmp, final)
    print(json.dumps({"ok": True, "path": final}))
except (OSError, zipfile.BadZipFile) as e:
    fail("nospace" if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else "oserror",
         "%s: %s" % (getattr(e, "filename", None) or wheel, getattr(e, "strerror", None) or e))
'''

# Defines fingerprint(dists): what the board is, read where readable; nothing is required.
FINGERPRINT = r'''
import glob, json, os, platform, sys
def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
def fingerprint(dists):
    fp = {"machine": platform.machine(), "kernel": platform.release(), "os": None,
          "python": platform.python_version(), "cpu_model": None, "cpu_flags": [],
          "cores": os.cpu_count(), "governor": None, "freq_mhz": None, "temperature_c": None,
          "thermal_zones": {}, "versions": {}}
    try:
        fp["cores_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        fp["cores_usable"] = fp["cores"]
    try:  # just before the runner starts: other work on the board slows what it times
        fp["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        fp["load_average"] = None
    rel = _read("/etc/os-release") or ""
    for line in rel.splitlines():
        if line.startswith("PRETTY_NAME="):
            fp["os"] = line.split("=", 1)[1].strip('"')
    info = _read("/proc/cpuinfo") or ""
    parts = set()
    for line in info.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "cpu model", "processor") and not fp["cpu_model"] \
                and value and not value.isdigit():
            fp["cpu_model"] = value
        elif key in ("flags", "features") and not fp["cpu_flags"]:
            fp["cpu_flags"] = value.split()
        elif key == "cpu part":
            parts.add(value)
    if parts:
        fp["cpu_parts"] = sorted(parts)  # big.LITTLE boards list more than one core type
    model = _read("/proc/device-tree/model")
    if model:
        fp["board"] = model.strip("\x00")
    govs, freqs, maxf = {}, [], []
    for cpu in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*")):
        g = _read(cpu + "/cpufreq/scaling_governor")
        if g:
            govs[g] = govs.get(g, 0) + 1
        f = _read(cpu + "/cpufreq/scaling_cur_freq")
        if f and f.isdigit():
            freqs.append(int(f) // 1000)
        m = _read(cpu + "/cpufreq/cpuinfo_max_freq")
        if m and m.isdigit():
            maxf.append(int(m) // 1000)
    if govs:
        fp["governor"] = ",".join(sorted(govs))
    if freqs:
        fp["freq_mhz"] = freqs
    if maxf:
        fp["max_freq_mhz"] = sorted(set(maxf))
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t = _read(zone + "/temp")
        if t and t.lstrip("-").isdigit():
            fp["thermal_zones"][_read(zone + "/type") or os.path.basename(zone)] = int(t) / 1000
    if fp["thermal_zones"]:
        fp["temperature_c"] = max(fp["thermal_zones"].values())
    throttled = _read("/sys/devices/platform/soc/soc:firmware/get_throttled")
    if throttled:
        fp["throttled"] = throttled
    try:
        from importlib import metadata
        for name in dists:
            try:
                fp["versions"][name] = metadata.version(name)
            except Exception:
                pass
    except ImportError:
        pass
    fp["emulated"] = emulator()
    return fp
def emulator():
    """What emulates this Python, or False: the emulator's own word (deploy device emulate's
    wrapper), else QEMU user mode's process name, else QEMU's variables."""
    said = os.environ.get("EDGEDEPLOY_EMULATOR")
    if said:
        return said
    status = _read("/proc/self/status") or ""
    name = status.splitlines()[0].partition(":")[2].strip() if status else ""
    if name.startswith("qemu-"):
        return name + " (user mode)"
    if os.environ.get("QEMU_CPU") or os.environ.get("QEMU_LD_PREFIX"):
        return "qemu (QEMU_CPU/QEMU_LD_PREFIX set)"
    return False
'''

# sys.argv[1]: working dir, [2]: JSON list of distributions to report, [3]: folders to put first
# on PYTHONPATH, joined with os.pathsep ('' for none), [4:]: runner arguments.
# Runs ``python -m device_runners.cli ARGS`` in the working dir, then prints one envelope:
# the fingerprint, the exit code, the runner's JSON result, its text and its last error line.
RUN = FINGERPRINT + r'''
import subprocess, shutil
work, dists, extra_path = os.path.expanduser(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
argv = sys.argv[4:]
env = dict(os.environ)
if extra_path:
    paths = [os.path.expanduser(p) for p in extra_path.split(os.pathsep) if p]
    sys.path[:0] = paths  # the fingerprint's versions: what the runner will import
    env["PYTHONPATH"] = os.pathsep.join(
        paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
out = {"fingerprint": fingerprint(dists)}
os.makedirs(work, exist_ok=True)
result = os.path.join(work, "result.json")
try:
    p = subprocess.run([sys.executable, "-m", "device_runners.cli"] + argv + ["--json", result],
                       cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    out["rc"], out["text"] = p.returncode, p.stdout
    errs = [l for l in p.stderr.splitlines() if l.strip()]
    out["error"] = errs[-1] if errs else None
    if os.path.exists(result):
        with open(result) as f:
            out["result"] = json.load(f)
    # files the runner wrote beside it (eval --outputs NAME.npz) travel back in the envelope
    import base64
    out["files"] = {}
    for name in sorted(os.listdir(work)):
        if name.endswith(".npz"):
            with open(os.path.join(work, name), "rb") as f:
                out["files"][name] = base64.b64encode(f.read()).decode()
finally:
    shutil.rmtree(work, ignore_errors=True)
print(json.dumps(out))
'''
