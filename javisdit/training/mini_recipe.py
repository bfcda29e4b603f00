"""JavisDiT-mini from scratch: every stage of the recipe, in order, resumable (``scripts/train_mini.py``).

    data               make_mini_dataset, 3000 clips of 2.25 s  -> OUT/data/*.csv (data/mini.md)
    text               the frozen random text encoders          -> OUT/text_encoder/, OUT/imagebind_text_tiny.safetensors
    vae_video_spatial  train_vae.py mini/vae_video_spatial.py   -> OUT/vae_video_spatial/model/
    spatial_latents    extract_feat.py mini/spatial_latents.py  -> OUT/spatial_latents/ (spatial latent bins)
    vae_video          train_vae.py mini/vae_video.py           -> OUT/vae_video/model/ (+ the temporal VAE)
    vae_audio          train_vae.py mini/vae_audio.py           -> OUT/vae_audio/model/ (vae/)
    extract            extract_feat.py mini/extract_va.py       -> OUT/extract/ (latent bins)
    video_branch       train.py mini/video_branch.py            -> OUT/video_branch/model/ (EMA)
    stage1_audio       train.py mini/stage1_audio.py            -> OUT/stage1_audio/model/ (EMA)
    stage2_prior       train_prior.py mini/stage2_prior.py      -> OUT/stage2_prior/model/
    stage3_jav         train.py mini/stage3_jav.py              -> OUT/stage3_jav/model/ (EMA)
    release            fp16 copies, assets/javisdit-mini layout -> OUT/release/

Each training stage runs as its own process (its log in ``OUT/<stage>/log.txt``) with the configs' paths
pointed at this recipe's folders by ``--cfg-options``. A stage whose ``model/`` exists is done and
skipped; an interrupted stage resumes from its latest checkpoint. ``OUT/recipe.json`` records each
stage's wall time (an interrupted stage's time so far is kept and added when it ends) and the settings.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from javisdit.errors import UserError

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the repository: scripts/ and configs/mini/ live there
TEXT_TOWER_FILE = "imagebind_text_tiny.safetensors"
# Clips of 54 frames (2.25 s at 24 fps, 64x64): the stages train on random 51-frame windows (2.125 s, v0.1's
# "2s": 15 video latent frames, 224 mel frames), since a bucket of T frames takes clips longer than T.
CLIP_SECONDS = 2.25
RELEASE_PARTS = ("text_encoder", TEXT_TOWER_FILE, "vae_video", "vae_audio", "prior", "model")


@dataclass(frozen=True)
class Stage:
    name: str
    script: str
    config: str
    data: str  # the training data, relative to the recipe's folder: a CSV, or the latent bins
    ema: bool = False  # export the averaged weights (else the last checkpoint's model/)
    options: tuple[str, ...] = field(default=())


def training_stages(out: Path) -> list[Stage]:
    """The training stages in order, with the ``--cfg-options`` that point them at ``out``'s folders."""
    vaes = (f"vae.from_pretrained={out / 'vae_video' / 'model'}",
            f"audio_vae.from_pretrained={out / 'vae_audio' / 'model'}")
    text = f"text_encoder.from_pretrained={out / 'text_encoder'}"
    tower = out / TEXT_TOWER_FILE
    spatial = f"vae.from_pretrained={out / 'vae_video_spatial' / 'model'}"
    return [
        Stage("vae_video_spatial", "scripts/train_vae.py", "configs/mini/vae_video_spatial.py", "data/vae.csv"),
        Stage("spatial_latents", "scripts/misc/extract_feat.py", "configs/mini/spatial_latents.py", "data/vae.csv",
              options=(spatial,)),
        Stage("vae_video", "scripts/train_vae.py", "configs/mini/vae_video.py", "spatial_latents", options=(spatial,)),
        Stage("vae_audio", "scripts/train_vae.py", "configs/mini/vae_audio.py", "data/stage1_audio.csv"),
        Stage("extract", "scripts/misc/extract_feat.py", "configs/mini/extract_va.py", "data/stage3_jav.csv",
              options=vaes),
        Stage("video_branch", "scripts/train.py", "configs/mini/video_branch.py", "extract", ema=True, options=(text,)),
        Stage("stage1_audio", "scripts/train.py", "configs/mini/stage1_audio.py", "data/stage1_audio.csv", ema=True,
              options=(*vaes, text, f"model.weight_init_from={[str(out / 'video_branch' / 'model')]!r}")),
        Stage("stage2_prior", "scripts/train_prior.py", "configs/mini/stage2_prior.py", "data/stage2_prior.csv",
              options=(*vaes, f"model.imagebind_ckpt_path={tower}")),
        Stage("stage3_jav", "scripts/train.py", "configs/mini/stage3_jav.py", "extract", ema=True,
              options=(text, f"prior_encoder.from_pretrained={out / 'stage2_prior' / 'model'}",
                       f"prior_encoder.imagebind_ckpt_path={tower}",
                       f"model.weight_init_from={[str(out / 'stage1_audio' / 'model'), str(out / 'video_branch' / 'model')]!r}")),
    ]


