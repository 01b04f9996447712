"""Application recipes: one module per task."""
