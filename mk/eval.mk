# Evaluation (docs/evaluation.md): Tables 1-7 with pycaffe, and restoring one's own images.
#
#   make tables                      bicubic + every RED model found (models/, runs/); minutes
#   make tables BM3D=1               also BM3D (PyPI bm3d, installed on demand; ~1-10 s/image, cached)
#   make tables NO_ENSEMBLE_TABLES=2   (the 8-orientation ensemble everywhere but Table 2's 200 images)
#   make tables ENSEMBLE=0 TABLES=3-5 SR_PROTOCOL=srcnn BSD200_SCALE=0.5 LIMIT=5 SEED=0 MAX_MEMORY=2048
#   make restore IN=noisy.png OUT=clean.png TASK=denoise SIGMA=30 [MODEL=runs/<name>]
#
# `tables` always runs: every cell is cached in results/per_image/ with a record of what made it
# (model and deploy files by sha256, options), so a run with nothing new is cheap and one new model only
# computes its own cells.

TABLES       ?= 1-7
ENSEMBLE     ?= 1
SR_PROTOCOL  ?= authors
BSD200_SCALE ?= 0.5
BM3D         ?= 0
LIMIT        ?=
SEED         ?= 0
MAX_MEMORY   ?= 2048

BM3D_STAMP := .venv/.bm3d-installed

TABLES_ARGS := --tables $(call q,$(TABLES)) --sr-protocol $(call q,$(SR_PROTOCOL)) --bsd200-scale $(call q,$(BSD200_SCALE)) --seed $(call q,$(SEED)) --max-memory $(call q,$(MAX_MEMORY)) \
	$(if $(filter 0,$(ENSEMBLE)),--no-ensemble) $(if $(filter 1,$(BM3D)),--bm3d) $(if $(LIMIT),--limit $(call q,$(LIMIT))) \
	$(if $(NO_ENSEMBLE_TABLES),--no-ensemble-tables $(call q,$(NO_ENSEMBLE_TABLES)))

.PHONY: tables tables-quick restore

tables: $(SETUP_STAMP) $(if $(filter 1,$(BM3D)),$(BM3D_STAMP)) ## Tables 1-7, paper vs ours -> results/tables.{md,csv} + results/per_image/ [BM3D=1 ENSEMBLE=0 TABLES=1,3-5 LIMIT=N]
	$(PY) -m rednet tables $(TABLES_ARGS)

tables-quick: $(SETUP_STAMP) ## a quick look: tables without the 8-orientation ensemble on the first 5 images of each set -> results/quick/
	$(PY) -m rednet tables $(TABLES_ARGS) --no-ensemble --limit $(call q,$(or $(LIMIT),5)) --out results/quick

# the optional BM3D baseline: a separate, pinned requirements file (non-commercial licence)
$(BM3D_STAMP): requirements-bm3d.txt | $(SETUP_STAMP)
	.venv/bin/pip install -r requirements-bm3d.txt
	@touch $@

restore: $(SETUP_STAMP) ## restore one's images: IN=in.png|folder OUT=out.png|folder TASK=denoise SIGMA=30 | TASK=sr SCALE=3 [MODEL=]
	@test -n $(call q,$(IN)) -a -n $(call q,$(OUT)) -a -n $(call q,$(TASK)) || { echo "make restore: give IN=, OUT= and TASK= (denoise with SIGMA=, sr with SCALE=)" >&2; exit 2; }
	$(PY) -m rednet restore --task $(call q,$(TASK)) $(if $(SIGMA),--sigma $(call q,$(SIGMA))) $(if $(SCALE),--scale $(call q,$(SCALE))) \
		$(if $(MODEL),--model $(call q,$(MODEL))) $(if $(filter 0,$(ENSEMBLE)),--no-ensemble) -- $(call q,$(IN)) $(call q,$(OUT))
