"""The model card's app sections for a bundle's ``.tflite`` files: Android (Kotlin, LiteRT
Interpreter, and the Task library when the file carries metadata it can read) and iOS (Swift,
TensorFlowLiteSwift) -- the capability table's ``BundleHooks.app_guide`` of the tflite target.

Rendered from the bundle manifest's entries only: input layout, dtype and quantization of the
file an app should start from (fp32 if there is one, else the first).
"""
from __future__ import annotations

from typing import Any, Sequence

from edgebase.tflite_bundle import PASS


def render(m: dict[str, Any], entries: Sequence[dict[str, Any]]) -> str:
    """Android and iOS code for the file a phone app should start from."""
    if not entries:
        return ""
    model = next((x for x in entries if x["precision"] == "fp32"), entries[0])
    return _android(m, model).strip("\n") + "\n\n" + _ios(m, model).strip("\n")


def _int_range(t: dict[str, Any]) -> tuple[int, int]:
    """The clamp range of a quantized tensor's dtype (uint8 inputs are what mobile apps feed)."""
    return (0, 255) if t.get("dtype") == "uint8" else (-128, 127)


def _swift_int(t: dict[str, Any]) -> str:
    return "UInt8" if t.get("dtype") == "uint8" else "Int8"


def _android(m: dict[str, Any], model: dict[str, Any]) -> str:
    p, t, out = m["preprocess"], model["input"], model["outputs"][0]
    name, size, n = model["path"], p["crop"], m.get("num_classes", out["shape"][-1])
    quant = t.get("scale") is not None
    nchw = t.get("layout") == "NCHW"
    lo, hi = _int_range(t)
    put = (f"input.put(maxOf({lo}, minOf({hi}, round(v / {t['scale']:.9g}f).toInt() + "
           f"({t['zero_point']}))).toByte())" if quant else "input.putFloat(v)")
    order = ("for (c in 0 until 3) for (p in px) {  // NCHW: all R, then all G, then all B"
             if nchw else "for (p in px) for (c in 0 until 3) {  // NHWC: R, G, B of each pixel")
    out_decl = (f"Array(1) {{ ByteArray({n}) }}" if out.get("scale") is not None
                else f"Array(1) {{ FloatArray({n}) }}")
    q_out = "(out[0][i].toInt() and 0xFF)" if out.get("dtype") == "uint8" else "out[0][i]"
    score = (f"({q_out} - ({out['zero_point']})) * {out['scale']:.9g}f"
             if out.get("scale") is not None else "out[0][i]")
    code = f"""## Android (Kotlin, LiteRT Interpreter)

Copy `{name}` and `{m['labels']}` into `app/src/main/assets/` (keep them uncompressed:
`androidResources {{ noCompress += "tflite" }}`) and add `implementation("com.google.ai.edge.litert:litert:1.4.0")`.

```kotlin
import android.content.Context
import android.graphics.Bitmap
import org.tensorflow.lite.Interpreter
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel
import kotlin.math.round

class Classifier(context: Context) {{
    private val mean = floatArrayOf({', '.join(f'{x:g}f' for x in p['mean'])})
    private val std = floatArrayOf({', '.join(f'{x:g}f' for x in p['std'])})
    private val labels = context.assets.open("{m['labels']}").bufferedReader().readLines()
    private val interpreter = context.assets.openFd("{name}").use {{ fd ->
        val model = FileInputStream(fd.fileDescriptor).channel
            .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
        Interpreter(model, Interpreter.Options().setNumThreads(2))
    }}

    fun classify(bitmap: Bitmap): Pair<String, Float> {{
        // shorter side -> {p['resize']} px, then the centre {size} x {size}
        val short = minOf(bitmap.width, bitmap.height)
        val w = {p['resize']} * bitmap.width / short
        val h = {p['resize']} * bitmap.height / short
        val scaled = Bitmap.createScaledBitmap(bitmap, w, h, true)
        val crop = Bitmap.createBitmap(scaled, Math.rint((w - {size}) / 2.0).toInt(),
                                       Math.rint((h - {size}) / 2.0).toInt(), {size}, {size})
        val px = IntArray({size} * {size})
        crop.getPixels(px, 0, {size}, 0, 0, {size}, {size})
        val input = ByteBuffer.allocateDirect({'' if quant else '4 * '}3 * {size} * {size}).order(ByteOrder.nativeOrder())
        {order}
            val v = (((p shr (16 - 8 * c)) and 0xFF) / 255f - mean[c]) / std[c]
            {put}
        }}
        input.rewind()
        val out = {out_decl}
        interpreter.run(input, out)
        val i = (0 until {n}).maxBy {{ {score.replace('[i]', '[it]')} }}
        return labels[i] to {score}
    }}
}}
```
"""
    if model.get(PASS) and not nchw and t["dtype"] in ("float32", "uint8"):
        code += f"""
The file carries TFLite metadata (normalization, labels), so the Task library can read it
directly (`implementation("org.tensorflow:tensorflow-lite-task-vision:0.4.4")`); it resizes the
whole image to {size} x {size} itself, so crop the centre first to match the preprocessing above:

```kotlin
// centreCrop: the bitmap after the resize and centre crop of classify() above
val classifier = org.tensorflow.lite.task.vision.classifier.ImageClassifier.createFromFile(context, "{name}")
val top = classifier.classify(org.tensorflow.lite.support.image.TensorImage.fromBitmap(centreCrop))[0].categories[0]
```
"""
    elif model.get(PASS):
        code += (f"\nThe file carries TFLite metadata (normalization, labels packed inside), but its "
                 f"input is {t['dtype']} {t.get('layout')}: the Task library's ImageClassifier takes only "
                 f"NHWC float32/uint8 inputs, so use the Interpreter code above.\n")
    return code


