"""Pre-flight check of a run config (``mipd check``; ``mipd run`` runs it first): every input the run will need.

Items, one line each (``ok`` / ``problem`` with its remedy), for the enabled stages only:

* ``config``: the run config loads, every stage's params are parameters of its notebook
  (``mipd_kit.app.plan.validate``) and each standard stage's ``Config`` accepts them (its own checks run);
* ``world``: the files the stages read (SWiG / imSitu JSONs and images for the GSR stages; HICO-DET instances,
  prompts, images and the detector's boxes for CL-HOI), or stage ``data`` generating the world; the checksums of the
  files ``mipd data prepare`` recorded in ``prepared.json``;
* ``split``: the open-vocabulary split loads and names verbs of the frame space;
* ``device``: CUDA where a device block asks for it, and the GPU's free memory against the weights;
* ``weights``: the pretrained weights are in the local Hugging Face / open_clip cache (or a named file / folder);
* ``llm``: each OpenAI-compatible endpoint lists the configured model (``GET /models``) and answers a one-token
  completion;
* ``disk``: free space where the caches go against the projected size of the feature caches.

Nothing is downloaded, no model is loaded; the check takes about a second plus the endpoint's replies.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .config import ConfigError, RunConfig

#: stages that read the GSR world (SWiG / imSitu format) and those that read the HOI world (HICO-DET format)
GSR_STAGES = ("teacher", "rationales", "judge", "alignment", "distillation")
HOI_STAGES = ("cl_hoi",)
GSR_FILES = ("imsitu_space.json", "train.json", "dev.json", "test.json", "ov_split.json")
HOI_FILES = ("hoi_train.json", "hoi_test.json", "hoi_prompts.json")
#: GPU memory beyond the weights (activations of a feature batch, CUDA context), an assumption, not a measurement
GPU_HEADROOM_BYTES = 4 * 2**30
_PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
#: (tokens, width) of the Hugging Face models of the shipped real configs, for the disk projection before their
#: config files are downloaded (BLIP-2 ViT-g at 224 px: CLS + 16x16 patches of width 1408)
KNOWN_TOKEN_SHAPES: dict[str, tuple[int, int]] = {"Salesforce/blip2-itm-vit-g": (257, 1408)}
#: SWiG images (train 75,702 + dev 25,200 + test 25,200), for the disk projection before the world is prepared
SWIG_IMAGES = 126_102


@dataclass(frozen=True)
class Item:
    """One line of the check: what was checked, whether it is fine, what it found and what to do about it."""

    name: str
    ok: bool
    detail: str
    remedy: str = ""

    def line(self) -> str:
        """``ok      name     detail`` or ``problem name     detail -- remedy: ...``."""
        head = f"{'ok' if self.ok else 'problem':<8}{self.name:<9}{self.detail}"
        return head if self.ok or not self.remedy else f"{head} -- remedy: {self.remedy}"


# ---------------------------------------------------------------------------------------------------- config
def stage_configs(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Each enabled standard stage's ``Config`` built from the parameters the runner would pass (run seed, folders,
    teacher block), so that their own checks (``__post_init__``) run; stages of one's own notebooks are skipped."""
    from .registry import stage_specs
    from .stages import stage_module
    out = {}
    for name, st in cfg.stages.items():
        if not st.enabled or name not in stage_specs():
            continue
        mod = stage_module(name)
        fields = {f.name for f in dataclasses.fields(mod.Config)}
        params = cfg.stage_params(name, run_dir, teacher="teacher_config" in fields)
        out[name] = mod.Config(**{k: v for k, v in params.items() if k in fields})
    return out


def check_config(cfg: RunConfig) -> tuple[Item, dict[str, Any]]:
    """The config's parameters: notebooks and their parameters, then each stage's ``Config``."""
    from .plan import validate
    try:
        validate(cfg)
        confs = stage_configs(cfg, cfg.path("reports_dir") / "check")
    except (ConfigError, ValueError, TypeError) as e:
        return Item("config", False, f"{cfg.source}: {e}", "fix the config or the --set value it names"), {}
    enabled = [n for n, s in cfg.stages.items() if s.enabled]
    return Item("config", True, f"{cfg.source}: stages {', '.join(enabled)} valid"), confs


