"""The PTQ passes on real exported files (the export tests' 64x64 parents, real photos):
what each target's int8 graph contains, I/O types, excluded layers, bias correction.
Accuracy on real weights is measured by the slow tests at the end."""
from __future__ import annotations

import numpy as np
import pytest

from tests.export_helpers import CLASSES, SMALL, checkpoint, exported


def fp32_file(model_name: str, target: str):
    """(source, fp32 path): the parent file the export tests' int8 run wrote (shared cache)."""
    import torch

    from deploy.export import load_source
    from edgebase.capabilities import get_target

    torch.set_num_threads(1)
    _, out = exported(model_name, target, "int8")
    source = load_source(model_name, weights=checkpoint(model_name, SMALL, CLASSES),
                         num_classes=CLASSES, input_size=SMALL)
    return source, out / get_target(target).file_name(model_name, "fp32")


def calib_for(source, n: int = 8):
    from deploy.validate import data_dir
    from quant.calibration import load_calibration

    return load_calibration(data_dir() / "imagenet-sample-1k.zip", source.entry.preprocess,
                            size=n)


def test_tflite_graph_is_fully_integer_with_uint8_io(tmp_path):
    """MobileNetV3: hard-swish, squeeze-excitation MUL, residual ADD and MEAN all in int8."""
    from quant import tflite_ptq
    from deploy.int8_stage import input_range

    source, fp32 = fp32_file("mobilenet_v3_small", "tflite")
    calib = calib_for(source)
    lo, hi = input_range(source.entry.preprocess)
    opts = tflite_ptq.make_options(io="uint8", input_range=(lo, hi))
    facts = tflite_ptq.quantize(fp32, tmp_path / "q.tflite", calib, opts, parent=source.model)
    assert facts["fully_integer"] and facts["float_ops"] == {}
    assert facts["dequantize_count"] == 0
    for op in ("HARD_SWISH", "MUL", "ADD", "MEAN"):
        assert facts["op_histogram"].get(op, 0) > 0, facts["op_histogram"]
    (inp,), (out,) = facts["inputs"], facts["outputs"]
    assert inp["dtype"] == "uint8" and out["dtype"] == "uint8"
    assert inp["scale"] == pytest.approx((hi - lo) / 255, rel=1e-5)  # pinned, not calibrated
    bc = facts["bias_correction"]
    assert not bc["unmatched"] and bc["layers"] >= 50
    assert bc["layers"] + bc["without_bias_tensor"] == len(tflite_ptq.layer_names(fp32))

    # the export stage's default, float I/O: QUANTIZE in, DEQUANTIZE out, nothing float between
    art, _ = exported("mobilenet_v3_small", "tflite", "int8")
    assert art.input.dtype == "float32" and art.extra["float_ops"] == {}
    assert art.extra["dequantize_count"] == 1 and art.extra["fully_integer"]

    # an excluded layer computes in float behind DEQUANTIZE
    first = tflite_ptq.layer_names(fp32)[0]
    e = tflite_ptq.quantize(fp32, tmp_path / "e.tflite", calib,
                            tflite_ptq.make_options(exclude=(first,)), parent=None)
    assert sum(e["float_ops"].values()) >= 1 and e["dequantize_count"] >= 2


