-- The postgres image creates POSTGRES_DB (mlflow) itself; the Prefect server gets its own database.
CREATE DATABASE prefect;
