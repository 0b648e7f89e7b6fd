-- Runs once, when the postgres container initialises an empty data volume
-- (/docker-entrypoint-initdb.d). The "airflow" metadata database and role come from
-- POSTGRES_DB/POSTGRES_USER; this adds the warehouse stand-in "sparkify" with its own role.
-- Local development only: the password is the one docker-compose.yaml's
-- AIRFLOW_CONN_SPARKIFY_WAREHOUSE uses.
CREATE ROLE sparkify LOGIN PASSWORD 'sparkify';
CREATE DATABASE sparkify OWNER sparkify;
