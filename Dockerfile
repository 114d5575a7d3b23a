# One image for all four services; the command picks the service.
# Not built in CI here (no Docker engine on these machines); the same packages and pins
# as `make install`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY constraints.txt ./
COPY libs/common libs/common
COPY services services
RUN pip install --no-cache-dir -c constraints.txt pip setuptools wheel \
 && pip install --no-cache-dir --no-build-isolation -c constraints.txt \
      ./libs/common ./services/gateway ./services/outbox-relay ./services/worker ./services/ai-analyzer

RUN useradd --system --uid 10001 jobline
USER jobline
ENV JOBLINE_ENV=prod JOBLINE_HTTP_HOST=0.0.0.0
CMD ["python", "-m", "jobline_gateway"]
