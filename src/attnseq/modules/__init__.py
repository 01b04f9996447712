"""Network building blocks: attention, encoder, decoders."""