# ---------------------------------------------------------------------------------------------------- world
def _enabled(cfg: RunConfig, names: Sequence[str]) -> bool:
    return any(n in cfg.stages and cfg.stages[n].enabled for n in names)


def _generated(cfg: RunConfig) -> bool:
    return "data" in cfg.stages and cfg.stages["data"].enabled


def _image_names(path: Path, hoi: bool) -> list[str]:
    data = json.loads(path.read_text())
    if hoi:
        return [str(f) for f in data.get("filenames", [])] if isinstance(data, dict) else \
            [str(r.get("file_name", "")) for r in data if isinstance(r, dict)]
    return list(data)


def check_world(cfg: RunConfig, confs: dict[str, Any]) -> list[Item]:
    """The world folder's files (or stage ``data`` generating them), its images, the detector's boxes and the
    checksums ``mipd data prepare`` recorded."""
    world = cfg.path("world_dir")
    items: list[Item] = []
    wants = [("swig", GSR_FILES, False)] if _enabled(cfg, GSR_STAGES) else []
    wants += [("hico", HOI_FILES, True)] if _enabled(cfg, HOI_STAGES) else []
    if not wants:
        return items
    if _generated(cfg):
        return [Item("world", True, f"{world}: generated by stage data (SynthSitu)")]
    for dataset, files, hoi in wants:
        remedy = f"mipd data prepare {dataset} --root DIR, then set world_dir to DIR/{dataset}/world"
        missing = [f for f in files if not (world / f).is_file()]
        if missing:
            items.append(Item("world", False, f"{world}: missing {', '.join(missing)}", remedy))
            continue
        img_dir = world / "images"
        names: list[str] = []
        for f in (("hoi_train.json", "hoi_test.json") if hoi else ("train.json", "dev.json", "test.json")):
            try:
                names += _image_names(world / f, hoi)
            except (OSError, ValueError) as e:
                items.append(Item("world", False, f"{world / f}: unreadable ({e})", remedy))
        absent = [n for n in names if not (img_dir / n).is_file()]
        if absent:
            items.append(Item("world", False, f"{img_dir}: {len(absent)} of {len(names)} images missing, e.g. "
                                              f"{absent[0]}", remedy))
        else:
            items.append(Item("world", True, f"{world}: {dataset} files and {len(names)} images present"))
    if "cl_hoi" in confs and getattr(confs["cl_hoi"], "proposals", "") == "detector":
        for key in ("detections_train", "detections_test"):
            p = getattr(confs["cl_hoi"], key, "")
            if p and not Path(p).is_file():
                items.append(Item("world", False, f"{p}: the detector's boxes ({key}) are missing",
                                  "run a detector on the images and save its boxes in the format of "
                                  "docs/real-mode.md (Detections)"))
    items += check_prepared(world)
    return items


def check_prepared(world: Path) -> list[Item]:
    """The sha256 of every file ``mipd data prepare`` recorded in ``world/prepared.json`` (annotation files; the
    archives were verified when downloaded)."""
    from ..data.prepare import sha256_file
    manifest = world / "prepared.json"
    if not manifest.is_file():
        return []
    rec = json.loads(manifest.read_text())
    bad = []
    for rel, digest in sorted((rec.get("files") or {}).items()):
        p = world / rel
        if not p.is_file() or sha256_file(p) != digest:
            bad.append(rel)
    if bad:
        return [Item("checksum", False, f"{manifest}: {len(bad)} file(s) changed or missing since prepared, e.g. "
                                        f"{bad[0]}", f"mipd data prepare {rec.get('dataset', 'DATASET')} again")]
    return [Item("checksum", True, f"{manifest}: {len(rec.get('files') or {})} file(s) match their sha256")]


