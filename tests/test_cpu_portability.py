"""Right on every x86-64 CPU (and ARM): the precision a runtime computes in, and the peaks.

OpenVINO's CPU plugin defaults to bf16 on Xeons with AMX/AVX512_BF16 (f16 on some ARM cores).
The suite asserts what must hold on the CPU it runs on: an fp32 file runs in f32 unless asked
otherwise, and where the default differs the export records that mode beside the f32 check.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgebase.errors import ConfigError
from device_runners import sysinfo
from device_runners.loading import load
from device_runners.bench import bench
from tests.runner_models import small_models  # noqa: F401


def plugin_default() -> str:
    import openvino as ov

    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def cpu_flags() -> set[str]:
    return set(sysinfo.cpu_info().flags)


def test_openvino_runs_f32_by_default_whatever_the_plugin_default(small_models):
    b = load(small_models["xml"])
    assert b.precision_hint == "f32" and b.inference_precision == "f32"
    auto = load(small_models["xml"], precision_hint="auto")
    # "auto" is whatever the plugin picks on this CPU, and the record says which
    assert auto.inference_precision == plugin_default()
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    f32_out, auto_out = b.run(x)[0], auto.run(x)[0]
    if plugin_default() == "f32":
        np.testing.assert_array_equal(f32_out, auto_out)
    else:  # bf16 keeps 8 mantissa bits: the default mode must differ measurably from f32
        assert np.abs(f32_out - auto_out).max() > 1e-5


def test_bf16_hint_is_honoured_only_where_the_cpu_has_it(small_models):
    b = load(small_models["xml"], precision_hint="bf16")
    has_bf16 = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert b.inference_precision == ("bf16" if has_bf16 else "f32")
    assert "hint bf16" in b.provider


def test_precision_hint_errors_are_one_line(small_models):
    with pytest.raises(ConfigError, match="valid: f32, bf16, f16, auto"):
        load(small_models["xml"], precision_hint="fp8")
    with pytest.raises(ConfigError, match="onnxruntime runs float work in f32"):
        load(small_models["onnx"], precision_hint="bf16")
    assert load(small_models["onnx"], precision_hint="auto").inference_precision == "f32"


def test_bench_records_precision_and_compares_with_that_arithmetic(small_models):
    r = bench(small_models["xml"], runs=3, warmup=0, threads=1, isolate=False)
    assert (r.precision_hint, r.inference_precision, r.arithmetic) == ("f32", "f32", "f32")
    r = bench(small_models["xml"], runs=3, warmup=0, threads=1, isolate=False,
              precision_hint="auto")
    assert r.arithmetic == r.inference_precision == plugin_default()


def test_peaks_follow_the_flags():
    units = sysinfo.arithmetic_units
    avx2 = units({"avx2", "fma"}, "x86_64")
    assert avx2["f32"][1] == 16 and avx2["int8"] == ("AVX2 vpmaddubsw+vpmaddwd", 32)
    assert "bf16" not in avx2 and "f16" not in avx2
    spr = units({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                 "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"}, "x86_64")
    assert spr["f32"][1] == 32 and spr["int8"] == ("AMX TDPBUSD", 1024)
    assert spr["bf16"][0] == "AMX TDPBF16PS" and spr["f16"][1] == 64
    cascade = units({"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"}, "x86_64")
    assert cascade["int8"][1] == 4 * cascade["f32"][1]  # vpdpbusd: 4 int8 MACs per fp32 lane
    a76 = units({"asimd", "asimddp", "asimdhp"}, "aarch64")
    assert a76["f32"][1] == 8 and a76["int8"][1] == 32 and a76["f16"][1] == 16
    assert units({"asimd", "asimddp", "i8mm"}, "aarch64")["int8"][0] == "NEON i8mm smmla"


def test_this_cpu_peaks_are_consistent():
    cpu = sysinfo.cpu_info()
    assert cpu.peak("f32") is not None
    if cpu.peak_gmacs:
        assert cpu.peak("f32").gmacs == pytest.approx(cpu.peak_gmacs)
    flags = set(cpu.flags)
    if flags & {"avx2", "asimd"}:
        # every int8 unit on these CPUs does at least twice the fp32 MACs per cycle
        assert cpu.peak("int8").macs_per_cycle >= 2 * cpu.peak("f32").macs_per_cycle
    back = sysinfo.CpuInfo.from_dict(cpu.to_dict())
    assert back.peaks == cpu.peaks


def test_a_peak_is_a_hard_bound_only_with_the_maximum_clock():
    """A VM shows the clock it read, not the boost clock: a rate somewhat above that "peak" is
    real (SqueezeNet's LiteRT file ran at 1.02x of it on an EPYC read at 2.445 GHz), while one
    beyond the headroom means the timed call skipped work."""
    cpu = sysinfo.cpu_info()
    vm = dataclasses.replace(cpu, mhz_source="/proc/cpuinfo 'cpu MHz' (current clock; no cpufreq max)")
    board = dataclasses.replace(cpu, mhz_source="/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    assert not vm.clock_is_max and vm.impossible_share == sysinfo.BOOST_HEADROOM > 1.0
    assert board.clock_is_max and board.impossible_share == 1.0


def test_openvino_export_validates_in_f32_and_records_the_default_mode(tmp_path):
    """The pin: a trained CIFAR-10 net validates at the fp32 tolerance in f32 on any CPU; where
    the plugin's default is not f32 (AMX Xeons: bf16), that mode is measured and recorded."""
    from deploy.export import ExportConfig, export, load_source

    source = load_source("shufflenet_v2_x0_5.cifar10")
    art = export(source, ExportConfig(target="openvino", output_dir=tmp_path))
    v = art.validation
    assert v["status"] == "passed"
    assert v["precision_hint"] == "f32" and v["inference_precision"] == "f32"
    if plugin_default() == "f32":
        assert "runtime_default" not in v
    else:
        d = v["runtime_default"]
        assert d["precision_hint"] == "auto" and d["inference_precision"] == plugin_default()
        assert d["max_abs_diff"] > v["max_abs_diff"]
