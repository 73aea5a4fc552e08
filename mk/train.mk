# Training, loss curves, the benchmark and the demo (docs/training.md):
# tools/rednet/{train,logparse,bench,demo}.py.  Training runs bin/caffe from the repository
# root (the batch-parallel build where built; CAFFE=stock for the stock one); every run lives
# in runs/<name>/ and resumes when started again.
#
#   make train NET=red30 TASK=denoise SIGMA=30 [ITERS=100000] [RUN=name] [RESUME=1]
#   make train NET=red20 TASK=sr SCALE=3
#   make train NET=red30 TASK=denoise SIGMA=30 BLAS_CORE=auto   # let OpenBLAS pick its AVX-512 kernels
#   make train NET=red10 TASK=denoise SIGMA=30 FROM_MODEL=models/red10_denoise-s30   # run folder lost:
#                                             continue from the zoo's weights at their iteration
#                                             (Adam's moments estimated from MOMENT_BATCHES=100 batches)
#   make train NET=red30 TASK=sr SCALE=mixed RECIPE=step   # a learning-rate recipe (docs/recipe.md):
#                                             paper (default) | step | finetune; LR= LR_STEPS= LR_GAMMA= BATCH=
#                                             INIT=xavier|msra BIAS_LR= CLIP= change it
#   make curves [RUNS="red10_denoise-s30 red20_denoise-s30"]

TRAIN_ARGS = $(if $(NET),--net $(call q,$(NET))) $(if $(TASK),--task $(call q,$(TASK))) $(if $(SIGMA),--sigma $(call q,$(SIGMA))) \
             $(if $(SCALE),--scale $(call q,$(SCALE))) $(if $(ITERS),--iters $(call q,$(ITERS))) $(if $(RUN),--run $(call q,$(RUN))) \
             $(if $(filter 1 yes true,$(RESUME)),--resume) $(if $(MODE),--mode $(call q,$(MODE))) \
             $(if $(SNAPSHOT),--snapshot-every $(call q,$(SNAPSHOT))) $(if $(MINUTES),--time-limit $(call q,$(MINUTES))) \
             $(if $(BLAS_CORE),--blas-core $(call q,$(BLAS_CORE))) $(if $(FROM_MODEL),--from-model $(call q,$(FROM_MODEL))) \
             $(if $(MOMENT_BATCHES),--moment-batches $(call q,$(MOMENT_BATCHES))) \
             $(if $(RECIPE),--recipe $(call q,$(RECIPE))) $(if $(LR),--lr $(call q,$(LR))) \
             $(if $(LR_STEPS),--lr-steps $(call q,$(LR_STEPS))) $(if $(LR_GAMMA),--lr-gamma $(call q,$(LR_GAMMA))) \
             $(if $(BATCH),--batch $(call q,$(BATCH))) $(if $(INIT),--init $(call q,$(INIT))) \
             $(if $(BIAS_LR),--bias-lr $(call q,$(BIAS_LR))) $(if $(CLIP),--clip $(call q,$(CLIP))) \
             $(if $(filter 1 yes true,$(NO_BUILD)),--no-build)

.PHONY: train curves figures bench demo

train: $(SETUP_STAMP) ## train NET=red10|red20|red30|red30-official|<net in gen/> TASK=denoise SIGMA=..|TASK=sr SCALE=.. [ITERS= RUN= RESUME=1 MINUTES= FROM_MODEL=models/<name> RECIPE=paper|step|finetune LR= LR_STEPS= LR_GAMMA= BATCH= INIT= BIAS_LR= CLIP=]
	$(PY) -m rednet train $(TRAIN_ARGS)

curves: $(SETUP_STAMP) ## runs/<name>/train.log -> curves.csv + results/curves/*.png [RUNS="name ..."] (Figure 3b)
	$(PY) -m rednet curves $(call qw,$(RUNS))

figures: $(SETUP_STAMP) ## Figure 3 (a, b, c) and Section 2.1.1: train every net (resumable), draw the panels -> docs/results/figures/ [FIGURES=a,b FIGURES_ITERS=N LIMIT=N -> results/figures/]
	$(PY) -m rednet figures $(if $(FIGURES),--figures $(call q,$(FIGURES))) $(if $(FIGURES_ITERS),--iters $(call q,$(FIGURES_ITERS))) \
	  $(if $(LIMIT),--limit $(call q,$(LIMIT)))

bench: $(SETUP_STAMP) ## training throughput of red10/20/30/30-official vs the BLAS GEMM bound (~10 min; its small database needs DATASETS)
	$(PY) -m rednet bench $(if $(BENCH_NETS),--nets $(call q,$(BENCH_NETS)))

demo: $(SETUP_STAMP) ## the shipped models on the shipped images (~2 min), then RED10 trained ~8 min where BSD300 can be had -> results/demo/ [LIMIT=N NO_TRAIN=1]
	$(PY) -m rednet demo $(if $(BLAS_CORE),--blas-core $(call q,$(BLAS_CORE))) $(if $(LIMIT),--limit $(call q,$(LIMIT))) \
	  $(if $(filter 1,$(NO_TRAIN)),--no-train)
