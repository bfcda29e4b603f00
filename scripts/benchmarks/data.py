"""Benchmark the data path on synthetic clips: per-sample time of each step (video window decode, audio
load, mel, resize), samples/s of the dataset + DataLoader, and the window decode of a 4 s crop from a 5 s
and from a 60 s video (decoding only the window keeps them alike).

    python scripts/benchmarks/data.py [--workers 2] [--clips 8]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()

    import torch

    from javisdit.datasets import build_dataloader
    from javisdit.datasets.read import (align_to_video, audio_window, load_waveform, read_video_frames,
                                        temporal_window, video_info)
    from javisdit.datasets.synthetic import make_synthetic_dataset, render_clip
    from javisdit.datasets.transforms import resize_crop
    from javisdit.inference.media import write_mp4
    from javisdit.models.vae.mel import MelFrontEnd
    from javisdit.registry import DATASETS, build_module

    with tempfile.TemporaryDirectory() as tmp:
        paths = make_synthetic_dataset(tmp, args.clips, seconds=5.0, height=240, width=426)
        root = Path(tmp)
        row = __import__("pandas").read_csv(paths["stage3_jav"]).iloc[0]
        video, audio = root / row["path"], root / row["audio_path"]
        mel, steps = MelFrontEnd(), {}
        for _ in range(3):
            t = time.perf_counter()
            info = video_info(video)
            begin, end = temporal_window(info.num_frames, 102, 1, random.Random(0))
            frames = read_video_frames(video, np.linspace(begin, end - 1, 102, dtype=int))
            steps["video decode"] = time.perf_counter() - t
            t = time.perf_counter()
            wave = align_to_video(load_waveform(audio), info.num_frames, info.fps)
            a0, a1 = audio_window(wave, info.num_frames, begin, end, 102, 1)
            steps["audio load"] = time.perf_counter() - t
            t = time.perf_counter()
            mel(wave[a0:a1], 102 / 24)
            steps["mel"] = time.perf_counter() - t
            t = time.perf_counter()
            resize_crop(frames, 240, 426)
            steps["resize/crop"] = time.perf_counter() - t
        for name, seconds in steps.items():
            print(f"per sample, {name:12s} {1000 * seconds:7.1f} ms")

        ds = build_module(dict(type="VariableVideoAudioTextDataset", data_path=str(paths["stage3_jav"])), DATASETS)
        loader, _ = build_dataloader(ds, {"240p": {102: (1.0, 2)}}, num_workers=args.workers, num_replicas=1, rank=0,
                                     prefetch_factor=2 if args.workers else None)
        start = time.perf_counter()
        count = sum(batch["video"].shape[0] for batch in loader if batch is not None)
        wall = time.perf_counter() - start
        print(f"DataLoader, {args.workers} workers: {count} samples of 240p/4.25 s in {wall:.2f} s = "
              f"{count / wall:.2f} samples/s")

        for seconds in (5, 60):
            frames, wave, _ = render_clip(seconds, 24, 240, 426, "red", 0.7, 20)
            path = write_mp4(root / f"long_{seconds}.mp4", frames, 24, wave)
            del frames
            total = video_info(path).num_frames
            times = {}
            for where, first in (("start", 0), ("end", total - 110)):  # end: far from the last keyframe
                indices = np.arange(first, first + 102)
                read_video_frames(path, indices)
                t = time.perf_counter()
                for _ in range(3):
                    read_video_frames(path, indices)
                times[where] = 1000 * (time.perf_counter() - t) / 3
            t = time.perf_counter()
            read_video_frames(path, np.arange(total))
            print(f"4.25 s window of a {seconds:2d} s video: at the start {times['start']:6.1f} ms, at the end "
                  f"{times['end']:6.1f} ms (all {total} frames: {1000 * (time.perf_counter() - t):6.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
