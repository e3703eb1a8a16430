"""Registered model versions: their format, lineage and aliases; loading, serving and scoring them."""
