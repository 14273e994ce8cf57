# One image for every service in docker-compose.yml: emulator, worker, beat and flower.
# Secrets (EXTEND_API_KEY, webhook secrets) come from the environment at run time, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin extendq

WORKDIR /app
COPY . .
# The ops extra brings Flower. Build leftovers are removed; the app folder is the user's, so
# celery beat can keep its schedule file there.
RUN pip install ".[ops]" \
    && rm -rf build ./*.egg-info \
    && chown -R extendq:extendq /app

USER extendq
EXPOSE 8765 5555 8000 9540
CMD ["extendq", "--help"]
