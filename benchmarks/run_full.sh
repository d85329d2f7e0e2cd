#!/usr/bin/env bash
# Regenerates BENCHMARKS.md (run from anywhere; `make benchmark` calls it):
#   1. every zoo *.cifar10 model with trained weights x all targets x fp32,int8 on the
#      CIFAR-10 test set (10,000 images; LIMIT=N for a class-balanced subset),
#   2. the ImageNet-shaped zoo defaults at 224x224, fp32, latency only (random-init weights),
#   2b. (cifar-et) the same checkpoints on ExecuTorch (XNNPACK) beside LiteRT, fp32/int8,
#      all 10,000 test images, into results/cifar10/executorch_vs_litert.json,
#   3. (zoo-int8) fp32 vs int8 at 224x224 per target, latency only, into a file named by the
#      CPU kind (results/zoo224_int8/<vendor-isa>.json), so kinds stand side by side.
# PARTS="cifar cifar-et zoo zoo-int8" selects the parts to re-run; a part not re-run keeps its last JSON.
# Latency is only meaningful on an otherwise idle machine: each report records the load.
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RESULTS=${RESULTS:-benchmarks/results}
WORK=${WORK:-out/benchmark}
PARTS=${PARTS-cifar cifar-et zoo zoo-int8}  # PARTS= (empty): only rebuild BENCHMARKS.md from the JSON
LIMIT=${LIMIT:-}
THREADS=${THREADS:-1,2}
ZOO_MODELS=${ZOO_MODELS:-squeezenet1_1 mobilenet_v1_x0_5 mobilenet_v2 mobilenet_v3_small \
mobilenet_v3_large shufflenet_v1_g3 shufflenet_v2_x0_5 shufflenet_v2_x1_0}
status=0

trained=$($BIN/python -c 'from zoo import get_entry, list_models
print(" ".join(n for n in list_models("*.cifar10") if get_entry(n).trained))')
untrained=$($BIN/python -c 'from zoo import get_entry, list_models
print(" ".join(n for n in list_models("*.cifar10") if not get_entry(n).trained))')

for part in $PARTS; do
  case $part in
    cifar)
      if [ -z "$trained" ]; then
        echo "no *.cifar10 model has trained weights yet; skipping the CIFAR-10 part" >&2
        continue
      fi
      # shellcheck disable=SC2086  # word splitting of the model list is intended
      # int8 calibrates on the training split (quant.calibration's default split)
      $BIN/deploy benchmark $trained --precisions fp32,int8 --threads "$THREADS" \
        --calib "${CALIB:-../shared/data/cifar10.zip}" \
        ${LIMIT:+--limit "$LIMIT"} --output "$WORK/cifar10" --json "$RESULTS/cifar10/benchmark.json" \
        --title "CIFAR-10 checkpoints" || status=1
      # where the int8 files' bytes go (parses the files just written; nothing runs)
      $BIN/python benchmarks/int8_size.py "$WORK"/cifar10/*/ || status=1 ;;
    cifar-et)
      [ -n "$trained" ] || continue
      # shellcheck disable=SC2086
      $BIN/deploy benchmark $trained --target executorch,tflite --precisions fp32,int8 \
        --threads "$THREADS" --calib "${CALIB:-../shared/data/cifar10.zip}" \
        ${LIMIT:+--limit "$LIMIT"} --output "$WORK/cifar10_et" \
        --json "$RESULTS/cifar10/executorch_vs_litert.json" \
        --title "CIFAR-10 checkpoints: ExecuTorch vs LiteRT" || status=1 ;;
    zoo)
      # shellcheck disable=SC2086
      $BIN/deploy benchmark $ZOO_MODELS --precisions fp32 --threads "$THREADS" --no-eval \
        --runs 30 --warmup 5 --output "$WORK/zoo224" --json "$RESULTS/zoo224/benchmark.json" \
        --title "Zoo at 224x224 (latency)" || status=1 ;;
    zoo-int8)
      # random-init weights calibrated on real photos: the int8 graph and kernels are what
      # a trained net gets, so latency holds; accuracy is not measured (--no-eval)
      tag=$($BIN/python -c 'from device_runners.sysinfo import cpu_tag; print(cpu_tag())')
      # shellcheck disable=SC2086
      $BIN/deploy benchmark ${ZOO_INT8_MODELS:-mobilenet_v2 shufflenet_v2_x1_0 squeezenet1_1 mobilenet_v3_small} \
        --precisions fp32,int8 --threads "$THREADS" --no-eval --calib ../shared/data/imagenet-sample-1k.zip \
        --runs 30 --warmup 5 --output "$WORK/zoo224_int8" --json "$RESULTS/zoo224_int8/$tag.json" \
        --title "Zoo at 224x224: fp32 vs int8 on $tag (latency)" || status=1 ;;
    *) echo "unknown part $part (valid: cifar cifar-et zoo zoo-int8)" >&2; exit 2 ;;
  esac
done

args=(BENCHMARKS.md --intro benchmarks/intro.md)
cifar_title="CIFAR-10 checkpoints: all targets x fp32/int8 on the CIFAR-10 test set"
zoo_title="Zoo defaults at 224x224: latency only (random-init weights)"
if [ -f "$RESULTS/cifar10/benchmark.json" ]; then
  args+=(--section "$cifar_title" "$RESULTS/cifar10/benchmark.json")
  [ -n "$untrained" ] && args+=(--note "$cifar_title" "Without trained weights in the zoo when this file was generated: $untrained")
  [ -n "$LIMIT" ] && args+=(--note "$cifar_title" "Reduced run: $LIMIT class-balanced test images, not the full 10,000.")
fi
if [ ! -f "$RESULTS/cifar10/benchmark.json" ]; then
  args+=(--text "$cifar_title" "Not measured yet: no *.cifar10 model had trained weights in the zoo when this file was generated ($(date -u '+%Y-%m-%d %H:%M UTC')). Untrained: $untrained. Re-run \`PARTS=cifar make benchmark\` once they are shipped.")
fi
et_title="CIFAR-10 checkpoints: ExecuTorch (XNNPACK) vs LiteRT, fp32/int8 on the CIFAR-10 test set"
if [ -f "$RESULTS/cifar10/executorch_vs_litert.json" ]; then
  args+=(--section "$et_title" "$RESULTS/cifar10/executorch_vs_litert.json")
  args+=(--note "$et_title" "ExecuTorch int8 is PT2E quantization lowered to XNNPACK; LiteRT int8 is ai-edge-quantizer's full-integer graph; both calibrated on the CIFAR-10 training split.")
fi
if [ -f "$RESULTS/zoo224/benchmark.json" ]; then
  args+=(--section "$zoo_title" "$RESULTS/zoo224/benchmark.json")
  args+=(--note "$zoo_title" "Random-init weights: the accuracy columns are not measured; latency does not depend on the weight values.")
fi
for f in "$RESULTS"/zoo224_int8/*.json; do
  [ -f "$f" ] || continue
  kind=$(basename "$f" .json)
  args+=(--section "Zoo at 224x224: fp32 vs int8 on $kind (latency)" "$f")
done
$BIN/python -m deploy.benchmark_report "${args[@]}" || status=1
echo "wrote BENCHMARKS.md" >&2
exit $status
