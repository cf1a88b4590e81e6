"""Where a QLoRA training step spends its time (cProfile of the Trainer loop) - issue 4 lever hunting."""
import cProfile, json, pstats, sys, tempfile
from qlora_helpers.bench import make_random_model_dir, run_arm
from qlora_helpers.config import make_config
model = str(make_random_model_dir(".carry/bert-base-shape", tempfile.mkdtemp()))
settings = dict(model=model, dataset=".carry/data/imdb_20k.csv.gz", max_samples=4000, max_steps=30,
                output_dir=tempfile.mkdtemp() + "/run", report_to="none", overwrite=True, **json.loads(sys.argv[1]))
cfg = make_config("full", **settings)
prof = cProfile.Profile()
prof.enable()
rec = run_arm("qlora", cfg, 5)
prof.disable()
print("RECORD", rec["samples_per_second"], rec["peak_allocated_mb"])
st = pstats.Stats(prof); st.sort_stats("tottime").print_stats(25)