def check_split(cfg: RunConfig) -> list[Item]:
    """The open-vocabulary split of a SWiG-format world (not when stage ``data`` generates it)."""
    if not _enabled(cfg, GSR_STAGES) or _generated(cfg):
        return []
    from ..data.splits import OvSplit
    from ..data.swig import load_frame_space
    world = cfg.path("world_dir")
    p = world / "ov_split.json"
    if not p.is_file() or not (world / "imsitu_space.json").is_file():
        return []  # named by the world item
    try:
        split = OvSplit.load(p)
        verbs = set(load_frame_space(world / "imsitu_space.json").verbs)
    except Exception as e:  # noqa: BLE001  (any reader error is the user's file to fix)
        return [Item("split", False, f"{p}: {e}", "rebuild it with mipd split (docs/real-mode.md)")]
    unknown = sorted((set(split.seen) | set(split.rare) | set(split.unseen)) - verbs)
    if unknown:
        return [Item("split", False, f"{p}: {len(unknown)} verb(s) not in imsitu_space.json, e.g. {unknown[0]}",
                     "rebuild the split against this imsitu_space.json (mipd split)")]
    return [Item("split", True, f"{p}: {len(split.seen)} seen, {len(split.rare)} rare, {len(split.unseen)} unseen")]


# ---------------------------------------------------------------------------------------------------- models
def model_blocks(cfg: RunConfig, confs: dict[str, Any]) -> dict[str, Any]:
    """The models the run builds: ``teacher`` and, when set, ``student_backbone`` (``TeacherConfig``s)."""
    from ..teachers.backends import TeacherConfig
    out = {}
    if _enabled(cfg, GSR_STAGES + HOI_STAGES):
        out["teacher"] = TeacherConfig.from_dict(cfg.teacher_config())
    d = confs.get("distillation")
    if d is not None and getattr(d, "student_backbone", None):
        out["student_backbone"] = TeacherConfig.from_dict(dict(d.student_backbone), "student_backbone")
    return out


def _hf_cached(repo: str, filename: str) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache
    hit = try_to_load_from_cache(repo, filename)
    return Path(hit) if isinstance(hit, str) else None


def _hf_weights(model: str) -> tuple[Optional[list[Path]], Optional[dict]]:
    """The weight files and config of a Hugging Face id or folder found locally (None when absent)."""
    names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    folder = Path(model)
    if folder.is_dir():
        conf_p = folder / "config.json"
        found = [folder / n for n in names if (folder / n).is_file()]
    else:
        conf_p = _hf_cached(model, "config.json")
        found = [p for p in (_hf_cached(model, n) for n in names) if p is not None]
    conf = json.loads(conf_p.read_text()) if conf_p is not None and conf_p.is_file() else None
    files: list[Path] = []
    for p in found:
        if p.name.endswith(".index.json"):
            shards = sorted(set(json.loads(p.read_text()).get("weight_map", {}).values()))
            files += [p.parent / s for s in shards if (p.parent / s).is_file()]
        else:
            files.append(p)
    return (files or None), conf


def _open_clip_weights(t: Any) -> Optional[list[Path]]:
    """The local file open_clip would load for ``model`` / ``pretrained`` (None when absent)."""
    if os.path.isfile(t.pretrained):
        return [Path(t.pretrained)]
    import open_clip
    name = Path(t.model).stem if t.model.endswith(".json") else t.model
    pc = open_clip.get_pretrained_cfg(name, t.pretrained) or {}
    if pc.get("file"):
        return [Path(pc["file"])] if os.path.isfile(pc["file"]) else None
    hub = pc.get("hf_hub", "")
    if hub:
        repo, fname = os.path.split(hub)
        fname = fname or "open_clip_pytorch_model.bin"
        stem = fname.rsplit(".", 1)[0]
        alts = ["open_clip_model.safetensors"] if fname == "open_clip_pytorch_model.bin" else [stem + ".safetensors"]
        for f in alts + [fname]:
            hit = _hf_cached(repo, f)
            if hit is not None:
                return [hit]
    url = pc.get("url", "")
    if url:
        p = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if p.is_file():
            return [p]
    return None


