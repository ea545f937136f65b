-- One PostgreSQL server, two databases: Prefect's and MLflow's (both owned by $POSTGRES_USER).
-- Run once on a fresh data directory: by the postgres image (docker-entrypoint-initdb.d) under compose,
-- by `stack.sh up` natively.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
\connect prefect
-- Prefect's migrations use trigram indexes; created here so they need no superuser later.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
