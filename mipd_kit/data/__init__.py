"""Records, readers, splits and the SynthSitu generator."""
