# The model zoo (docs/zoo.md): models/<name>/ holds a trained model's weights, its deploy net
# and its card (readme.md); tools/rednet/zoo.py.  `make tables`, `restore` and `demo` find it.
#
#   make zoo-export RUN=red10_denoise-s30 [NAME=red10_denoise-s30]   a run's newest snapshot -> models/<NAME>/
#   make zoo-export RUN=red30_denoise-mixed ZOO_ROOT=checkpoints   a model short of its budget -> checkpoints/<NAME>/
#                         (kept in git so that a lost run continues with FROM_MODEL=checkpoints/<NAME>;
#                         restore, tables and the zoo tests search models/ only)
#   make zoo-results      Tables 1-7 from the shipped models only -> docs/results/, their cells into the cards,
#                         and the ensemble's gain on the 14 images and Set5 (Tables 1, 3 once more without it)
#   make zoo-verify       every card against its files (sha1, deploy net)

ZOO_RESULTS := results/zoo
# The 8-orientation ensemble in every table (RED10's BSD200 cell: 2 min 49 s on the AMD EPYC,
# docs/zoo.md). ZOO_NO_ENSEMBLE=2 (a table list) computes those tables with one forward pass;
# the tables say which cells are without it.
ZOO_NO_ENSEMBLE ?=

.PHONY: zoo-export zoo-results zoo-verify

zoo-export: $(SETUP_STAMP) ## copy a run's newest snapshot into models/<NAME>/ with its card, curves and sample: RUN=<name> [NAME=] [ZOO_ROOT=checkpoints]
	@test -n "$(RUN)" || { echo "make zoo-export: give RUN=<a run folder name under runs/>" >&2; exit 2; }
	$(PY) -m rednet zoo export --run '$(RUN)' $(if $(NAME),--name '$(NAME)') $(if $(ZOO_ROOT),--root '$(ZOO_ROOT)')

zoo-results: $(SETUP_STAMP) ## Tables 1-7 of the shipped models -> docs/results/tables.{md,csv}; cells into each card [ENSEMBLE=0 ZOO_NO_ENSEMBLE=2: Table 2 one pass]
	$(PY) -m rednet tables $(TABLES_ARGS) $(if $(ZOO_NO_ENSEMBLE),--no-ensemble-tables $(ZOO_NO_ENSEMBLE)) \
		--zoo-only --out $(ZOO_RESULTS)
	@mkdir -p docs/results
	cp $(ZOO_RESULTS)/tables.md $(ZOO_RESULTS)/tables.csv docs/results/
	$(PY) -m rednet zoo cells $(ZOO_RESULTS)
	$(PY) -m rednet tables $(filter-out --tables $(TABLES) --no-ensemble,$(TABLES_ARGS)) --tables 1,3 --no-ensemble \
		--zoo-only --out $(ZOO_RESULTS)-single
	$(PY) -m rednet zoo gain $(ZOO_RESULTS) --single $(ZOO_RESULTS)-single --dest docs/results/ensemble_gain

zoo-verify: $(SETUP_STAMP) ## check every shipped model's card against its files (sha1, deploy net, shapes)
	$(PY) -m rednet zoo verify
