"""ShuffleNet V2's guideline micro-benchmarks: the modules have the FLOPs of the paper's tables,
and `deploy guidelines` makes, checks and times real files and writes its report."""
from __future__ import annotations

import json

import pytest
import torch

from zoo.facts import model_facts
from zoo.guidelines import BLOCKS, FEATURE, SCALES, paper_flops, variants

HW = FEATURE * FEATURE


def counted(v):
    """MACs of the variant's module, counted on the meta device (shapes only: fast)."""
    with torch.device("meta"):
        m = v.build()
    return model_facts(m, FEATURE, in_channels=v.in_channels)

# the ARM x1 widths printed in Tables 1-4, and the MACs they give (counted by hand:
# 10 blocks x the convolutions of a block x 56 x 56 x c_in x c_out / groups x k x k)
EXPECTED_X1 = {
    "g1_1-1_x1": 10 * 2 * HW * 32 * 32,  # 64,225,280
    "g1_1-2_x1": 10 * 2 * HW * 22 * 44,  # 60,712,960
    "g1_1-6_x1": 10 * 2 * HW * 13 * 78,
    "g1_1-12_x1": 10 * 2 * HW * 9 * 108,
    "g2_g1_x1": 10 * HW * 64 * 64,  # 128,450,560
    "g2_g2_x1": 10 * HW * 90 * 90 // 2,
    "g2_g4_x1": 10 * HW * 128 * 128 // 4,
    "g2_g8_x1": 10 * HW * 184 * 184 // 8,  # the printed 180 is not divisible by 8 (see module)
    "g3_1-fragment_x1": 10 * HW * 64 * 64,
    "g3_4-fragment-series_x1": 10 * 4 * HW * 32 * 32,
    "g3_2-fragment-parallel_x1": 10 * 2 * HW * 64 * 32,
    "g3_4-fragment-parallel_x1": 10 * 4 * HW * 64 * 16,
    "g4_reluyes_shortcutyes_x1": 10 * HW * (32 * 8 + 9 * 8 * 8 + 8 * 32),  # 34,119,680
    "g4_reluno_shortcutno_x1": 10 * HW * (32 * 8 + 9 * 8 * 8 + 8 * 32),
}


def test_paper_widths_give_the_stated_flops():
    assert EXPECTED_X1["g1_1-1_x1"] == 64_225_280
    assert EXPECTED_X1["g4_reluyes_shortcutyes_x1"] == 34_119_680
    by_key = {v.key: v for v in variants(scales=(1,))}
    for key, macs in EXPECTED_X1.items():
        v = by_key[key]
        assert counted(v).macs == macs, key
        assert paper_flops(v) == macs, key


@pytest.mark.parametrize("scale", SCALES)
def test_every_module_counts_its_formula_and_tables_keep_flops_fixed(scale):
    by_guideline: dict[str, list[int]] = {}
    for v in variants(scales=(scale,)):
        facts = counted(v)
        assert facts.macs == paper_flops(v), v.key
        assert facts.layers[-1].output_shape == v.input_shape  # blocks stack: shape kept
        by_guideline.setdefault(v.guideline, []).append(facts.macs)
    # within a table the FLOPs are fixed (the paper's rounding of widths: at most 5.5 %)
    for g, macs in by_guideline.items():
        assert max(macs) / min(macs) < 1.06, (g, macs)
    # G3's derived widths and G4's variants: exactly or nearly the 1-fragment's / equal
    g3 = by_guideline["G3"]
    assert all(abs(m / g3[0] - 1) < 0.012 for m in g3)
    assert len(set(by_guideline["G4"])) == 1
    assert BLOCKS == 10


def test_widths_scale_with_the_columns():
    x1 = {v.key[:-3]: v.widths for v in variants(scales=(1,))}
    x4 = {v.key[:-3]: v.widths for v in variants(scales=(4,))}
    assert x4["g1_1-12"] == {"c1": 36, "c2": 432}  # Table 1's GPU x1 row: (36, 432)
    assert x4["g2_g8"] == {"c": 720, "groups": 8}
    assert x1["g1_1-6"] == {"c1": 13, "c2": 78}


