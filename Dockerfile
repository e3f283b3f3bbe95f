# salguide on a CUDA PyTorch base image. Build: docker build -t salguide .
# Run:   docker run --gpus all -v $PWD/outputs:/work/outputs salguide trainer=gpu
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    WANDB_MODE=offline \
    SALGUIDE_CACHE_DIR=/work/.cache/salguide

WORKDIR /src
COPY pyproject.toml README.md ./
COPY salguide ./salguide
# torch comes from the base image (it satisfies salguide's torch>=2.3), so no CPU wheel is pulled in.
RUN pip install --no-cache-dir ".[triton,diffusion]" && rm -rf /src

WORKDIR /work
ENTRYPOINT ["salguide-train"]
