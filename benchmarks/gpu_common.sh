# Sourced by the GPU benchmark scripts (bash benchmarks/NAME.sh on the lent machine, from the project root):
# the environment every run gets, the machine's facts, and one training run of the command line.
export PYTHONPATH=$PWD/.carry/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1  # NVLink multicast stays off

machine_facts() {  # GPU, driver and the library versions, one line each
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU"
  python3 -c "import torch, transformers, peft, bitsandbytes as b, accelerate as a; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__, 'accelerate', a.__version__)"
}

# train_run NAME "FLAGS" LAUNCHER... : `LAUNCHER ENTRY train $COMMON FLAGS` into $D/NAME; its metrics.json is
# copied to $R/NAME.metrics.json and its speed printed. ENTRY is "-m qlora_helpers" unless set (a script path);
# with TARBALL set, $R is packed into it after every run, so a call cut off at its time limit returns what finished.
train_run() {
  local name=$1 flags=$2; shift 2; local t0=$(date +%s)
  "$@" ${ENTRY:--m qlora_helpers} train $COMMON $flags --output-dir $D/$name --plots-dir $D/$name-plots \
    > $D/$name.out 2> $D/$name.err
  echo "$name: rc=$? $(( $(date +%s) - t0 )) s"; grep -h "^attention:" $D/$name.out | head -1
  cp $D/$name/metrics.json $R/$name.metrics.json 2>/dev/null || tail -5 $D/$name.err
  python3 -c "import json; m=json.load(open('$R/$name.metrics.json')); print('   ', m.get('train_step_samples_per_second'), 'samples/s', m.get('train_step_ms'), m.get('test_accuracy'))" 2>/dev/null
  [ -n "${TARBALL:-}" ] && tar czf $TARBALL -C $D results
  return 0
}
