# RED-Net in stock Caffe.  `make help` lists the targets (from the `##` comments).
# Each area's targets live in mk/<area>.mk, included below.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY      := bin/python
# One shell word, whatever a make variable holds (spaces, quotes, ;, $(...)): every value
# that reaches a recipe's shell goes through it, as $(call q,$(VAR)).
q = '$(subst ','\'',$(1))'
# ... and each word of a list (RUNS="a b"), one shell word each
qw = $(foreach w,$(1),$(call q,$(w)))
# (CAFFE=stock|fast is read by bin/caffe and bin/python: which Caffe build; docs/training.md)
# DATASETS=<folder> (default data/datasets): the benchmark images; Set5, Set14, Set12 and the
# denoising extras ship in data/images, the BSD sets are fetched when a command needs them
export DATASETS

# the stamp that says set-up is complete (bin/python and bin/caffe work)
SETUP_STAMP := .caffe/env

.PHONY: help setup test test-slow clean

help: ## show the make targets and what they do
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z0-9_.%-]+:.*?## / {printf "  \033[36mmake %-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## install everything from nothing: Debian packages, .venv, Caffe stock + batch-parallel (CAFFE_HOME=... to use yours, FAST=0)
	@bash tools/setup.sh

$(SETUP_STAMP):
	@bash tools/setup.sh

test: $(SETUP_STAMP) ## run the test suite (fast; DATASETS=... for the benchmark images)
	$(PY) -m pytest -q tests

test-slow: $(SETUP_STAMP) ## run the test suite including the slow end-to-end tests
	$(PY) -m pytest -q --runslow tests

clean: ## remove generated databases, runs and results (keeps .venv and the Caffe build)
	rm -rf data/db runs results

-include mk/*.mk
