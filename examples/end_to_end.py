"""Two clinics, one model, no pooled rows: train, register, serve and score where the data lives."""

import httpx

from fedlearn import EngineConfig, Registry, ScoringJob, build_strategy, builtin_learner, score, serving, simulate
from fedlearn.data import load_parquet, load_sql

DB = "postgresql://postgres@127.0.0.1:5432/test"  # clinic A's database; clinic B has a Parquet file and SQLite
FEATURES, REGIONS = ["age", "bmi", "region"], {"region": ["N", "S"]}
a = load_sql(DB, table="e2e_visits", features=FEATURES, columns=REGIONS, target="outcome", n_classes=2)
b = load_parquet("clinic_b.parquet", features=FEATURES, columns=REGIONS, target="outcome", n_classes=2)
run = simulate(builtin_learner("sklearn.sgd", a), [a, b], build_strategy("fedavg"), EngineConfig(rounds=5, seed=0))
with Registry("sqlite:///models.db") as registry:
    registry.register(run, name="risk", data=a, learner="sklearn.sgd", alias="champion")
    model = registry.load("risk@champion")
with serving(model) as url:
    print(httpx.post(f"{url}/invocations", json={"dataframe_records": [{"age": 61, "bmi": 31, "region": "N"}]}).json())
score(model, ScoringJob(source=DB, table="e2e_visits", keys=("id",), write="e2e_predictions"))
score(model, ScoringJob(source="clinic_b.parquet", keys=("id",), write="predictions", write_url="sqlite:///b.db"))
