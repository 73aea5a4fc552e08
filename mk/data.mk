# Benchmark images and HDF5 patch databases (docs/data.md): tools/rednet/{datasets,patches}.py.
# `make data` always runs `rednet data`: the database's own config.json (the configuration,
# FORMAT, the hash of the code that makes the pairs and of the manifests) is the one thing
# that says whether it is up to date; a matching, complete database returns at once, anything
# else is rebuilt or finished (resuming from complete shards).

# BSDS300_URL= / BSDS500_URL= (a mirror) reach every command through the environment: a
# command that needs a missing BSD set fetches it from there (Berkeley's when unset).
export BSDS300_URL BSDS500_URL

# DB_DIR (default data/db) is where databases go; the nets read data/db/<task>/{train,val}.txt.
# TASK=denoise SIGMA=30 | SIGMA=mixed | TASK=sr SCALE=3 | SCALE=mixed | TASK=<task name>
ifeq ($(TASK),denoise)
DATA_TASK := $(if $(filter mixed,$(SIGMA)),denoise-mixed,denoise-s$(SIGMA))
else ifeq ($(TASK),sr)
DATA_TASK := $(if $(filter mixed,$(SCALE)),sr-mixed,sr-x$(SCALE))
else
DATA_TASK := $(TASK)
endif
# optional knobs (recorded in data/db/<task>/config.json by the build; a change rebuilds)
DATA_ARGS := $(if $(STRIDE),--stride $(call q,$(STRIDE))) $(if $(NOISE_REPEATS),--noise-repeats $(call q,$(NOISE_REPEATS))) \
             $(if $(SEED),--seed $(call q,$(SEED))) $(if $(MAX_IMAGES),--max-images $(call q,$(MAX_IMAGES))) \
             $(if $(MAX_PATCHES),--max-patches $(call q,$(MAX_PATCHES))) $(if $(SHARD_SIZE),--shard-size $(call q,$(SHARD_SIZE))) \
             $(if $(AUGMENT),--augment $(call q,$(AUGMENT)))
DATA_WORKERS ?= 2
DB_DIR ?= data/db
ifneq ($(filter data,$(MAKECMDGOALS)),)
ifeq ($(strip $(DATA_TASK)),)
$(error make data needs TASK=denoise SIGMA=<sigma|mixed>, TASK=sr SCALE=<2|3|4|mixed> or TASK=<task name>)
endif
endif

.PHONY: data datasets datasets-verify bench-data

ifeq ($(PREVIEW),1)
data: ## build data/db/<task>/{train,val}.txt: TASK=denoise SIGMA=30|mixed, TASK=sr SCALE=2..4|mixed; PREVIEW=1 counts only
	$(PY) -m rednet data --task $(call q,$(DATA_TASK)) --out $(call q,$(DB_DIR)/$(DATA_TASK)) --preview $(DATA_ARGS)
else
data:
	$(PY) -m rednet data --task $(call q,$(DATA_TASK)) --out $(call q,$(DB_DIR)/$(DATA_TASK)) --workers $(call q,$(DATA_WORKERS)) $(DATA_ARGS)
endif

datasets: ## fetch BSD300, BSD200 (Berkeley's archives) and BSD100 into DATASETS (default data/datasets), verified per file
	$(PY) -m rednet datasets download

datasets-verify: ## check every benchmark image in $(DATASETS) against data/manifests (sha256)
	$(PY) -m rednet datasets verify

bench-data: ## build the full ~0.5M-patch sigma=30 db in data/cache, print patches/s, bytes, peak RSS, delete it
	$(PY) -m rednet data --task denoise-s30 --bench --workers $(call q,$(DATA_WORKERS))
