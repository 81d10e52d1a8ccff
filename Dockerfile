# One image for the API, the worker and the migrate job; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so editing the source does not invalidate the (slow) install layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# Code stays root-owned (read-only to the app); only the state dir is the app's to write.
RUN useradd --create-home --uid 10001 escalator \
    && mkdir -p /app/.escalator \
    && chown escalator:escalator /app/.escalator
COPY . .

USER escalator

EXPOSE 8000
CMD ["python", "worker.py"]
