"""Teachers (embedded, open_clip, transformers), text encoders and the feature cache."""
