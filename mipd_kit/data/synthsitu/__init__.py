"""data/synthsitu."""
