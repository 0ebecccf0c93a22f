# The platform's image: the same installation as `make run` (`make install`: the virtual environment, the packages,
# configurable-http-proxy, Tesseract's models, espeak-ng, bubblewrap), then JupyterHub in front (`aiplatform hub`).
# docker-compose.yml runs it beside PostgreSQL and a Dask cluster.
FROM python:3.11-slim-bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/aiplatform
COPY . .
RUN make install PYTHON=python3.11 && rm -rf /var/lib/apt/lists/* /root/.cache/pip /root/.cache/uv
ENV AIPLATFORM_PLATFORM__DATA_DIR=/data AIPLATFORM_HUB__HOST=0.0.0.0
VOLUME /data
EXPOSE 8000
CMD [".venv/bin/aiplatform", "hub"]
