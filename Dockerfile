# One image for both web and worker; docker-compose.yml picks the command.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 rapidresponse
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY rapidresponse ./rapidresponse
COPY dispatch ./dispatch
COPY web ./web
COPY migrations ./migrations
RUN pip install --no-cache-dir -e .
USER rapidresponse
EXPOSE 5000
CMD ["rapidresponse", "web", "--host", "0.0.0.0", "--port", "5000"]
