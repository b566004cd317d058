"""The stage app: one teacher per run, one --set parser, the stage graph and its fingerprints, NMPA weights from
stage alignment to stage distillation, the distillation config reaching the vocabulary."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nbformat as nbf
import pytest
import torch
import yaml

from mipd_kit.app.config import ConfigError, RunConfig, parse_value
from mipd_kit.app.pipeline import run
from mipd_kit.app.plan import dependants, stage_fingerprints, stage_graph, uses_teacher
from mipd_kit.teachers import TeacherConfig, build_teacher

ROOT = Path(__file__).resolve().parents[1]
TEACHER_STAGES = {"teacher", "rationales", "alignment", "distillation", "cl_hoi"}  # the captioner reads the teacher


# -- one --set parser ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,value", [("3", 3), ("1e-4", 1e-4), (".5", 0.5), ("true", True), ("null", None),
                                        ("[0, 1]", [0, 1]), ('{"w": 1}', {"w": 1}), ("{w: 1}", {"w": 1}),
                                        ('"007"', "007"), ("definition", "definition"), ("", "")])
def test_parse_value_is_yaml_and_reads_json_values_the_same(text: str, value) -> None:
    assert parse_value(text) == value
    assert type(parse_value(text)) is type(value)


def test_every_set_option_uses_the_one_parser(tmp_path: Path, capsys) -> None:
    from mipd_kit.app.stages.clhoi_runs import main as clhoi_main
    from mipd_kit.app.stages.student_runs import config_from_args

    # ".5" and "{...}" in YAML flow style were strings for the old JSON readers
    c = config_from_args("neg", 0, True, ["w_neg=.5", "nmpa.w_neg=.25"])
    assert c.w_neg == 0.5 and c.nmpa.w_neg == 0.25
    assert clhoi_main(["--world", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "seeds=[0"]) == 2
    assert "not valid YAML" in capsys.readouterr().err


# -- one teacher -----------------------------------------------------------------------------------------------------
def test_teacher_block_resolves_once_and_ignores_the_run_seed() -> None:
    base = RunConfig.load(ROOT / "configs" / "smoke.yaml")
    s1 = RunConfig.load(ROOT / "configs" / "smoke.yaml", ["seed=1"])
    assert s1.teacher_config()["seed"] == 0 and s1.teacher_config() == base.teacher_config()
    tied = RunConfig.load(ROOT / "configs" / "smoke.yaml", ["seed=1", "teacher.seed=${seed}"])
    assert tied.teacher_config()["seed"] == 1
    assert {n for n in base.stages if uses_teacher(base, n)} == TEACHER_STAGES
    # the default run with --set seed=1: every teacher stage receives the same block, teacher seed 0
    d1 = RunConfig.load(ROOT / "configs" / "default.yaml", ["seed=1"])
    blocks = {json.dumps(d1.stage_params(n, Path("/r"), teacher=uses_teacher(d1, n))["teacher_config"],
                         sort_keys=True) for n in d1.stages if uses_teacher(d1, n)}
    assert len(blocks) == 1 and json.loads(blocks.pop())["seed"] == 0
    assert {n for n in d1.stages if uses_teacher(d1, n)} == TEACHER_STAGES
    with pytest.raises(ConfigError, match="teacher: unknown key"):
        RunConfig.load(ROOT / "configs" / "smoke.yaml", ["teacher.sise=smoke"])
    with pytest.raises(ConfigError, match="moved to the run config's teacher: block"):
        from mipd_kit.app.plan import validate
        validate(RunConfig.load(ROOT / "configs" / "smoke.yaml", ["stages.alignment.params.teacher_smoke=true"]))


def test_one_factory_for_every_entry_point(tmp_path: Path) -> None:
    from mipd_kit.hoi.config import CLHOIConfig
    from mipd_kit.hoi.prepare import build_teacher as hoi_teacher
    from mipd_kit.app.stages.student_runs import load_teacher_kind
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    t = build_teacher(TeacherConfig.from_dict({"backend": "tiny"}))
    assert t.fingerprint == TinyRandomTeacher().fingerprint
    assert load_teacher_kind("tiny", tmp_path, tmp_path).fingerprint == t.fingerprint
    # CL-HOI's teacher no longer follows the student seed
    assert hoi_teacher(CLHOIConfig(teacher="tiny", seed=5, world_dir=str(tmp_path))).fingerprint == t.fingerprint
    emb = TeacherConfig.from_dict({"size": "smoke", "embedded": {"epochs": 3}}).embedded_config()
    assert (emb.epochs, emb.width, emb.seed) == (3, 32, 0)
    with pytest.raises(ValueError, match="valid keys"):
        TeacherConfig.from_dict({"backnd": "tiny"})


# -- the graph -------------------------------------------------------------------------------------------------------
def test_judge_change_reruns_judge_and_analysis_only() -> None:
    cfg = RunConfig.load(ROOT / "configs" / "smoke.yaml")
    before = stage_fingerprints(cfg)
    after = stage_fingerprints(RunConfig.load(ROOT / "configs" / "smoke.yaml",
                                              ["stages.judge.params.export_authors=false"]))
    assert {n for n in before if before[n] != after[n]} == {"judge", "analysis"}
    assert stage_graph(cfg)["cl_hoi"] == ("data",)
    assert dependants(cfg, "judge") == ["judge", "analysis"]
    assert dependants(cfg, "alignment") == ["alignment", "distillation", "analysis"]
    # a teacher change reaches every stage that uses it and their dependants (rationales read the teacher's
    # evidence, the judge reads the rationales), never the data stage
    t = stage_fingerprints(RunConfig.load(ROOT / "configs" / "smoke.yaml", ["teacher.seed=7"]))
    assert {n for n in before if before[n] != t[n]} == set(before) - {"data"}
    # an alignment change re-runs alignment, distillation and analysis, not CL-HOI
    a = stage_fingerprints(RunConfig.load(ROOT / "configs" / "smoke.yaml", ["stages.alignment.params.w_neg=1.0"]))
    assert {n for n in before if before[n] != a[n]} == {"alignment", "distillation", "analysis"}


def _nb(path: Path, params: str, body: str) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbf.v4.new_code_cell('run_dir: str = "r"  # run\nworld_dir: str = "w"  # world\ncache_dir: str = "c"  # cache\n'
                             'seed: int = 0  # seed\n' + params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbf.v4.new_code_cell(body)]
    nbf.write(nb, path)


def test_run_with_seed_1_records_one_teacher_and_rerun_follows_the_graph(tmp_path: Path) -> None:
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    write = 'from pathlib import Path\nimport json\nPath(run_dir, NAME + ".json").write_text(json.dumps({X}))\n'
    _nb(nbs / "data.ipynb", "", write.replace("NAME", '"data"').replace("{X}", "seed"))
    for name in ("teacher", "cl_hoi"):
        _nb(nbs / f"{name}.ipynb", "teacher_config: dict = {}  # the run's teacher\n",
            write.replace("NAME", f'"{name}"').replace("{X}", "teacher_config"))
    _nb(nbs / "judge.ipynb", "k: int = 1  # a judge parameter\n", write.replace("NAME", '"judge"').replace("{X}", "k"))
    raw = {"seed": 0, "run_id": "r", "root": str(tmp_path), "world_dir": "w${seed}", "cache_dir": "c",
           "reports_dir": "reports", "notebooks_dir": "nbs", "teacher": {"backend": "tiny"},
           "stages": {n: {"notebook": f"{n}.ipynb"} for n in ("data", "teacher", "judge", "cl_hoi")}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = RunConfig.load(tmp_path / "cfg.yaml", ["seed=1"])
    res = run(cfg, quiet=True)
    assert res.state == "done"
    rd = res.run_dir
    status = json.loads((rd / "status.json").read_text())["stages"]
    fps = {n: r["teacher_fingerprint"] for n, r in status.items()}
    assert fps["teacher"] == fps["cl_hoi"] == cfg.teacher_fingerprint() and fps["judge"] is None
    for name in ("teacher", "cl_hoi"):  # every stage got the same block, teacher seed 0 under run seed 1
        got = json.loads((rd / f"{name}.json").read_text())
        assert got == cfg.teacher_config() and got["seed"] == 0
    assert json.loads((rd / "data.json").read_text()) == 1
    plan = run(cfg, dry_run=True, quiet=True, rerun="judge")
    assert plan.stages == {"data": "skipped (unchanged)", "teacher": "skipped (unchanged)", "judge": "run",
                           "cl_hoi": "skipped (unchanged)"}
    res = run(RunConfig.load(tmp_path / "cfg.yaml", ["seed=1", "stages.judge.params.k=2"]), force=True, quiet=True)
    assert res.stages == {"data": "skipped", "teacher": "skipped", "judge": "done", "cl_hoi": "skipped"}


# -- alignment -> distillation ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from mipd_kit.rationales.store import Rationale
    from mipd_kit.student.testing import write_tiny_world

    d = tmp_path_factory.mktemp("stages")
    info = write_tiny_world(d / "w", n_per_verb=4)
    recs = [Rationale(im, "glimpse", None, pol, t, 0, 9.0 if pol == "positive" else 1.0, "test")
            for im, c in info["collected"].items() for pol in ("positive", "negative") for t in c["glimpse"][pol]]
    text = "".join(json.dumps(r.to_json()) + "\n" for r in recs)
    for run_name in ("with04", "alone"):
        (d / run_name).mkdir()
        (d / run_name / "rationales.jsonl").write_text(text)
    return d, info


def _dist_cfg(d: Path, **kw):
    from mipd_kit.app.stages import distillation as D
    base = dict(world_dir=str(d / "w"), cache_dir=str(d / "c"), teacher_config={"backend": "tiny"}, seeds=[0],
                variants=["glimpse", "full"], student_smoke=True, epochs=1, threads=1)
    return D.Config(**{**base, **kw})


def test_distillation_consumes_alignment_nmpa_weights_with_the_same_metrics(tiny_run) -> None:
    from mipd_kit.app.stages import alignment as A, distillation as D
    from mipd_kit.student.testing import hashed_text_embedder

    d, _ = tiny_run
    torch.set_num_threads(1)
    acfg = dataclasses.replace(A.Config.smoke(), world_dir=str(d / "w"), cache_dir=str(d / "c"),
                               teacher_config={"backend": "tiny"}, variants=["glimpse", "full"])
    a = A.run(acfg, d / "with04", embed_texts=hashed_text_embedder())
    assert len(a.index["models"]) == 2 and a.after is not None  # glimpse (no negatives, no instances) and full
    for key in a.index["models"]:
        assert (d / "with04" / "nmpa" / f"{key}.safetensors").is_file()
    # a second pass (a killed stage re-run) loads the finished NMPAs instead of training them again
    import mipd_kit.align.nmpa as N
    real_train = N.train_nmpa
    N.train_nmpa = lambda *a_, **k_: (_ for _ in ()).throw(AssertionError("retrained a finished NMPA"))
    try:
        again = A.run(acfg, d / "with04", embed_texts=hashed_text_embedder())
    finally:
        N.train_nmpa = real_train
    assert again.index["models"].keys() == a.index["models"].keys() and again.after.keys() == a.after.keys()
    assert all(again.after[k] == a.after[k] or (again.after[k] != again.after[k] and a.after[k] != a.after[k])
               for k in a.after)  # equal, NaN where there were NaNs
    with_04 = D.run(_dist_cfg(d), d / "with04", embed_texts=hashed_text_embedder())
    assert set(with_04.nmpa_source.values()) == {"stage alignment"}
    alone = D.run(_dist_cfg(d), d / "alone", embed_texts=hashed_text_embedder())
    assert set(alone.nmpa_source.values()) == {"trained here (not in stage alignment's output)"}
    # loading stage alignment's weights changes nothing (same thread count: exact)
    key = lambda r: (r.model, r.split, r.setting, r.metric, r.mean, r.seed)  # noqa: E731
    assert {key(r): r.value for r in with_04.rows} == {key(r): r.value for r in alone.rows}
    with pytest.raises(ValueError, match="set the NMPA epochs in stage alignment only"):
        D.run(_dist_cfg(d, nmpa_epochs=5), d / "with04", embed_texts=hashed_text_embedder())


def test_alignment_workers_train_the_nmpas_side_by_side_with_the_same_weights(tiny_run, tmp_path, capfd) -> None:
    """workers=2: the NMPAs of 2 seeds in 2 forked 1-thread processes give the index entries (histories) and weight
    files of one 1-thread process, and the same alignment report; each NMPA's progress lines (epoch, ETA) come
    from its worker."""
    import re
    import shutil

    from mipd_kit.progress import progress_lines

    from mipd_kit.app.stages import alignment as A
    from mipd_kit.student.testing import hashed_text_embedder

    d, _ = tiny_run
    outs = {}
    for n in (1, 2):
        run = tmp_path / f"a{n}"
        run.mkdir()
        shutil.copy(d / "alone" / "rationales.jsonl", run / "rationales.jsonl")
        torch.set_num_threads(n)
        acfg = dataclasses.replace(A.Config.smoke(), world_dir=str(d / "w"), cache_dir=str(d / "c"),
                                   teacher_config={"backend": "tiny"}, variants=["full"], seeds=[0, 1], workers=n)
        outs[n] = A.run(acfg, run, embed_texts=hashed_text_embedder(), progress=True)
        lines = progress_lines(capfd.readouterr().err)
        for seed in (0, 1):
            assert any(re.match(rf"NMPA seed {seed}: \d+/\d+ step .* eta \d\d:\d\d .*epoch \d+/\d+", x)
                       for x in lines), (n, seed, lines)
    torch.set_num_threads(1)
    one, two = outs[1], outs[2]
    assert len(one.index["models"]) == 2 and list(one.index["models"]) == list(two.index["models"])
    for key, e in one.index["models"].items():
        assert e["history"] == two.index["models"][key]["history"]
        assert (tmp_path / "a1" / "nmpa" / e["file"]).read_bytes() == (tmp_path / "a2" / "nmpa" / e["file"]).read_bytes()
    assert one.after == two.after or all(one.after[k] == two.after[k] or one.after[k] != one.after[k]
                                         for k in one.after)
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        A.Config(workers=0)


def test_distillation_runs_the_rows_of_its_config(tiny_run, tmp_path) -> None:
    """The rows of the config, by model name: references (teacher, student-zs on the frozen student backbone),
    students with their rationale sources (a control without its file is skipped with the reason), dev-unseen and
    gsr-study rows."""
    import shutil

    from mipd_kit.rationales.store import Rationale
    from mipd_kit.app.stages import distillation as D
    from mipd_kit.student.testing import hashed_text_embedder

    d, info = tiny_run
    run = tmp_path / "run"
    shutil.copytree(d / "alone", run, ignore=shutil.ignore_patterns("checkpoints", "predictions", "curves", "nmpa"))
    verbs = json.loads((d / "w" / "train.json").read_text())
    recs = [Rationale(im, "glimpse", None, "positive", f"a photo of someone {verbs[im]['verb']}", 0, 9.0, "template")
            for im in info["collected"]]
    (run / "rationales-template.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs))
    cfg = _dist_cfg(d, variants=[], rows=["teacher", "student-zs", "baseline", "mipd", "mipd-template",
                                          "mipd-shuffled"], seeds=[0, 1], student_backbone={"backend": "tiny"},
                    study_bootstrap=200)
    out = D.run(cfg, run, embed_texts=hashed_text_embedder())
    models = {r.model for r in out.rows if r.task == "gsr"}
    assert models == {"teacher", "student-zs", "baseline", "mipd", "mipd-template"}
    assert "rationales-shuffled.jsonl" in out.skipped["mipd-shuffled"]
    assert out.nmpa_source["mipd-template-seed0"] == "trained here (template rationales)"
    assert {r.seed for r in out.rows if r.model == "mipd"} == {0, 1}
    assert out.world.train.x.shape[1:] and out.world.backbone is not None  # heads on cached backbone tokens
    study = [r for r in out.study if r.metric == "verb_diff"]
    assert {r.model for r in study} == {"mipd - baseline", "mipd - mipd-template"}
    assert all(r.task == "gsr-study" and r.lo <= r.value <= r.hi for r in study)
    from mipd_kit.metrics import read_rows
    back = read_rows(run / "metrics.json")
    assert any(r.task == "gsr-study" and r.lo is not None for r in back)
    with pytest.raises(ValueError, match="unknown row"):
        D.Config(rows=["mipd-everything"]).row_list()


def test_distillation_workers_train_side_by_side_with_the_same_results(tiny_run, tmp_path, monkeypatch,
                                                                      capfd) -> None:
    """workers=2 trains the students in 2 forked 1-thread processes: the same rows, files and numbers as one
    1-thread process (the same thread count: exact), in job order, and each student's progress lines (epoch,
    elapsed, ETA) come from its worker; a student failing in a worker is named."""
    import re
    import shutil

    from mipd_kit.progress import progress_lines

    from mipd_kit.app.stages import distillation as D
    from mipd_kit.student.testing import hashed_text_embedder

    d, _ = tiny_run
    key = lambda r: (r.model, r.split, r.setting, r.metric, r.mean, r.seed)  # noqa: E731
    outs = {}
    for n in (1, 2):
        run = tmp_path / f"w{n}"
        shutil.copytree(d / "alone", run, ignore=shutil.ignore_patterns("checkpoints", "predictions", "curves", "nmpa"))
        cfg = _dist_cfg(d, variants=[], rows=["baseline", "mipd-feat", "mipd"], seeds=[0, 1], workers=n,
                        threads=n, study_bootstrap=100)
        outs[n] = D.run(cfg, run, embed_texts=hashed_text_embedder(), progress=True)
        assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(
            f"{m}-seed{s}.json" for m in ("baseline", "mipd-feat", "mipd") for s in (0, 1))
        lines = progress_lines(capfd.readouterr().err)
        for m in ("baseline", "mipd-feat", "mipd"):
            assert any(re.match(rf"student {m} seed 1: \d+/\d+ step .* eta \d\d:\d\d .*epoch \d+/\d+", x)
                       for x in lines), (n, m, lines)
        assert (n == 2) == any(x.startswith("distillation jobs on 2 workers: 6/6 job") for x in lines)
    assert [key(r) for r in outs[2].rows] == [key(r) for r in outs[1].rows]
    assert {key(r): r.value for r in outs[2].rows} == {key(r): r.value for r in outs[1].rows}
    assert list(outs[2].timings) == list(outs[1].timings)
    # a student that fails in a worker is named
    run = tmp_path / "w-fail"
    shutil.copytree(d / "alone", run, ignore=shutil.ignore_patterns("checkpoints", "predictions", "curves", "nmpa"))
    cfg = _dist_cfg(d, variants=[], rows=["baseline", "mipd"], seeds=[0], workers=2, threads=2)
    import mipd_kit.app.stages.student_runs as T  # a config with lr=nan is refused at construction: fail inside the worker

    def diverges(*a, **k):
        raise FloatingPointError("the loss is not finite (planted)")
    monkeypatch.setattr(T, "run_variant", diverges)  # the forked workers inherit the patched module
    with pytest.raises(RuntimeError, match=r"student (baseline|mipd)-seed0 failed in a worker process"):
        D.run(cfg, run, embed_texts=hashed_text_embedder())
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        D.Config(workers=0)


def test_side_by_side_jobs_start_longest_first() -> None:
    """The scheduling cost: a student with an unlabeled pool or with an NMPA of its own (control rationales) costs
    more than a plain one, so it is submitted first (the results stay in job order, test above)."""
    from types import SimpleNamespace

    from mipd_kit.app.stages import distillation as D
    from mipd_kit.student.config import StudentConfig

    run_w, control_w = SimpleNamespace(rationale_source="run"), SimpleNamespace(rationale_source="template")
    cost = {name: D.job_cost(w, StudentConfig(variant=v, unlabeled_ratio=1.0)) for name, w, v in
            [("baseline", run_w, "baseline"), ("mipd", run_w, "paper"), ("mipd-template", control_w, "paper"),
             ("mipd-kd-unlabeled", run_w, "kd-unlabeled"), ("mipd-feat-template", control_w, "feat")]}
    assert cost["baseline"] == cost["mipd"] == cost["mipd-feat-template"] == 1.0  # feat trains no NMPA
    assert cost["mipd-template"] == cost["mipd-kd-unlabeled"] == 2.0


def test_verb_text_override_reaches_the_vocabulary(tiny_run) -> None:
    from mipd_kit.data.swig import load_frame_space
    from mipd_kit.app.stages import distillation as D
    from mipd_kit.student.testing import hashed_text_embedder

    d, _ = tiny_run
    seen: list[str] = []
    embed = hashed_text_embedder()

    def spy(texts: list[str]) -> torch.Tensor:
        seen.extend(texts)
        return embed(texts)

    space = load_frame_space(d / "w" / "imsitu_space.json")
    defs = {space.verbs[v].definition or space.verbs[v].abstract for v in space.verbs}
    cfg = _dist_cfg(d, overrides={"verb_text": "definition"})
    D.prepare(cfg, d / "alone", embed_texts=spy)
    assert defs <= set(seen)
    with pytest.raises(ValueError, match="0 no longer means"):
        _dist_cfg(d, epochs=0)


# -- notebooks -------------------------------------------------------------------------------------------------------
def test_notebooks_are_what_the_one_builder_writes() -> None:
    """Rebuilding changes no notebook (stable cell ids), and the parameters of every stage notebook are exactly its
    stage Config's fields with the smoke defaults."""
    import importlib
    import importlib.util

    from mipd_kit.app.plan import notebook_parameters
    from mipd_kit.app.registry import STAGES

    spec = importlib.util.spec_from_file_location("nb_build", ROOT / "notebooks" / "build.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert builder.main(["--check"]) == 0
    assert builder.GENERATED == {s.notebook: s.module for s in STAGES}
    for nb, name in builder.GENERATED.items():
        mod = importlib.import_module(name)
        params = notebook_parameters(ROOT / "notebooks" / nb)
        assert set(params) == {f.name for f in dataclasses.fields(mod.Config)} | {"run_dir"}, nb
        smoke = mod.Config.smoke()
        for k, spec_ in params.items():
            if k not in ("run_dir", "world_dir", "cache_dir"):
                assert eval(spec_["default"]) == getattr(smoke, k), (nb, k)  # noqa: S307 - literals we wrote


def test_teacher_stage_runs_the_one_teacher(tiny_run) -> None:
    from mipd_kit.metrics import read_rows
    from mipd_kit.app.stages import teacher as T

    d, _ = tiny_run
    out = d / "teacher-run"
    cfg = dataclasses.replace(T.Config.smoke(), world_dir=str(d / "w"), cache_dir=str(d / "c"),
                              teacher_config={"backend": "tiny"}, feature_batch_size=16)
    res = T.run(cfg, out)
    assert res.teacher.fingerprint == build_teacher(TeacherConfig(backend="tiny")).fingerprint
    assert (out / "teacher_evidence.json").is_file() and res.evidence
    assert {r.model for r in read_rows(out / "metrics.json")} == {r.model for r in res.rows} and res.rows
    assert "train" in res.features and "verb-prompts" in res.features


def test_cl_hoi_stage_equals_the_library_run(tmp_path: Path) -> None:
    from hoi_tinyworld import write_tiny_hoi_world

    from mipd_kit.hoi.config import CLHOIConfig
    from mipd_kit.app.stages.clhoi_runs import run_clhoi
    from mipd_kit.app.stages import cl_hoi as H

    world = write_tiny_hoi_world(tmp_path / "w")
    cfg = dataclasses.replace(H.Config.smoke(), world_dir=str(world), cache_dir=str(tmp_path / "c"),
                              teacher_config={"backend": "tiny"}, epochs=2)
    out = H.run(cfg, tmp_path / "stage")
    assert (tmp_path / "stage" / "clhoi" / "results.md").read_text().strip() == out.table
    assert out.clhoi.teacher == "tiny" and out.proposals
    lib = run_clhoi(CLHOIConfig.smoke(world_dir=str(world), run_dir=str(tmp_path / "lib"),
                                      cache_dir=str(tmp_path / "c"), teacher="tiny", epochs=2, threads=1))
    key = lambda r: (r.model, r.split, r.setting, r.metric, r.seed)  # noqa: E731
    assert {key(r): r.value for r in out.result.rows} == {key(r): r.value for r in lib.rows}


def test_rationales_and_judge_stages(tmp_path: Path) -> None:
    from mipd_kit.rationales.jrg import JRGConfig
    from mipd_kit.app.stages import rationales as R

    smoke = R.Config.smoke().jrg_config()
    assert (smoke.rounds, smoke.max_images) == (JRGConfig.smoke().rounds, JRGConfig.smoke().max_images)
    c = dataclasses.replace(R.Config.smoke(), rounds=1, max_images=0, workers=2).jrg_config()
    assert (c.rounds, c.max_images, c.workers) == (1, 0, 2)  # 0 images = all, as in JRGConfig
    with pytest.raises(ValueError, match="0 no longer means"):
        R.Config(rounds=0)
    out = R.run(R.Config.smoke(), tmp_path / "run")  # no world, no evidence: the toy world
    assert out.world == tmp_path / "run" / "jrg_toy_world" and (tmp_path / "run" / "rationales.jsonl").is_file()
    from mipd_kit.app.stages import judge as J
    j = J.run(J.Config.smoke(), tmp_path / "run")  # the judge reads what the rationales stage wrote
    assert j.records and j.rounds == out.jrg.rounds and j.backend == out.stats["run"]["backend"]
    assert json.loads((tmp_path / "run" / "rationales_authors.json").read_text()) == j.authors
    with pytest.raises(ValueError, match="0 no longer means"):
        J.Config(rounds=0)


@pytest.mark.parametrize("name", ["data", "teacher", "rationales", "alignment", "distillation", "cl_hoi"])
def test_stage_command_lines_share_one_parser(name, tmp_path, capsys) -> None:
    """Every stage CLI is stages.stage_main: --help, and a bad override is a one-line error naming the stage, exit 2."""
    import subprocess
    import sys

    from mipd_kit.app.stages import stage_module

    mod = stage_module(name)
    assert mod.main(["--world", str(tmp_path / "w"), "--run-dir", str(tmp_path / "r"), "--set", "nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{name}: error: --set 'nosuch=1': unknown key 'nosuch'") and len(err.splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", f"mipd_kit.app.stages.{name}", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and f"python -m mipd_kit.app.stages.{name}" in out.stdout and "--set KEY=VALUE" in out.stdout


def test_data_stage_synth_overrides_shrink_the_world_and_refuse_unknown_keys() -> None:
    from mipd_kit.app.stages import data as D

    c = D.synth_config(D.Config(synth_size="smoke", seed=3, synth_overrides={"n_train": 120, "hoi_people": [2, 2]}))
    assert (c.size, c.seed, c.n_train, c.hoi_people) == ("smoke", 3, 120, (2, 2))
    with pytest.raises(ValueError, match="n_trian"):
        D.synth_config(D.Config(synth_size="smoke", synth_overrides={"n_trian": 1}))
    with pytest.raises(ValueError, match="reserved"):
        D.synth_config(D.Config(synth_size="smoke", synth_overrides={"seed": 1}))
