#!/usr/bin/env bash
# Every GPU benchmark in one go, for a lent GPU machine (README, Performance): the loop against a plain loop
# on WRN-28-10 with its MFU and one CIFAR-10-C-sized run, each method's cost at that scale, the same loop
# under torch.compile, one embedded-default run through the CLI on CUDA, each step case split into a fixed
# cost per run and a cost per epoch (bench/phases.py; its steady-state MFU at batch 256, eager and compiled),
# the epoch built up piece by piece against the plain loop (bench/loop_variants.py), and a process's first
# CIFAR-10-C-sized run against its later ones (bench/first_run.py), the curvature products against PyTorch's
# double backward on WRN-28-10 (bench/curvature.py), and the test suite on CUDA. Each part has its
# own time limit and writes its output to $OUT/<part>.txt (default folder: bench-gpu-out), so a part that
# runs over still leaves the others' figures. The last part profiles (torch.profiler, top operators by
# device time) all layers trained and 9 of 29 layers frozen against the plain loop, and auto-rgn's whole
# run against full fine-tuning's. PARTS picks parts (comma-separated; default all). The parts' limits add
# up to 27 minutes (on the H200 of 2026-11-27, phases, profile and five methods' costs took 7.9
# minutes together), so split the set over calls of at most 10 minutes. A session lent 15 minutes of device time
# in all (start-up included) re-checks the GPU targets (README, "Where the targets stand") and the suite in one call of
# about 5 minutes (2026-11-28, H200: 313 s), then the step at the recipe's size and the curvature products in one of 2:
#
#     THROUGHPUT_S=150 VARIANTS_S=90 TESTS_S=230 PARTS=throughput,variants,tests THROUGHPUT_CASES=all,figures \
#         THROUGHPUT_REPEATS=15 bash bench/gpu.sh
#
#     bash bench/gpu.sh
#     PARTS=profile bash bench/gpu.sh
#     PARTS=phases,methods METHOD_LIST=full,auto-rgn bash bench/gpu.sh
#
# Where RobustBench is not installed (the lent machines), wheels in .whl/ (robustbench, pyautoattack,
# geotorch, gdown, beautifulsoup4, soupsieve, setuptools<81) are installed into /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench-gpu-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ! python3 -c "import robustbench" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

parts=",${PARTS:-throughput,methods,compile,digits,phases,variants,first,curvature,tests,profile},"
part() {  # part NAME SECONDS COMMAND...: run one benchmark with a time limit, its output kept in $out/NAME.txt
    local name=$1 limit=$2
    shift 2
    [[ $parts == *",${name%%_*},"* ]] || return 0
    echo "== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | grep -v -e "Warning" -e "warnings.warn" -e "import pkg_resources" | tee "$out/$name.txt"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
part throughput "${THROUGHPUT_S:-180}" python3 bench/throughput.py --model wrn --device cuda \
    --cases "${THROUGHPUT_CASES:-all,frozen3,frozen9,run,evalthread,figures}" --repeats "${THROUGHPUT_REPEATS:-7}"
part methods "${METHODS_S:-180}" python3 bench/methods.py --setup python:bench.wrn_synthetic:setup --device cuda \
    --epochs 5 --repeats 1 --methods "${METHOD_LIST:-all}"
part compile "${COMPILE_S:-120}" python3 bench/throughput.py --model wrn --device cuda --repeats 5 \
    --cases all,figures --compile
part digits "${DIGITS_S:-60}" python3 -m autoft_core finetune --setup digits --shift output --method auto-rgn \
    --device cuda --store "$out/digits.sqlite"
part phases "${PHASES_S:-120}" python3 bench/phases.py --model wrn --device cuda --repeats 3 --phases
part phases_256 "${PHASES_S:-120}" python3 bench/phases.py --model wrn --device cuda --cases all --batch 256 \
    --images 2048 --repeats 3
part phases_compiled "${PHASES_S:-120}" env AUTOFT_COMPILE=1 python3 bench/phases.py --model wrn --device cuda \
    --cases all --batch 256 --images 2048 --repeats 3
part variants "${VARIANTS_S:-90}" python3 bench/loop_variants.py --device cuda --repeats 5
part first_run "${FIRST_S:-60}" python3 bench/first_run.py --device cuda --runs 2
part curvature "${CURVATURE_S:-90}" python3 bench/curvature.py --model wrn --device cuda --repeats 5
part tests "${TESTS_S:-300}" python3 -m pytest -q -p no:cacheprovider -rfE --tb=line -W ignore \
    --ignore tests/test_dashboard_apptest.py --ignore tests/test_dashboard_browser.py --ignore tests/test_ui_export.py
part profile_steps "${PROFILE_S:-90}" python3 bench/throughput.py --model wrn --device cuda --cases all,frozen3 \
    --repeats 1 --profile
part profile_methods "${PROFILE_S:-90}" python3 bench/methods.py --setup python:bench.wrn_synthetic:setup \
    --device cuda --methods full,auto-rgn --epochs 5 --repeats 1 --profile
echo "== done $(date -u +%H:%M:%S)"
