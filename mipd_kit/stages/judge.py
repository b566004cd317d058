"""Stage ``judge`` (notebook ``03_judge.ipynb``): statistics and figures of the judged rationales, and the authors'
four-field export. Reads ``rationales.jsonl``; nothing downstream but the analysis reads what it writes."""

INPUTS: tuple[str, ...] = ("data", "rationales")
OUTPUTS: tuple[str, ...] = ("rationales_authors.json",)
USES_TEACHER = False
