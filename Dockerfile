# Ly API image. Build: docker build -t ly .   (docker-compose.yml runs it beside PostGIS)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY datamodel ./datamodel
COPY loaders ./loaders
COPY service ./service
COPY cli ./cli
RUN pip install .

RUN useradd --system --uid 10001 ly
USER ly
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# Migrations are an explicit step: `docker compose run --rm api ly migrate`; compose's
# `migrate` service does it (and loads the reference and demo data) before the API starts.
CMD ["ly", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
