"""Stage ``analysis`` (notebook ``06_analysis.ipynb``, ``mipd_kit.analysis.run_analysis``): figures and
``results.md`` from everything the run wrote, so it depends on every other stage."""

INPUTS: tuple[str, ...] = ("data", "teacher", "rationales", "judge", "alignment", "distillation", "cl_hoi")
OUTPUTS: tuple[str, ...] = ("results.md",)
USES_TEACHER = False
