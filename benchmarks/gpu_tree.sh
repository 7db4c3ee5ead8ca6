#!/usr/bin/env bash
# Slim the working tree for a lent GPU machine, which takes at most 64 MiB of it (tracked
# files, untracked ones git does not ignore, and carried paths): the committed checkpoints
# (~47 MB), reports and plotly.min.js are most of the ~62 MB, and the CIFAR-10 copy carried
# as runs/gpu/cifar10-jpeg.tar.gz adds 19 MB. `aside` moves every tracked *.pt, *.html and
# plotly.min.js outside the KEEP folders to $ASIDE (default /tmp/hwsim-aside), paths kept,
# and copies the CIFAR copy in; `back` moves them home and removes runs/gpu. Run `back` before
# committing: git sees set-aside files as deleted.
#     bash benchmarks/gpu_tree.sh aside [KEEP_FOLDER ...]  |  bash benchmarks/gpu_tree.sh back
set -euo pipefail
cd "$(dirname "$0")/.."
ASIDE=${ASIDE:-/tmp/hwsim-aside}
case "${1:-}" in
  aside)
    shift
    mkdir -p "$ASIDE" runs/gpu
    git ls-files -z -- '*.pt' '*.html' '*plotly.min.js' | while IFS= read -r -d '' f; do
      for k in "$@"; do [[ "$f" == "${k%/}/"* ]] && continue 2; done
      [ -f "$f" ] || continue
      mkdir -p "$ASIDE/$(dirname "$f")" && mv "$f" "$ASIDE/$f"
    done
    cp ../shared/data/cifar10-jpeg.tar.gz runs/gpu/
    sent=$({ git ls-files -z; git ls-files -z --others --exclude-standard; } \
      | { xargs -0 cat 2>/dev/null || true; } | wc -c)
    echo "for the device: $(( (sent + $(stat -c %s runs/gpu/cifar10-jpeg.tar.gz)) / 1048576 ))" \
      "MiB with carry=[\"runs/gpu\"] (limit 64)" ;;
  back)
    [ -d "$ASIDE" ] && (cd "$ASIDE" && find . -type f -print0) | while IFS= read -r -d '' f; do
      mkdir -p "$(dirname "$f")" && mv "$ASIDE/$f" "$f"
    done
    rm -rf runs/gpu "$ASIDE"
    git status --short ;;
  *) echo "usage: gpu_tree.sh aside [KEEP_FOLDER ...] | back" >&2; exit 2 ;;
esac