def test_onnx_qdq_per_channel_cpu_choice_float_logits(tmp_path):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from quant import onnx_ptq
    from quant.cpu import cpu_profile, default_reduce_range

    source, fp32 = fp32_file("shufflenet_v2_x0_5", "onnx")
    calib = calib_for(source)
    facts = onnx_ptq.quantize(fp32, tmp_path / "q.onnx", calib, onnx_ptq.make_options(),
                              parent=source.model)
    choice, why = default_reduce_range()
    cpu = cpu_profile()
    assert facts["cpu"] == cpu and facts["reduce_range_reason"] == why
    assert choice == ("gemm" if cpu["x86"] and not cpu["vnni"] else False)
    model = onnx.load(str(tmp_path / "q.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == len(onnx_ptq.layer_names(fp32)) - 1  # + the classifier Gemm
    for conv in convs:  # int8 weights, one scale per output channel, no zero-point bytes
        dq = producer[conv.input[1]]
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.dtype == np.int8 and scale.shape == (w.shape[0],)
        assert len(dq.input) == 2 and len(producer[conv.input[2]].input) == 2, conv.name
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        if choice == "gemm":  # 7-bit weights only where the GEMM kernel saturates
            assert (np.abs(w).max() <= 64) == (group == 1), conv.name
    # the logits leave the graph as the last layer computed them, not re-quantized to 8 bits
    assert producer[model.graph.output[0].name].op_type != "DequantizeLinear"
    assert facts["float_outputs"] == [model.graph.output[0].name]
    assert facts["bias_correction"]["layers"] == len(onnx_ptq.layer_names(fp32))
    assert facts["zero_points_dropped"] == 2 * len(convs)
    # ...and ORT still runs every conv and the classifier as int8 kernels
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "q.onnx"), options, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    assert fused.count("QLinearConv") == len(convs) and "QGemm" in fused, sorted(set(fused))

    # per-tensor weights when asked: the 7-bit override must not bring the channel axis back
    import dataclasses

    pt = dataclasses.replace(onnx_ptq.make_options(), per_channel=False, reduce_range="gemm")
    assert not onnx_ptq.quantize(fp32, tmp_path / "t.onnx", calib, pt, parent=None)["per_channel"]
    m1 = onnx.load(str(tmp_path / "t.onnx"))
    inits1 = {i.name: numpy_helper.to_array(i) for i in m1.graph.initializer}
    prod1 = {o: n for n in m1.graph.node for o in n.output}
    for conv in (n for n in m1.graph.node if n.op_type == "Conv"):
        w, scale = (inits1[i] for i in prod1[conv.input[1]].input[:2])
        assert scale.size == 1, conv.name
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        assert (np.abs(w).max() <= 64) == (group == 1), conv.name

    # an excluded node computes in float on float inputs (no DequantizeLinear in front), and
    # those inputs still went through the ReLU in front of it: the quantizer folds a ReLU into
    # the clamp of the Quantize after it, which the excluded node no longer reads
    parent = onnx.load(str(fp32))
    fp32_producer = {o: n for n in parent.graph.node for o in n.output}
    node = next(n.name for n in parent.graph.node if n.op_type == "Conv"
                and getattr(fp32_producer.get(n.input[0]), "op_type", None) == "Relu")
    onnx_ptq.quantize(fp32, tmp_path / "e.onnx", calib, onnx_ptq.make_options(exclude=(node,)),
                      parent=source.model)
    m2 = onnx.load(str(tmp_path / "e.onnx"))
    prod2 = {o: n for n in m2.graph.node for o in n.output}
    excluded = next(n for n in m2.graph.node if n.name == node)
    assert all(prod2.get(i) is None or prod2[i].op_type != "DequantizeLinear"
               for i in excluded.input)
    m2.graph.output.append(onnx.helper.make_empty_tensor_value_info(excluded.input[0]))
    session = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    fed = session.run([excluded.input[0]], {session.get_inputs()[0].name: calib.inputs[:1]})[0]
    assert fed.min() >= 0 and fed.max() > 0


def _activation_scales(path, target) -> dict[str, float]:
    """Per-tensor activation scales of an int8 file, by tensor name (OpenVINO: the widest
    channel's step of each activation FakeQuantize, by node name)."""
    if target == "openvino":
        import openvino as ov

        from quant.openvino_graph import _fq_limits, activation_fake_quantizes

        fqs = activation_fake_quantizes(ov.Core().read_model(str(path)))
        return {fq.get_friendly_name(): float(np.max(_fq_limits(fq)[1] - _fq_limits(fq)[0]))
                / (fq.get_attributes()["levels"] - 1) for fq in fqs}
    if target == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        return {t["name"]: t["quantization"][0] for t in
                Interpreter(str(path)).get_tensor_details() if t["quantization"][0] > 0}
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and inits[n.input[1]].size == 1}


@pytest.mark.parametrize("target", ["onnx", "tflite", "openvino"])
def test_image_percentile_ranges_ignore_an_outlier_image(target, tmp_path):
    """One calibration image in 201 with 20x the values must not set any activation range (the
    default method); absolute min/max lets it, which is what the test contrasts."""
    import dataclasses

    from quant import onnx_ptq, openvino_ptq, tflite_ptq

    ptq = {"onnx": onnx_ptq, "tflite": tflite_ptq, "openvino": openvino_ptq}[target]
    source, fp32 = fp32_file("shufflenet_v2_x0_5", target)
    clean = calib_for(source, 200)
    outlier = dataclasses.replace(clean, inputs=np.concatenate([clean.inputs,
                                                                clean.inputs[:1] * 20]))

    def widest_ratio(method):
        scales = []
        for name, calib in (("clean", clean), ("outlier", outlier)):
            file = tmp_path / f"{method}-{name}{fp32.suffix}"
            options = ptq.make_options(method)
            if target != "openvino":  # (OpenVINO's correction leaves the ranges alone)
                options = dataclasses.replace(options, bias_correction=False)
            ptq.quantize(fp32, file, calib, options, parent=source.model)
            scales.append(_activation_scales(file, target))
        common = set(scales[0]) & set(scales[1])
        assert len(common) > (30 if target == "openvino" else 50)
        return max(scales[1][n] / scales[0][n] for n in common)

    assert ptq.METHODS[0] == "image-percentile"
    assert widest_ratio("image-percentile") < 1.2
    assert widest_ratio("minmax") > 5


