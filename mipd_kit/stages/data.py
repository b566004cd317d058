"""Stage ``data`` (notebook ``00_data.ipynb``): the SynthSitu world (or a real dataset folder), its split and the
blind baselines. Orchestration still lives in the notebook (not yet migrated to a ``run`` here)."""

INPUTS: tuple[str, ...] = ()
OUTPUTS: tuple[str, ...] = ("${world_dir}/meta.json", "${world_dir}/ov_split.json")
USES_TEACHER = False
