"""The JavisBench evaluation run: rows shared between processes, metric groups one after another, the
result file rewritten after each group (so an interrupted run resumes where it stopped), and the
protocol record.

Launched by ``scripts/eval/javisbench.py`` directly or with ``torchrun`` (rows ``rank::world`` per
process, gathered on rank 0, which alone computes the set metrics and writes files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from javisdit.distributed import wait_for_main
from javisdit.errors import UserError
from javisdit.eval import metrics, report, scores
from javisdit.eval.groups import GROUPS, NOT_IMPLEMENTED, Failure, Group, Networks, compute
from javisdit.eval.inputs import CATEGORIES, Row, read_rows
from javisdit.eval.networks.audioclip import FAD_SCALE
from javisdit.eval.media import Sample, SampleError, is_silent, load_sample
from javisdit.eval.protocol import MetricCount, SampleFacts, Settings, protocol_block
from javisdit.eval.reference import load_reference, reference_features

logger = logging.getLogger(__name__)


@dataclass
class Options:
    input_file: str
    output_file: str
    settings: Settings
    infer_data_dir: str | None = None
    metrics: tuple[str, ...] = ("all",)
    exclude: tuple[str, ...] = ()
    verbose: bool = False
    fvd_avcache_path: str | None = None
    force_eval: bool = False
    save_per_sample: bool = False
    allow_missing: bool = False
    checkpoint_dir: str = "./checkpoints/eval"
    download: bool = False


def select(metric_names: tuple[str, ...], exclude: tuple[str, ...]) -> list[tuple[Group, tuple[str, ...]]]:
    """The groups to run and the keys of each, from ``--metrics`` and ``--exclude``."""
    names = list(GROUPS) if "all" in metric_names else list(metric_names)
    known_keys = {k for g in GROUPS.values() for k in g.keys}
    for name in [*names, *exclude]:
        if name in NOT_IMPLEMENTED:
            raise UserError(f"metric group {name!r} is upstream's but not part of this evaluator "
                            f"(its networks are not in the v0.1 paper); available: all, {', '.join(GROUPS)}")
        if name not in GROUPS and name not in known_keys and name != "all":
            raise UserError(f"unknown metric {name!r}; groups: all, {', '.join(GROUPS)}; "
                            f"single keys for --exclude: {', '.join(sorted(known_keys))}")
    chosen = []
    for name in names:
        if name in exclude:
            continue
        keys = tuple(k for k in GROUPS[name].keys if k not in exclude)
        if name == "fvd+kvd+fad" and keys and len(keys) < 3:
            keys = GROUPS[name].keys  # the three share one feature pass
        if keys:
            chosen.append((GROUPS[name], keys))
    return chosen


def _facts(sample: Sample, row: Row) -> SampleFacts:
    return SampleFacts(sample.num_frames, sample.fps, int(sample.frames.shape[1]), int(sample.frames.shape[2]),
                       sample.sample_rate, int(sample.audio.shape[0]), sample.audio_duration,
                       "wav" if row.audio is not None else "video track")


def _gather(obj: Any, world: int) -> list[Any]:
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


class Evaluation:
    """One evaluation run (see the module docstring)."""

    def __init__(self, options: Options, rank: int = 0, world: int = 1, device: torch.device | None = None):
        self.o, self.rank, self.world = options, rank, world
        self.device = device or torch.device("cpu")
        self.settings = options.settings
        self.rows, self.missing = read_rows(options.input_file, options.infer_data_dir, options.settings.eval_gt,
                                            options.settings.eval_num, options.allow_missing, options.verbose)
        self.results = report.read_results(options.output_file)
        self._check_resumable()
        previous = self.results.get("protocol", {})
        self.counts = {k: MetricCount(**{f: v for f, v in c.items() if f in ("rows", "failed", "skipped")})
                       for k, c in previous.get("metrics", {}).items()}
        self.checkpoints: dict[str, dict] = dict(previous.get("checkpoints", {}))
        self.reference_info = previous.get("reference")
        self.facts: dict[int, SampleFacts] = {}
        self.per_sample: dict[int, dict[str, float | None]] = {}
        self.nets = Networks(options.checkpoint_dir, options.settings.network_size, self.device, options.download)

    def _check_resumable(self) -> None:
        old = self.results.get("protocol", {}).get("settings")
        if not old:
            return
        now = self.settings.comparable()
        diff = {k: (old.get(k), v) for k, v in now.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items())
            raise UserError(f"{self.o.output_file} holds results computed with other settings ({changes}); "
                            "write to another --output-file (numbers of different protocols must not mix)")

    # ------------------------------------------------------------------------------------------ running
    def run(self) -> dict:
        for group, keys in select(self.o.metrics, self.o.exclude):
            todo = tuple(k for k in keys if self.o.force_eval or k not in self.results)
            if not todo:
                logger.info("%s: already in %s, skipped (--force-eval recomputes)", group.name, self.o.output_file)
                continue
            if group.set_metrics and self.settings.eval_gt:
                raise UserError("FVD/KVD/FAD compare the samples with the ground truth, so they cannot run with "
                                "--eval-gt; add --exclude fvd+kvd+fad")
            values = self._per_sample(group, todo)
            if self.rank == 0:
                self._aggregate(group, todo, values)
                self._write()
            self.nets.release()
        if self.world > 1:  # leave together: a rank that tears its group down early can abort the others
            wait_for_main()
        return self.results

    def _per_sample(self, group: Group, keys: tuple[str, ...]) -> dict[int, dict[str, Any]]:
        """Every row's values for ``keys``, gathered from all processes (on every rank)."""
        from tqdm import tqdm

        mine = self.rows[self.rank::self.world]
        local: dict[int, dict[str, Any]] = {}
        facts: dict[int, SampleFacts] = {}
        for row in tqdm(mine, desc=group.name, disable=self.rank != 0, unit="clip"):
            try:
                sample = load_sample(row.video, row.audio)
            except SampleError as err:
                if not self.o.allow_missing:
                    raise UserError(f"row {row.index}: {err} (pass --allow-missing to evaluate the other rows)") \
                        from None
                local[row.index] = {k: Failure(str(err)) for k in keys}
                continue
            facts[row.index] = _facts(sample, row)
            if is_silent(sample.audio):
                logger.warning("row %d: the audio of %s is silent", row.index, sample.audio_path)
            local[row.index] = compute(group, keys, sample, row, self.nets, self.settings)
        merged: dict[int, dict[str, Any]] = {}
        for part_values, part_facts, part_hashes in _gather((local, facts, self.nets.hashes), self.world):
            merged.update(part_values)
            self.facts.update(part_facts)
            self.checkpoints.update(part_hashes)
        return dict(sorted(merged.items()))

    # -------------------------------------------------------------------------------------- aggregating
    def _aggregate(self, group: Group, keys: tuple[str, ...], values: dict[int, dict[str, Any]]) -> None:
        by_index = {row.index: row for row in self.rows}
        if group.set_metrics:
            self._set_metrics(values, by_index)
            return
        for key in keys:
            count = MetricCount()
            per_row: list[float | None] = []
            for index, row_values in values.items():
                value = row_values.get(key)
                if isinstance(value, Failure) or value is None:
                    count.failed += 1
                    count.failures.append(f"row {index}: {value.reason if value else 'no value'}")
                    per_row.append(None)
                else:
                    count.rows += 1
                    per_row.append(float(value))
                self.per_sample.setdefault(index, {})[key] = per_row[-1]
            count.skipped = len(self.missing)
            for line in count.failures[:5]:
                logger.warning("%s failed on %s", key, line)
            self.counts[key] = count
            valid = [v for v in per_row if v is not None]
            mean = scores.mean(valid)
            logger.info("%s = %.6g (%d rows, %d failed)", key, mean, count.rows, count.failed)
            if not self.o.verbose:
                self.results[key] = mean
                continue
            kept = [(v, by_index[i].categories) for v, i in zip(per_row, values) if v is not None]
            self.results[key] = {"overall": mean, "all": per_row,
                                 **scores.category_means([v for v, _ in kept], [c for _, c in kept])}

    def _set_metrics(self, values: dict[int, dict[str, Any]], by_index: dict[int, Row]) -> None:
        ok = [i for i, v in values.items() if not isinstance(v.get("fvd"), Failure)]
        failed = [f"row {i}: {values[i]['fvd'].reason}" for i in values if i not in ok]
        if len(ok) < 2:
            raise UserError(f"FVD/KVD/FAD need at least 2 samples, {len(ok)} could be read")
        video = np.stack([values[i]["fvd"] for i in ok])
        audio = np.stack([values[i]["fad"] for i in ok])
        real_video, real_audio, self.reference_info = self._reference(ok, by_index)
        fad_scale = FAD_SCALE if self.settings.mode == "faithful" else 1.0
        center = self.settings.mode == "faithful"

        def compute_set(positions: list[int]) -> dict[str, float]:
            n = min(len(positions), len(real_video))
            fake_v, fake_a = video[positions][:n], audio[positions][:n]
            ref_v, ref_a = real_video[positions][:n], real_audio[positions][:n]
            if n < 2:
                return {"fvd": float("nan"), "kvd": float("nan"), "fad": float("nan")}
            return {"fvd": metrics.frechet_distance(fake_v, ref_v),
                    "kvd": metrics.kernel_distance(fake_v, ref_v, center_each=center),
                    "fad": metrics.frechet_distance(fake_a, ref_a) * fad_scale}

        whole = compute_set(list(range(len(ok))))
        for key in ("fvd", "kvd", "fad"):
            self.counts[key] = MetricCount(rows=len(ok), failed=len(failed), skipped=len(self.missing),
                                           failures=list(failed))
        if not self.o.verbose:
            self.results.update(whole)
        else:
            cats = [by_index[i].categories for i in ok]
            per_category = {pair: compute_set(pos) for pair, pos in scores.category_subsets(cats).items() if pos}
            for key in ("fvd", "kvd", "fad"):
                entry: dict[str, Any] = {"overall": whole[key]}
                for aspect, names in enumerate(CATEGORIES):
                    entry[str(aspect)] = [per_category.get((aspect, c), {}).get(key) for c in range(len(names))]
                self.results[key] = entry
        logger.info("FVD %.4g, KVD %.4g, FAD %.4g over %d samples", whole["fvd"], whole["kvd"], whole["fad"], len(ok))

    def _reference(self, ok: list[int], by_index: dict[int, Row]) -> tuple[np.ndarray, np.ndarray, dict]:
        """Ground-truth features aligned with ``ok`` (the cache is indexed by CSV row)."""
        if self.o.fvd_avcache_path:
            video, audio, info = load_reference(self.o.fvd_avcache_path)
            if max(ok) >= len(video):
                raise UserError(f"--fvd-avcache-path holds {len(video)} rows, but row {max(ok)} is evaluated: "
                                "the cache must come from the same CSV")
            return video[ok], audio[ok], info
        rows = [by_index[i] for i in ok]
        if any(not r.gt_video for r in rows):
            raise UserError("FVD/KVD/FAD need ground truth: pass --fvd-avcache-path (e.g. JavisBench-vanilla-max4s.pt)"
                            " or give the CSV a `path` column of real clips")
        video, audio = reference_features(rows, self.nets, self.settings)
        return video, audio, {"source": "computed from the CSV's `path`/`audio_path` columns", "rows": len(rows)}

    def _write(self) -> None:
        rows = {"in_csv": len(self.rows) + len(self.missing), "evaluated": len(self.rows),
                "missing": len(self.missing), "missing_rows": self.missing[:20]}
        previous = self.results.get("protocol", {})
        block = protocol_block(self.settings, self.facts, self.counts, self.checkpoints, self.reference_info, rows)
        if not self.facts and previous.get("samples"):
            block["samples"] = previous["samples"]
            block["warnings"] = previous.get("warnings", [])
        self.results["protocol"] = block
        report.write_json(self.o.output_file, self.results)
        report.write_reports(self.o.output_file, self.results)
        if self.o.save_per_sample and self.per_sample:
            report.write_per_sample(self.o.output_file, self.per_sample)
