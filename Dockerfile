# One image for every service in docker-compose.yml: emulator, worker, webhooks, beat and flower.
# Secrets (EXTEND_API_KEY, webhook secrets) come from the environment at run time, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin extendq

WORKDIR /app
COPY . .
# The ops extra brings Flower. Installed, not editable: /app keeps the sources (and samples/ for
# `docker compose exec worker extendq submit samples/...`), owned by root and read-only to the services.
# Nothing writes here: beat keeps its schedule in Redis (celery-redbeat), not in a schedule file.
RUN pip install ".[ops]" \
    && rm -rf build ./*.egg-info

USER extendq
EXPOSE 8765 5555 8000 9540
CMD ["extendq", "--help"]
