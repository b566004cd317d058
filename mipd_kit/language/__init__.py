"""Language-model access through one small callable interface (``Sampler``)."""
