#!/bin/bash
# Stealthy T-BFA (paper App. F / Table 4) on the committed ResNet-20 checkpoints
# (studies/resnet20_cifar10.yaml; CIFAR-10 (JPEG q75 copy)) with the WCAT authors' T-BFA
# protocol (`--protocol paper`): the attacker uses 500 seeded source-class images plus 500 of
# the other classes, and stops when the ASR on the attacked or on the other 500 source images
# reaches 100%; 500-flip budget. Pairs: the first three of numpy.random.default_rng(0).choice
# over the 90 ordered class pairs (no hand-picking), each over the three checkpoints before
# the next pair; attack seeds 0, 1, 2. Resumable: a JSON that exists is skipped, and a pair
# interrupted part-way continues from its finished seeds (*.json.partial.json, `--out`).
# SOURCE_IMAGES=N (and as many other images) instead of 500: a cheaper, stated deviation,
# written as *.srcN.json. Then: python summarize.py [srcN] > table.md
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=studies/results/resnet20_tbfa
hwsim=${HWSIM:-.venv/bin/hwsim}
for pair in "bird horse" "dog airplane" "ship bird"; do
  set -- $pair
  for m in normal wcat wcat_bfn; do
    out=$here/$m.$1-$2${SOURCE_IMAGES:+.src$SOURCE_IMAGES}.json
    [ -f "$out" ] && continue
    "$hwsim" attack tbfa --checkpoint studies/results/resnet20_cifar10/checkpoints/$m.pt \
      --source "$1" --target "$2" --protocol paper --seeds 3 --seed 0 \
      ${SOURCE_IMAGES:+--source-images $SOURCE_IMAGES} \
      --threads "${THREADS:-2}" --out "$out" ${PROGRESS:---no-progress} \
      ${DEVICE:+--device $DEVICE} > /dev/null
  done
done