def token_shape(t: Any, hf_conf: Optional[dict] = None) -> Optional[tuple[int, int]]:
    """(tokens, width) of one image's cached features for a teacher block, from its configs (no weights); the
    models of the shipped real configs are known without their config files."""
    if t.backend == "tiny":
        return 16, 32
    if t.backend == "open_clip":
        if t.model.endswith(".json"):
            vc = json.loads(Path(t.model).read_text()).get("vision_cfg", {}) if Path(t.model).is_file() else {}
        else:
            import open_clip
            vc = (open_clip.get_model_config(t.model) or {}).get("vision_cfg", {})
        if not vc.get("patch_size"):
            return None
        g = int(t.image_size or vc["image_size"]) // int(vc["patch_size"])
        return g * g, int(vc["width"])
    if t.backend == "transformers":
        vc = t.vision_config or (hf_conf or {}).get("vision_config") or hf_conf
        if (not vc or not vc.get("patch_size")) and not t.image_size:
            return KNOWN_TOKEN_SHAPES.get(t.model)
        if not vc or not vc.get("patch_size"):
            return None
        g = int(t.image_size or vc.get("image_size", 224)) // int(vc["patch_size"])
        return g * g + 1, int(vc.get("hidden_size", 768))
    return None


def check_models(cfg: RunConfig, confs: dict[str, Any]) -> tuple[list[Item], dict[str, Any]]:
    """Weights present locally and CUDA with enough free memory for them, per model block.

    Returns:
        the items and, per block, ``{"shape": (tokens, width) | None, "identity": ...}`` for the disk projection.
    """
    items: list[Item] = []
    facts: dict[str, Any] = {}
    for role, t in model_blocks(cfg, confs).items():
        files, hf_conf = None, None
        random = (t.backend == "open_clip" and t.pretrained is None) or t.vision_config is not None \
            or t.backend == "tiny"
        if t.backend == "embedded":
            items.append(Item("weights", True, f"{role}: embedded ({t.weights_plan().get('source')})"))
        elif t.backend == "checkpoint":
            ok = Path(t.checkpoint).exists() or _release_exists(t.checkpoint)
            items.append(Item("weights", ok, f"{role}: checkpoint {t.checkpoint}" + ("" if ok else " not found"),
                              "point checkpoint at a saved teacher folder or a release name"))
        elif random:
            items.append(Item("weights", True, f"{role}: {t.backend} with random weights (rehearsal)"))
        elif t.backend == "open_clip":
            files = _open_clip_weights(t)
            items.append(Item("weights", files is not None,
                              f"{role}: open_clip {t.model}/{t.pretrained}: "
                              + (f"{files[0]}" if files else "not in the local cache"),
                              f"on a machine with internet: python -c \"import open_clip; open_clip.create_model("
                              f"'{t.model}', pretrained='{t.pretrained}')\", then copy ~/.cache/huggingface here "
                              "(or set pretrained to the weights file)"))
        elif t.backend == "transformers":
            files, hf_conf = _hf_weights(t.model)
            items.append(Item("weights", files is not None,
                              f"{role}: {t.model}: " + (f"{len(files)} weight file(s) in {files[0].parent}" if files
                                                        else "not in the local Hugging Face cache"),
                              f"on a machine with internet: huggingface-cli download {t.model}, then copy "
                              "~/.cache/huggingface here (or set model to a local folder)"))
        ident = {k: v for k, v in t.to_dict().items() if k not in ("device", "threads", "world_dir", "cache_dir")}
        facts[role] = {"shape": token_shape(t, hf_conf), "identity": json.dumps(ident, sort_keys=True, default=str)}
        items.append(check_device(role, t, files))
    return items, facts


def _release_exists(name: str) -> bool:
    from ..weights import get_release
    return get_release(name) is not None


def check_device(role: str, t: Any, files: Optional[list[Path]]) -> Item:
    """CUDA where ``t.device`` asks for it, and free GPU memory against the weights at ``t.precision``."""
    import torch
    dev = str(t.device)
    if not dev.startswith("cuda"):
        if dev == "auto":
            where = f"CUDA ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "the CPU"
            return Item("device", True, f"{role}: device auto -> {where}")
        return Item("device", True, f"{role}: device {dev}")
    if not torch.cuda.is_available():
        return Item("device", False, f"{role}: device {dev} but torch {torch.__version__} sees no CUDA GPU",
                    f"run on a GPU machine with a CUDA build of torch, or --set {_device_key(role)}=cpu (days per "
                    "epoch at real scale)")
    idx = int(dev.split(":")[1]) if ":" in dev else 0
    free, total = torch.cuda.mem_get_info(idx)
    name = torch.cuda.get_device_name(idx)
    if not files:
        return Item("device", True, f"{role}: {dev} ({name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free)")
    stored = sum(p.stat().st_size for p in files)
    need = stored * _PRECISION_BYTES.get(t.precision, 4) / 4 + GPU_HEADROOM_BYTES  # files taken as fp32
    ok = free >= need
    return Item("device", ok, f"{role}: {dev} ({name}): {free / 2**30:.1f} GiB free, about {need / 2**30:.1f} GiB "
                              f"needed (weights at {t.precision} + {GPU_HEADROOM_BYTES / 2**30:.0f} GiB, projected)",
                "free the GPU, use precision fp16, or a larger GPU")