def _ios(m: dict[str, Any], model: dict[str, Any]) -> str:
    p, t, out = m["preprocess"], model["input"], model["outputs"][0]
    size, stem = p["crop"], model["path"].rsplit(".", 1)[0]
    quant = t.get("scale") is not None
    index = "c * plane + i" if t.get("layout") == "NCHW" else "i * 3 + c"
    if quant:
        kind, (lo, hi) = _swift_int(t), _int_range(t)
        fill = (f"var x = [{kind}](repeating: 0, count: 3 * plane)\n"
                f"for i in 0..<plane {{ for c in 0..<3 {{\n"
                f"    let v = (Float(rgb[i * 3 + c]) / 255 - mean[c]) / std[c]\n"
                f"    x[{index}] = {kind}(max({lo}, min({hi}, (v / {t['scale']:.9g}).rounded(.toNearestOrEven) + {t['zero_point']})))\n"
                f"}} }}\n"
                f"try interpreter.copy(Data(bytes: x, count: x.count), toInputAt: 0)")
    else:
        fill = (f"var x = [Float](repeating: 0, count: 3 * plane)\n"
                f"for i in 0..<plane {{ for c in 0..<3 {{\n"
                f"    x[{index}] = (Float(rgb[i * 3 + c]) / 255 - mean[c]) / std[c]\n"
                f"}} }}\n"
                f"try interpreter.copy(Data(bytes: x, count: x.count * MemoryLayout<Float>.stride), toInputAt: 0)")
    if out.get("scale") is not None:
        read = (f"let q = output.data.withUnsafeBytes {{ Array($0.bindMemory(to: {_swift_int(out)}.self)) }}\n"
                f"let scores = q.map {{ (Float($0) - Float({out['zero_point']})) * Float({out['scale']:.9g}) }}")
    else:
        read = "let scores = output.data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }"
    return f"""## iOS (Swift, TensorFlowLiteSwift)

Add `pod 'TensorFlowLiteSwift'` and put `{model['path']}` and `{m['labels']}` in the app bundle.
`rgb` holds the {size} x {size} centre crop (after the resize above) as row-major R, G, B bytes.

```swift
import TensorFlowLite

let mean: [Float] = [{', '.join(f'{x:g}' for x in p['mean'])}]
let std: [Float] = [{', '.join(f'{x:g}' for x in p['std'])}]
let plane = {size} * {size}
var options = Interpreter.Options()
options.threadCount = 2
let interpreter = try Interpreter(
    modelPath: Bundle.main.path(forResource: "{stem}", ofType: "tflite")!, options: options)
try interpreter.allocateTensors()
{fill}
try interpreter.invoke()
let output = try interpreter.output(at: 0)
{read}
let labels = try String(contentsOfFile: Bundle.main.path(forResource: "labels", ofType: "txt")!)
    .split(separator: "\\n")
let best = scores.indices.max {{ scores[$0] < scores[$1] }}!
print(labels[best], scores[best])
```
"""
