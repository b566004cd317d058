"""Stage ``rationales`` (notebook ``02_rationales.ipynb``): JRG rationale generation and judging
(``mipd_kit.rationales.jrg``); reads the teacher stage's ``teacher_evidence.json``. Orchestration still lives in
the notebook (``jrg.config_from_params``)."""

INPUTS: tuple[str, ...] = ("data", "teacher")
OUTPUTS: tuple[str, ...] = ("rationales.jsonl", "jrg_stats.json")
USES_TEACHER = False
