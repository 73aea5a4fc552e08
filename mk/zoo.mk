# The model zoo (docs/zoo.md): models/<name>/ holds a trained model's weights, its deploy net
# and its card (readme.md); tools/rednet/zoo.py.  `make tables`, `restore` and `demo` find it.
#
#   make zoo-export RUN=red10_denoise-s30 [NAME=red10_denoise-s30]   a run's newest snapshot -> models/<NAME>/
#   make zoo-export RUN=red30_denoise-mixed ZOO_ROOT=checkpoints   a model short of its budget -> checkpoints/<NAME>/
#                         (kept in git so that a lost run continues with FROM_MODEL=checkpoints/<NAME>;
#                         restore, tables and the zoo tests search models/ only)
#   make zoo-results      Tables 1-7 from the shipped models only (results/zoo/) -> docs/results/, their cells
#                         into the cards, and the ensemble's gain on the 14 images and Set5 (Tables 1, 3 once
#                         more without it); only the default evaluation writes those: TABLES=, LIMIT=,
#                         ENSEMBLE=0 ... are refused before anything is computed (make tables takes any)
#   make zoo-verify       every card against its files (sha1, deploy net)

# The 8-orientation ensemble in every table (RED10's BSD200 cell: 2 min 49 s on the AMD EPYC,
# docs/zoo.md). ZOO_NO_ENSEMBLE=2 (a table list) computes those tables with one forward pass;
# the tables say which cells are without it.
ZOO_NO_ENSEMBLE ?=

.PHONY: zoo-export zoo-results zoo-verify

zoo-export: $(SETUP_STAMP) ## copy a run's newest snapshot into models/<NAME>/ with its card, curves and sample: RUN=<name> [NAME=] [ZOO_ROOT=checkpoints]
	@test -n $(call q,$(RUN)) || { echo "make zoo-export: give RUN=<a run folder name under runs/>" >&2; exit 2; }
	$(PY) -m rednet zoo export --run $(call q,$(RUN)) $(if $(NAME),--name $(call q,$(NAME))) $(if $(ZOO_ROOT),--root $(call q,$(ZOO_ROOT)))

zoo-results: $(SETUP_STAMP) ## Tables 1-7 of the shipped models -> docs/results/tables.{md,csv}; cells into each card [ZOO_NO_ENSEMBLE=2: Table 2 one pass]
	$(PY) -m rednet zoo-results $(TABLES_ARGS) $(if $(ZOO_NO_ENSEMBLE),--no-ensemble-tables $(call q,$(ZOO_NO_ENSEMBLE)))

zoo-verify: $(SETUP_STAMP) ## check every shipped model's card against its files (sha1, deploy net, shapes)
	$(PY) -m rednet zoo verify