def test_openvino_fake_quantize_and_cpu_choice(tmp_path):
    import openvino as ov

    from quant import openvino_ptq

    source, fp32 = fp32_file("mobilenet_v2", "openvino")
    facts = openvino_ptq.quantize(fp32, tmp_path / "q.xml", calib_for(source),
                                  openvino_ptq.make_options(), parent=source.model)
    assert facts["fake_quantize_count"] > 0 and not facts["fast_bias_correction"]
    # the default narrows every activation FakeQuantize NNCF wrote, then corrects the bias of
    # every convolution (MobileNetV2 has 52; this checkpoint's classifier bias is zero, and
    # OpenVINO drops an Add of zeros, so the classifier has no bias to correct)
    assert facts["method"] == "image-percentile"
    assert facts["ranges"]["fake_quantizes"] == facts["fake_quantize_count"]
    assert facts["bias_correction"]["layers"] == 52
    assert not facts["bias_correction"]["unmatched"]
    assert facts["overflow_fix"] == openvino_ptq.default_overflow_fix()[0]
    assert (tmp_path / "q.bin").stat().st_size < 0.4 * fp32.with_suffix(".bin").stat().st_size
    ov.Core().read_model(str(tmp_path / "q.xml"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # quantized again in the same process (OpenVINO's name counter has moved on): same bytes
    openvino_ptq.quantize(fp32, tmp_path / "again.xml", calib_for(source),
                          openvino_ptq.make_options(), parent=source.model)
    for suffix in (".xml", ".bin"):
        assert (tmp_path / f"q{suffix}").read_bytes() == (tmp_path / f"again{suffix}").read_bytes()


def test_openvino_squeeze_excite_weights_stored_int8(tmp_path):
    """NNCF's quantize leaves squeeze-excite blocks (conv + bias ... hard-sigmoid) alone; their
    weights must still be stored int8 (weight-only), so no layer keeps f32 weights in the file.
    The shipped CIFAR-10 MobileNetV3 has the trained SE biases NNCF's pattern looks for."""
    import openvino as ov
    import torch

    from deploy.export import ExportConfig, export, load_source
    from deploy.validate import data_dir
    from quant import openvino_ptq
    from quant.calibration import load_calibration

    torch.set_num_threads(1)
    source = load_source("mobilenet_v3_small.cifar10")
    fp32 = tmp_path / "fp32" / export(source, ExportConfig(
        target="openvino", output_dir=tmp_path / "fp32", threads=1)).file
    calib = load_calibration(data_dir() / "cifar10.zip", source.entry.preprocess, size=16)
    facts = openvino_ptq.quantize(fp32, tmp_path / "q.xml", calib, openvino_ptq.make_options(),
                                  parent=source.model)
    se = [n for n in facts["weight_only_int8"] if ".fc1/" in n or ".fc2/" in n]
    assert len(se) == len(facts["weight_only_int8"]) == 18, facts["weight_only_int8"]
    assert openvino_ptq.float_weight_layers(ov.Core().read_model(str(tmp_path / "q.xml"))) == []
    assert (tmp_path / "q.bin").stat().st_size < 0.3 * fp32.with_suffix(".bin").stat().st_size


@pytest.mark.slow
def test_openvino_fall_back_keeps_our_ranges_and_squeeze_excite_weights_int8(tmp_path):
    """--max-drop on OpenVINO (MobileNetV3, made to need float layers by calibrating on 2 images)
    re-quantizes with the same image-percentile ranges and bias correction as plain --int8; the
    layers put back in float keep f32 weights under the names of the written file; the
    squeeze-excite layers quantize skipped stay stored int8 unless the fall-back chose them."""
    import openvino as ov
    import torch

    from deploy.export import ExportConfig, export, load_source
    from deploy.validate import data_dir
    from edgebase.images import ImageSet
    from quant import openvino_ptq
    from quant.calibration import load_calibration
    from quant.sensitivity import fall_back
    from deploy.int8_stage import Int8Config, _evaluate

    torch.set_num_threads(1)
    data = data_dir() / "cifar10.zip"
    source = load_source("mobilenet_v3_small.cifar10")
    cfg = ExportConfig(target="openvino", output_dir=tmp_path / "fp32", threads=1)
    int8_cfg = Int8Config(eval_data=data, eval_limit=100, max_drop=0.0)
    fp32 = tmp_path / "fp32" / export(source, cfg).file
    calib = load_calibration(data, source.entry.preprocess, size=2)
    int8 = tmp_path / "q.xml"
    options = openvino_ptq.make_options()
    plain = openvino_ptq.quantize(fp32, int8, calib, options, parent=source.model)
    _, evaluation = _evaluate(fp32, int8, cfg.target_entry, cfg, int8_cfg,
                              ImageSet(data, split="test"), calib, source.entry.preprocess)
    record, facts, _ = fall_back(openvino_ptq, fp32, int8, calib, options, source, cfg,
                                 int8_cfg, evaluation, log=lambda line: None)
    floated = record["float_layers_in_file"]
    assert floated and len(record["ranking"]) == len(openvino_ptq.target_layers(int8)), record
    assert facts["method"] == "image-percentile" and facts["excluded"] == floated
    assert facts["ranges"]["fake_quantizes"] > 0 and facts["bias_correction"]["layers"] > 0
    assert set(facts["weight_only_int8"]) == set(plain["weight_only_int8"]) - set(floated)
    written = ov.Core().read_model(str(int8))
    assert sorted(openvino_ptq.float_weight_layers(written)) == sorted(floated)
    names = {op.get_friendly_name() for op in written.get_ordered_ops()}
    assert set(facts["weight_only_int8"]) <= names


# ---- accuracy on real weights (slow) ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "tflite", "openvino"])
def test_imported_mobilenet_v1_int8_accuracy(target, shared_data, tmp_path):
    """Google's MobileNetV1-0.25: calibrate on 200 photos, evaluate on 300 others."""
    from deploy.export import ExportConfig, export, load_source
    from deploy.int8_stage import Int8Config

    source = load_source("mobilenet_v1_x0_25", num_classes=1001,
                         weights=shared_data / "models/mobilenet_v1_0.25_224_float.tflite")
    data = shared_data / "imagenet-sample-1k.zip"
    art = export(source, ExportConfig(target=target, precision="int8", output_dir=tmp_path,
                                      threads=1),
                 Int8Config(calib=data, calib_size=200, eval_data=data, eval_limit=300))
    acc = art.extra["accuracy"]
    assert art.passed and acc["images"] == 300
    assert acc["agreement"] >= 82 and acc["top1_drop"] <= 2.5, acc
    # per-channel scales, int32 biases (and OpenVINO's XML) cost ~10-25 % on a 0.47 M-param net
    assert art.extra["size_ratio_vs_fp32"] > (2.5 if target == "openvino" else 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite", "openvino"])
def test_max_drop_falls_back_and_records(shared_data, tmp_path, target):
    from deploy.commands.export import report
    from deploy.export import ExportConfig, export, load_source
    from deploy.int8_stage import Int8Config
    from quant.cli import report_lines

    source = load_source("mobilenet_v1_x0_25", num_classes=1001,
                         weights=shared_data / "models/mobilenet_v1_0.25_224_float.tflite")
    data = shared_data / "imagenet-sample-1k.zip"
    # absolute min/max ranges: plain int8 loses top-1 on these 200 photos, so the fall-back runs
    # (TFLite's default image-percentile ranges lose none here)
    cfg = ExportConfig(target=target, precision="int8", output_dir=tmp_path, threads=1)
    int8 = Int8Config(calib=data, calib_size=100, calib_method="minmax", eval_data=data,
                      eval_limit=200, max_drop=0.0)
    try:
        art = export(source, cfg, int8)
    except Exception as e:  # the drop may be unreachable: then it is a ValidationError
        from edgebase.errors import ValidationError

        assert isinstance(e, ValidationError) and "layers in float" in str(e)
        assert list(tmp_path.glob("*.int8.failed.*"))
        return
    report(art, tmp_path)  # the export command's screen report renders
    assert any(line.startswith("  fallback:") for line in report_lines(art))
    s = art.extra["sensitivity"]
    assert s["reached"] and s["float_layers"]
    int8_pass = next(p for p in art.passes if p["name"] == "int8_ptq")
    assert s["ranking"] and s["float_layers_in_file"] == int8_pass["excluded"]
    assert art.extra["accuracy"]["top1_drop"] <= 0.0