def _device_key(role: str) -> str:
    return "teacher.device" if role == "teacher" else "stages.distillation.params.student_backbone.device"


# ---------------------------------------------------------------------------------------------------- LLM
def endpoints(confs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The OpenAI-compatible endpoints the run calls: ``(who, base_url, model, api_key_env)``, deduplicated."""
    out: list[tuple[str, str, str, str]] = []
    r = confs.get("rationales")
    if r is not None:
        j = r.jrg_config()
        for who, s in (("generator", j.generator), ("judge", j.judge)):
            if s.backend == "openai":
                out.append((f"rationales {who}", s.openai.base_url, s.openai.model, s.openai.api_key_env))
    c = confs.get("cl_hoi")
    if c is not None and getattr(c, "describer", "") == "sampler":
        ds = dict(getattr(c, "describer_sampler", {}) or {})
        if ds.get("backend") == "openai":
            o = ds.get("openai") or {}
            out.append(("cl_hoi describer", o.get("base_url", "http://127.0.0.1:8080/v1"),
                        o.get("model", "local-model"), o.get("api_key_env", "OPENAI_API_KEY")))
    seen: dict[tuple[str, str], tuple[str, str, str, str]] = {}
    for who, url, model, key in out:
        k = (url.rstrip("/"), model)
        seen[k] = (seen[k][0] + " + " + who, url, model, key) if k in seen else (who, url, model, key)
    return list(seen.values())


def _http(url: str, key_env: str, body: Optional[dict] = None, timeout: float = 10.0) -> Any:
    headers = {"Content-Type": "application/json"}
    key = os.environ.get(key_env or "", "")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


def check_llm(confs: dict[str, Any], timeout: float = 10.0) -> list[Item]:
    """Each endpoint lists its model (``GET /models``) and answers a one-token chat completion."""
    items = []
    for who, url, model, key_env in endpoints(confs):
        base = url.rstrip("/")
        keys = "stages.rationales.params.generator.openai.base_url=... / model=..." if who.startswith("rationales") else \
            "stages.cl_hoi.params.describer_sampler.openai.base_url=... / model=..."
        remedy = (f"start an OpenAI-compatible server serving {model!r} at {base} (e.g. vllm serve {model}), or "
                  f"--set {keys} (docs/real-mode.md, The LLM endpoint)")
        try:
            listed = [str(m.get("id")) for m in (_http(base + "/models", key_env, timeout=timeout).get("data") or [])]
        except (urllib.error.URLError, OSError, ValueError) as e:
            items.append(Item("llm", False, f"{who}: GET {base}/models failed ({e})", remedy))
            continue
        if model not in listed:
            items.append(Item("llm", False, f"{who}: {base} serves {listed}, not {model!r}",
                              f"set model to one of {listed}, or serve {model!r} there"))
            continue
        try:
            out = _http(base + "/chat/completions", key_env, {"model": model, "max_tokens": 1, "temperature": 0,
                                                              "messages": [{"role": "user", "content": "Say OK."}]},
                        timeout=max(timeout, 30.0))
            assert out.get("choices"), "no choices in the reply"
        except (urllib.error.URLError, OSError, ValueError, AssertionError) as e:
            items.append(Item("llm", False, f"{who}: {base}: a one-token completion of {model!r} failed ({e})",
                              remedy))
            continue
        items.append(Item("llm", True, f"{who}: {base} serves {model!r} and completes"))
    return items


# ---------------------------------------------------------------------------------------------------- disk
def _count_images(cfg: RunConfig) -> Optional[int]:
    world = cfg.path("world_dir")
    n = 0
    for f in ("train.json", "dev.json", "test.json"):
        if not (world / f).is_file():
            return None
        n += len(json.loads((world / f).read_text()))
    unl = world / "unlabeled.json"
    if unl.is_file():
        n += len(json.loads(unl.read_text()).get("images", []))
    return n


def check_disk(cfg: RunConfig, facts: dict[str, Any]) -> list[Item]:
    """Free space on the cache's file system against the projected size of the image-feature caches (fp16 tokens,
    one cache per distinct model: the teacher's and the student backbone's)."""
    if not _enabled(cfg, GSR_STAGES) or _generated(cfg):
        return []
    cache = cfg.path("cache_dir")
    probe = cache
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    n = _count_images(cfg)
    counted = n is not None
    n = SWIG_IMAGES if n is None else n
    shapes = {f["identity"]: f["shape"] for f in facts.values()}
    if any(s is None for s in shapes.values()):
        return [Item("disk", True, f"{cache}: {free / 1e9:.0f} GB free (cache size not projected: "
                                   "a model's token shape unknown)")]
    need = sum(n * tok * width * 2 for tok, width in shapes.values())
    ok = free >= need
    what = f"{n} images" if counted else f"SWiG's {n} images (the world is not prepared yet)"
    return [Item("disk", ok, f"{cache}: {free / 1e9:.0f} GB free, feature caches of {what} about "
                             f"{need / 1e9:.0f} GB (projected: fp16 tokens)",
                 "free space or set cache_dir to a larger disk")]


# ---------------------------------------------------------------------------------------------------- all
def run_checks(cfg: RunConfig, timeout: float = 10.0) -> list[Item]:
    """Every item of the check, in order (config first; nothing else is checked when the config is invalid)."""
    item, confs = check_config(cfg)
    if not item.ok:
        return [item]
    items = [item]
    items += check_world(cfg, confs)
    items += check_split(cfg)
    model_items, facts = check_models(cfg, confs)
    items += model_items
    items += check_llm(confs, timeout=timeout)
    items += check_disk(cfg, facts)
    return items


def report(items: Sequence[Item], out: Any = None) -> bool:
    """Print one line per item; True when every item is ok."""
    out = out or sys.stdout
    for it in items:
        print(it.line(), file=out)
    bad = sum(not it.ok for it in items)
    print(f"{len(items) - bad} ok, {bad} problem(s)", file=out)
    return bad == 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mipd check", description="Check every input a run will need (world files, "
                                "split, CUDA and memory, weights, LLM endpoint, disk, parameters) before any stage.")
    p.add_argument("--config", required=True, help="YAML run config, e.g. configs/swig_real.yaml")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, as for mipd run")
    p.add_argument("--root", default=None, metavar="DIR", help="base of the config's relative paths, as for mipd run")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the LLM endpoint")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd check``: 0 when every item is ok, 2 on any problem."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        cfg = RunConfig.load(args.config, args.sets + ([f"root={args.root}"] if args.root else []))
    except ConfigError as e:
        print(Item("config", False, str(e), "fix the config or the --set value it names").line())
        return 2
    return 0 if report(run_checks(cfg, timeout=args.timeout)) else 2


def run_main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd run``: the check (unless ``--no-check``; problems stop the run with exit 2), then the pipeline."""
    from .pipeline import main as pipeline_main
    args = list(sys.argv[1:] if argv is None else argv)
    if "--no-check" in args or any(a in ("-h", "--help") for a in args):
        return pipeline_main([a for a in args if a != "--no-check"])
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--set", dest="sets", action="append", default=[])
    pre.add_argument("--root", default=None)
    known, _ = pre.parse_known_args(args)
    if known.config:
        try:
            cfg = RunConfig.load(known.config, known.sets + ([f"root={known.root}"] if known.root else []))
        except ConfigError:
            return pipeline_main(args)  # the runner reports a bad config in its own words
        items = run_checks(cfg)
        if not all(it.ok for it in items):
            report([it for it in items if not it.ok], sys.stderr)
            print("mipd run: the check found problems (above); fix them, or skip the check with --no-check",
                  file=sys.stderr)
            return 2
    return pipeline_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
