# Sourced by bin/caffe and bin/python: picks the Caffe build and sets its library paths.
#   CAFFE=stock   the stock build (.caffe/env, written by `make setup`)
#   CAFFE=fast    the batch-parallel build (.caffe-fast/env; docs/training.md)
#   unset         fast where it is built, else stock (child processes decide alike)
case "${CAFFE:-}" in
  stock) CAFFE_ENV="$ROOT/.caffe/env" ;;
  fast) CAFFE_ENV="$ROOT/.caffe-fast/env"
    if [ ! -f "$CAFFE_ENV" ]; then
      echo "$(basename "$0"): CAFFE=fast, but the batch-parallel build is absent; run 'make setup' (or use CAFFE=stock)" >&2; exit 2
    fi ;;
  "") if [ -f "$ROOT/.caffe-fast/env" ]; then CAFFE_ENV="$ROOT/.caffe-fast/env"; else CAFFE_ENV="$ROOT/.caffe/env"; fi ;;
  *) echo "$(basename "$0"): CAFFE=$CAFFE: give CAFFE=stock or CAFFE=fast" >&2; exit 2 ;;
esac
if [ ! -f "$CAFFE_ENV" ]; then echo "$(basename "$0"): Caffe is not set up; run 'make setup' first" >&2; exit 2; fi
. "$CAFFE_ENV"
if [ -n "$CAFFE_LD_LIBRARY_PATH" ]; then
  export LD_LIBRARY_PATH="$CAFFE_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