def _run(tmp_path, *extra):
    from deploy.cli import main

    return main(["guidelines", "--target", "openvino", "--guidelines", "G4", "--scales", "1",
                 "--precisions", "fp32", "--threads", "1", "--runs", "2", "--rounds", "1",
                 "--warmup", "0", "--layers", "none", "--no-progress",
                 "--output", str(tmp_path), *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from device_runners.sysinfo import cpu_tag

    out = tmp_path_factory.mktemp("guidelines")
    rc = _run(out)
    return rc, out, cpu_tag()


def test_tiny_run_writes_the_report_files(tiny_run):
    rc, out, tag = tiny_run
    assert rc == 0
    report = json.loads((out / f"guidelines_{tag}.json").read_text())
    cells = report["cells"]
    assert [c["status"] for c in cells] == ["ok"] * 4
    for c in cells:
        assert c["check"]["status"] == "passed" and c["check"]["cosine_min"] > 0.99999
        assert c["latency"]["1"]["p50_ms"] > 0
    (v,) = report["verdicts"]
    assert v["guideline"] == "G4" and v["paper_cost"]["arm"] == pytest.approx(56.7 ** -1 * 66.3 - 1)
    assert v["measured"][0]["verdict"] in ("holds", "within noise", "reversed")
    md = (out / f"guidelines_{tag}.md").read_text()
    assert "| ReLU yes, shortcut yes | c=32, mid=8 | 34.1 |" in md and "56.7" in md
    png = out / report["plots"]["curves"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the manifest beside each file records the check and the precision the runtime ran in
    art = json.loads((out / "openvino" / "g4_reluyes_shortcutyes_x1.xml.json").read_text())
    assert art["validation"]["inference_precision"] == "f32"
    assert art["model"]["macs"] == EXPECTED_X1["g4_reluyes_shortcutyes_x1"]


def test_per_layer_join_attributes_every_operator(tiny_run):
    """OpenVINO's counters on a real file: every executed node is named after a layer."""
    from deploy.guidelines import build
    from deploy.layer_profile import join, layer_records
    from device_runners.backends.openvino_layers import profile_layers
    from zoo.guidelines import variants as all_variants

    _, out, _ = tiny_run
    v = next(x for x in all_variants(("G4",), (1,)) if x.key == "g4_reluyes_shortcutyes_x1")
    model = build(v, 0)
    facts = model_facts(model, FEATURE, in_channels=v.in_channels)
    prof = profile_layers(out / "openvino" / f"{v.key}.xml", layer_records(model, facts),
                          threads=1, runs=3, warmup=1)
    joined = join(prof, facts)
    assert not joined["unattributed"]
    timed = {l["name"] for l in joined["layers"] if l["ms"] > 0}
    assert {f"{b}.conv{i}" for b in range(BLOCKS) for i in (1, 2, 3)} <= timed
    assert joined["by_class_ms"]["conv"] > 0
    # the nodes ran inside the timed infer() calls: their sum cannot exceed those calls (it
    # did when the counters' running mean, which holds the warm-up, was read as per-run time)
    assert 0 < joined["op_sum_ms"] <= joined["wall_ms"]


def test_openvino_counter_window_is_a_lower_bound():
    """Running means in whole microseconds: 3 runs of 10.9 us then 20 of 5.6 us read 10, then
    5 (each run rounded down: totals 30, then 130 = 5 x 23 + 15); the window's 100 us is
    bounded from below."""
    from device_runners.backends.openvino import window_total_us

    assert window_total_us(10, 3, 5, 23) == 115 - 32  # total 130 - 30 at most: >= 83
    assert window_total_us(0, 0, 7, 5) == 35  # no warm-up: the mean times the runs
    assert window_total_us(9, 3, 1, 4) == 0  # never negative
    for before, after in ((30, 130), (32, 152)):  # any totals the readings allow
        assert window_total_us(before // 3, 3, after // 23, 23) <= after - before


def test_onnxruntime_gaps_inside_one_layer_are_that_layers():
    from device_runners.backends.onnxruntime_layers import same_layer_gaps

    timeline = [("reorder_in", 0, 5), ("conv", 8, 50), ("reorder_out", 53, 60),
                ("concat", 70, 75), ("unnamed", 77, 80), ("add", 81, 82)]
    layers = {"reorder_in": "a.conv", "conv": "a.conv", "reorder_out": "a.conv",
              "concat": "a.concat", "add": "a.concat"}
    assert same_layer_gaps(timeline, layers) == [("a.conv", 3), ("a.conv", 3)]


def test_layer_match_pairs_by_kind_shape_and_order():
    from device_runners.layer_match import match_in_order

    layers = [{"name": "a", "kind": "pointwise", "weight_shape": (8, 4, 1, 1)},
              {"name": "b", "kind": "depthwise", "weight_shape": (8, 1, 3, 3)},
              {"name": "c", "kind": "concat", "weight_shape": None},
              {"name": "d", "kind": "pointwise", "weight_shape": (8, 4, 1, 1)}]
    ops = [("x", "conv", (8, 3, 3, 1)), ("y", "conv", (8, 1, 1, 4)), ("z", "concat", None),
           ("w", "conv", (8, 1, 1, 4)), ("q", "add", None)]
    assert match_in_order(ops, layers) == {"x": "b", "y": "a", "z": "c", "w": "d"}


@pytest.mark.parametrize("argv, says", [
    (["--guidelines", "G9"], "unknown guideline 'G9'; valid: G1, G2, G3, G4"),
    (["--scales", "3"], "--scales 3; valid: 1,2,4"),
    (["--precisions", "fp16"], "fp16"),
    (["--layers", "nonet"], "unknown model 'nonet'"),
])
def test_bad_input_is_one_line(argv, says, tmp_path, capsys):
    from deploy.cli import main

    rc = main(["guidelines", "--target", "onnx", "--output", str(tmp_path), *argv])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and says in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("target", ["onnx", pytest.param("tflite", marks=pytest.mark.slow)])
def test_per_layer_join_on_the_other_runtimes(target, tmp_path):
    """onnxruntime's profiler and LiteRT's single-operator sub-graphs on a real file: every
    operator is named after a layer, and the three convolutions of each block get time."""
    from deploy.guidelines import build, make_file
    from deploy.layer_profile import join, layer_records
    from edgebase.capabilities import get_runtime, get_target
    from zoo.guidelines import variants as all_variants

    v = next(x for x in all_variants(("G4",), (1,)) if x.key == "g4_reluyes_shortcutyes_x1")
    path, _, _ = make_file(v, target, "fp32", tmp_path, 0, 1)
    model = build(v, 0)
    facts = model_facts(model, FEATURE, in_channels=v.in_channels)
    profiler = get_runtime(get_target(target).runtime).layer_profiler_fn()
    prof = profiler(path, layer_records(model, facts), threads=1, runs=3, warmup=1)
    joined = join(prof, facts)
    assert not joined["unattributed"]
    timed = {l["name"] for l in joined["layers"] if l["ms"] > 0}
    assert {f"{b}.conv{i}" for b in range(BLOCKS) for i in (1, 2, 3)} <= timed
    if target == "onnx":  # the executor's time between a layer's own kernels is that layer's
        gaps = [o for o in prof["ops"] if o["type"] == "executor"]
        assert gaps and all(o["layer"] and o["class"] == "between operators" for o in gaps)
        assert joined["attributed_ms"] <= joined["wall_ms"]
        total = sum(joined["by_class_ms"].values())
        assert total == pytest.approx(max(joined["wall_ms"], joined["op_sum_ms"]))
        assert 0 <= joined["between_ends_ms"] <= joined["between_ms"]


@pytest.mark.slow
def test_layers_report_for_a_zoo_net(tmp_path):
    """--layers: the export stage's validated file, profiled and joined, in md and json."""
    from deploy.cli import main
    from device_runners.sysinfo import cpu_tag

    rc = main(["guidelines", "--target", "onnx", "--guidelines", "G4", "--scales", "1",
               "--precisions", "fp32", "--threads", "1", "--runs", "2", "--rounds", "1",
               "--layers", "shufflenet_v2_x0_5", "--no-progress", "--output", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / f"guidelines_{cpu_tag()}.json").read_text())
    (rec,) = report["layers"]
    assert rec["status"] == "ok" and rec["model"] == "shufflenet_v2_x0_5"
    assert not rec["unattributed"] and rec["attributed_ms"] > 0
    assert sum(rec["by_class_ms"].values()) >= rec["op_sum_ms"] * 0.999
    md = (tmp_path / f"guidelines_{cpu_tag()}.md").read_text()
    assert "## Per-layer FLOPs vs time" in md and "shufflenet_v2_x0_5" in md
    assert (tmp_path / report["plots"]["layers_share"]).is_file()


def test_onnx_int8_keeps_the_relu_that_ends_the_network(tmp_path):
    """onnxruntime's quantizer folds a ReLU into the clamp of the Quantize behind it; the float
    output must not lose it with that pair (G4 with ReLU ended at cosine 0.69), and the check
    against the PyTorch parent fails a file that has lost it."""
    import onnx

    from deploy.guidelines import CHECK_INPUTS, build, check_against_parent, make_file, noise
    from edgebase.capabilities import get_target
    from zoo.guidelines import variants as all_variants

    v = next(x for x in all_variants(("G4",), (1,)) if x.key == "g4_reluyes_shortcutno_x1")
    fp32, _, _ = make_file(v, "onnx", "fp32", tmp_path, 0, 1)
    path, art, _ = make_file(v, "onnx", "int8", tmp_path, 0, 1, fp32_file=fp32)
    assert art.validation["status"] == "passed"  # cosine >= the int8 tolerance (0.9)
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    last = producer[model.graph.output[0].name]
    assert last.op_type == "Relu" and producer[last.input[0]].op_type == "Conv"

    # the same file without that ReLU (what the pair's removal did) fails the check
    conv = producer[last.input[0]]
    conv.output[0] = model.graph.output[0].name
    model.graph.node.remove(last)
    broken = tmp_path / "no_relu.onnx"
    onnx.save(model, str(broken))
    x = noise(v.input_shape, CHECK_INPUTS, 1)
    check = check_against_parent(broken, "onnxruntime", "NCHW", build(v, 0), x,
                                 get_target("onnx").tolerance("int8"), 1)
    assert check["status"] == "failed" and check["cosine_min"] < 0.9, check


@pytest.mark.slow
def test_tiny_run_on_executorch(tmp_path):
    """The fourth target: fp32 and int8 .pte files (int8 from the PyTorch parent, as a .pte is
    already lowered), each checked against that parent, then timed at 1 and 2 threads in one
    process (ExecuTorch's threadpool is process-wide: resized between the thread counts)."""
    from deploy.cli import main
    from device_runners.sysinfo import cpu_tag
    from edgebase.capabilities import get_target

    et = get_target("executorch")
    rc = main(["guidelines", "--target", "executorch", "--guidelines", "G4", "--scales", "1",
               "--precisions", "fp32,int8", "--threads", "1,2", "--runs", "2", "--rounds", "1",
               "--warmup", "0", "--layers", "none", "--no-progress", "--output", str(tmp_path)])
    assert rc == 0
    report = json.loads((tmp_path / f"guidelines_{cpu_tag()}.json").read_text())
    cells = report["cells"]
    assert len(cells) == 8 and {c["status"] for c in cells} == {"ok"}, cells
    for c in cells:
        assert c["check"]["status"] == "passed" and set(c["latency"]) == {"1", "2"}
        assert c["check"]["arithmetic"] == ("int8" if c["precision"] == "int8" else "f32")
        assert c["check"]["cosine_min"] >= et.tolerance(c["precision"]).min_cosine
    (v,) = report["verdicts"]
    assert {(m["precision"], m["threads"]) for m in v["measured"]} == {
        ("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)}
    art = json.loads((tmp_path / "executorch" / "g4_reluyes_shortcutyes_x1.int8.pte.json")
                     .read_text())
    assert art["precision"] == "int8" and art["passes"][-1]["name"] == "int8"
    assert "XNNPACKQuantizer" in art["passes"][-1]["quantizer"]
    assert art["passes"][-1]["quantized"] == "the PyTorch module"
    assert art["validation"]["status"] == "passed"
