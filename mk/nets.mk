# Nets and solvers (docs/nets.md): rendered from prototxt_templates/ by tools/rednet/netgen.py.
# The generated files are committed; they are real targets that depend on the templates and
# the generator, so `make nets` re-renders only after one of those changed.

NETGEN_DEPS := $(wildcard prototxt_templates/*.j2) tools/rednet/netgen.py tools/rednet/tasks.py
# every file `gen` writes (asks the generator itself; needs only Jinja2 from .venv)
NET_FILES := $(shell PYTHONPATH=tools .venv/bin/python -m rednet.netgen --list 2>/dev/null)
ifeq ($(strip $(NET_FILES)),)
NET_FILES := $(shell find gen solvers -name '*.prototxt' 2>/dev/null)
endif

.PHONY: nets nets-check

nets: $(NET_FILES) ## render gen/<net>/{deploy,<task>/train,<task>/test}.prototxt and solvers/ from the templates

# One run renders them all (only changed files are rewritten; touch marks the rest fresh).
$(NET_FILES) &: $(NETGEN_DEPS)
	$(PY) -m rednet gen
	@touch $(NET_FILES)

nets-check: ## fail if gen/ or solvers/ differ from what the templates render
	$(PY) -m rednet gen --check
