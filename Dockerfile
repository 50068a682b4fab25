# The Autopilot worker; docker-compose.yml runs it next to a Kafka broker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --create-home --uid 1000 autopilot \
    && mkdir /data \
    && chown autopilot /data

# A named volume mounted here starts with this ownership, so the worker can write its state.
USER autopilot
VOLUME ["/data"]
ENV AUTOPILOT_DATA_DIR=/data
CMD ["autopilot", "worker"]
