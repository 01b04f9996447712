"""Models whose forward(batch) returns a LossOutput (the only training entry)."""