STAGE_NAMES = ("data", "text", *(s.name for s in training_stages(Path("."))), "release")


@dataclass
class Recipe:
    out: Path
    num_clips: int = 3000
    seed: int = 0
    steps_scale: float = 1.0  # multiplies every stage's max_steps (at least 2 steps): for quick checks
    workers: int = 2
    python: str = sys.executable
    times: dict[str, float] = field(default_factory=dict)
    partial: dict[str, float] = field(default_factory=dict)  # seconds of interrupted stages, added when they end

    # ----- the whole recipe ------------------------------------------------------------------------------------

    def run(self, stages: Sequence[str] = STAGE_NAMES) -> dict[str, float]:
        """Run ``stages`` (names of ``STAGE_NAMES``, in recipe order); returns seconds per stage run."""
        unknown = [s for s in stages if s not in STAGE_NAMES]
        if unknown:
            raise UserError(f"unknown stage(s) {unknown}; valid: {', '.join(STAGE_NAMES)}")
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_record()
        by_name = {s.name: s for s in training_stages(self.out)}
        for name in (s for s in STAGE_NAMES if s in stages):
            if self._done(name):
                logger.info("%s: done before (%s), skipped", name, self._product(name))
                continue
            start = time.perf_counter()
            logger.info("%s: running", name)
            try:
                if name == "data":
                    self._data()
                elif name == "text":
                    self._text()
                elif name == "release":
                    release(self.out, self.out / "release")
                else:
                    self._train(by_name[name])
            except BaseException:  # an error or Ctrl-C: the time spent counts when the stage resumes
                self.partial[name] = round(self.partial.get(name, 0.0) + time.perf_counter() - start, 1)
                self._save_record()
                raise
            self.times[name] = round(self.partial.pop(name, 0.0) + time.perf_counter() - start, 1)
            logger.info("%s: %.1f s", name, self.times[name])
            self._save_record()
        return dict(self.times)

    def _product(self, name: str) -> Path:
        return {"data": self.out / "data" / "heldout.csv", "text": self.out / TEXT_TOWER_FILE,
                "release": self.out / "release" / "model"}.get(name, self.out / name / "model")

    def _done(self, name: str) -> bool:
        return self._product(name).exists()

    def _record_path(self) -> Path:
        return self.out / "recipe.json"

    def _load_record(self) -> None:
        path = self._record_path()
        if path.is_file():
            record = json.loads(path.read_text())
            settings = record.get("settings", {})
            if settings and settings != self._settings():
                raise UserError(f"{self.out} holds a recipe run with other settings ({settings}); use another "
                                "folder or the same settings")
            self.times = {**record.get("seconds", {}), **self.times}
            self.partial = {**record.get("interrupted_seconds", {}), **self.partial}

    def _settings(self) -> dict:
        return dict(num_clips=self.num_clips, seed=self.seed, steps_scale=self.steps_scale)

    def _save_record(self) -> None:
        record = dict(settings=self._settings(), seconds=self.times,
                      total_seconds=round(sum(self.times.values()), 1))
        if self.partial:
            record["interrupted_seconds"] = self.partial
        tmp = self._record_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self._record_path())

    # ----- the stages --------------------------------------------------------------------------------------------

    def _data(self) -> None:
        from javisdit.datasets.bouncing import make_mini_dataset

        make_mini_dataset(self.out / "data", self.num_clips, CLIP_SECONDS, 24, 64, 64, seed=self.seed,
                          workers=self.workers)

    def _text(self) -> None:
        import pandas as pd

        from javisdit.models.prior.imagebind_text import write_random_text_tower
        from javisdit.models.text.words import vocabulary, write_word_t5

        texts = []
        for csv in sorted((self.out / "data").glob("*.csv")):
            table = pd.read_csv(csv, keep_default_na=False)
            texts += [t for column in ("text", "audio_text") if column in table for t in table[column]]
        words = vocabulary(texts)
        write_word_t5(self.out / "text_encoder", words, preset="mini", seed=self.seed, model_max_length=32)
        write_random_text_tower(self.out / TEXT_TOWER_FILE, preset="tiny", seed=self.seed)
        logger.info("text: a random word-level T5 over %d words and a random tiny ImageBind text tower", len(words))

    def _train(self, stage: Stage) -> None:
        from mmengine.config import Config

        folder = self.out / stage.name
        if stage.script.endswith("extract_feat.py"):
            self._extract(stage, folder)
            return
        runs = folder / "runs"
        config = Config.fromfile(str(ROOT / stage.config))
        steps = max(2, round(int(config.max_steps) * self.steps_scale))
        command = [self.python, str(ROOT / stage.script), str(ROOT / stage.config), "--outputs", str(runs),
                   "--data-path", str(self.out / stage.data), "--seed", str(self.seed)]
        previous = _latest_run(runs)
        if previous is not None:
            command += ["--load", str(previous)]
            logger.info("%s: resuming %s", stage.name, previous)
        options = [*stage.options, f"max_steps={steps}", f"ckpt_every={min(steps, int(config.ckpt_every))}"]
        if self.steps_scale != 1.0 and stage.script.endswith("train_vae.py"):
            options.append(f"latent_stats_batches={min(2, steps)}")
        command += ["--cfg-options", *options]
        self._call(stage, folder, command)
        run = _latest_run(runs)
        if run is None:
            raise UserError(f"{stage.name}: no checkpoint in {runs}; see {folder / 'log.txt'}")
        tmp = folder / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if stage.ema:
            from javisdit.training.checkpoint import export_ema

            export_ema(run, tmp)
        else:
            from javisdit.training.checkpoint import open_checkpoint

            shutil.copytree(open_checkpoint(run).model, tmp)
        tmp.replace(folder / "model")

    def _call(self, stage: Stage, folder: Path, command: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.txt", "a") as log:
            log.write("$ " + " ".join(command) + "\n")
            log.flush()
            result = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise UserError(f"{stage.name} failed (exit {result.returncode}); see {folder / 'log.txt'} (rerun to "
                            "resume where it stopped)")

    def _extract(self, stage: Stage, folder: Path) -> None:
        """Latents of the training clips, in bins (a rerun skips the bins already written)."""
        command = [self.python, str(ROOT / stage.script), str(ROOT / stage.config), "--save-dir", str(folder),
                   "--data-path", str(self.out / stage.data), "--seed", str(self.seed)]
        if self.steps_scale != 1.0:  # a quick check: the first bin only
            command += ["--end-index", "1", "--cfg-options", *stage.options, "bin_size=2"]
        else:
            command += ["--cfg-options", *stage.options]
        self._call(stage, folder, command)
        (folder / "model").write_text("complete\n")  # the marker _done looks for


def _latest_run(runs: Path) -> Path | None:
    """The newest ``NNN-<Model>`` folder under ``runs`` that holds a checkpoint, or None."""
    from javisdit.models.loading import latest_checkpoint

    found = sorted(p for p in runs.glob("[0-9][0-9][0-9]-*") if p.is_dir()) if runs.is_dir() else []
    for run in reversed(found):
        if latest_checkpoint(run) is not None:
            return run
    return None


def release(out: Path, target: Path) -> Path:
    """The trained parts of a recipe folder ``out`` in the shipped layout (``assets/javisdit-mini``), fp16."""
    import torch
    from safetensors.torch import load_file, save_file

    from javisdit.models.prior import _VA_ENCODER

    sources = {"text_encoder": out / "text_encoder", TEXT_TOWER_FILE: out / TEXT_TOWER_FILE,
               "vae_video": out / "vae_video" / "model", "vae_audio": out / "vae_audio" / "model",
               "prior": out / "stage2_prior" / "model", "model": out / "stage3_jav" / "model"}
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
        raise UserError(f"release: missing {', '.join(missing)} (run the stages before it)")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, source in sources.items():
        if source.is_file():
            shutil.copy2(source, tmp / name)
            continue
        for file in sorted(source.rglob("*")):
            dest = tmp / name / file.relative_to(source)
            if file.is_dir():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if file.suffix != ".safetensors":
                shutil.copy2(file, dest)
                continue
            state = load_file(str(file))
            if name == "prior":  # inference reads the prior alone: the stage-2 video-audio encoders stay behind
                state = {k: v for k, v in state.items() if not k.startswith(_VA_ENCODER)}
            state = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
            save_file(state, str(dest), metadata={"format": "pt"})
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target
