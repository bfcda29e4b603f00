"""The command-line flags of the scripts, as one table, and the argparse parser built from it.

Each flag names where its value goes in the config (its merge targets), so the parser, the merge and
the tests all read the same table. Flags of the original that never worked, or that need services we
do not ship, are rejected with a reason instead of a bare "unrecognized arguments".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from javisdit.errors import ConfigError
from javisdit.sizes import ASPECT_RATIO_NAMES, ASPECT_RATIOS, check_resolution, parse_num_frames

INFERENCE, TRAINING, EXTRACT, COMMON = "inference", "training", "extract", "common"
SCOPES = (INFERENCE, TRAINING, EXTRACT)

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def str2bool(value: str | bool) -> bool:
    """Parse a boolean written as true/false, yes/no, t/f, y/n or 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {value!r}: use true/false, yes/no or 1/0")


def _check_num_frames(text: str) -> int:
    """An integer or ``Ns`` (whether the config's fps has a table entry for it is checked with the fps)."""
    return parse_num_frames(text, fps=0)


def _checked(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse type that validates with ``check`` but keeps the text as given."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return text

    parse.__name__ = check.__name__
    return parse


def _check_aspect_ratio(text: str) -> None:
    keys = {key for _, table in ASPECT_RATIOS.values() for key in table}
    if text not in ASPECT_RATIO_NAMES and text not in keys:
        raise ConfigError(
            f"unknown aspect ratio {text!r}; valid: {', '.join(ASPECT_RATIO_NAMES)} or a table key "
            "such as 0.56"
        )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


_positive_int.__name__ = "positive int"
_non_negative_int.__name__ = "non-negative int"


@dataclass(frozen=True)
class Flag:
    """One command-line flag and where its value lands in the config.

    ``targets`` are dotted config paths. A top-level path is always written; a nested one only when
    its section exists (e.g. ``prior_encoder`` in a config without a prior), but at least one target
    must be written. Empty ``targets`` mean the top-level key named after the flag. ``also``: further
    scopes that share the flag (feature extraction reuses ``--save-dir`` and the index range).
    """

    name: str
    scope: str
    help: str
    type: Callable[[str], Any] | None = str
    targets: tuple[str, ...] = ()
    nargs: str | int | None = None
    choices: tuple[Any, ...] | None = None
    is_bool: bool = False
    also: tuple[str, ...] = ()
    not_in: tuple[str, ...] = ()  # script modes of its scopes that do not take it (e.g. ``train_prior``)

    @property
    def scopes(self) -> tuple[str, ...]:
        """Every scope whose scripts take this flag (``common``: all of them)."""
        return SCOPES if self.scope == COMMON else (self.scope, *self.also)

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")

    @property
    def paths(self) -> tuple[str, ...]:
        return self.targets or (self.dest,)


def _bool(name: str, scope: str, help: str, targets: tuple[str, ...] = (), **kwargs: Any) -> Flag:
    return Flag(name, scope, help, type=str2bool, targets=targets, is_bool=True, **kwargs)


FLAGS: tuple[Flag, ...] = (
    # --- common -------------------------------------------------------------------------------------
    Flag("--seed", COMMON, "random seed", type=int),
    Flag("--dtype", COMMON, "compute dtype", choices=("fp32", "fp16", "bf16")),
    Flag("--ckpt-path", INFERENCE, "weights of the model, written into model.from_pretrained",
         targets=("model.from_pretrained",), also=(TRAINING,), not_in=("train_vae",)),
    _bool("--flash-attn", INFERENCE, "use flash-attn for the diffusion model's self-attention when installed",
          targets=("model.enable_flash_attn",), also=(TRAINING,), not_in=("train_prior", "train_vae")),
    _bool("--layernorm-kernel", INFERENCE, "use apex fused LayerNorm in the trained model when installed",
          targets=("model.enable_layernorm_kernel",), also=(TRAINING,), not_in=("train_vae",)),
    # --- training and feature extraction -------------------------------------------------------------
    Flag("--data-path", TRAINING, "training CSV or feature folder, written into dataset.data_path",
         targets=("dataset.data_path",), also=(EXTRACT,)),
    Flag("--outputs", TRAINING, "experiment root folder (runs/NNN-<model> is made in it)"),
    # --- inference ----------------------------------------------------------------------------------
    Flag("--batch-size", INFERENCE, "prompts per batch", type=_positive_int),
    Flag("--resolution", INFERENCE, f"resolution name: {', '.join(ASPECT_RATIOS)}",
         type=_checked(check_resolution)),
    Flag("--save-dir", INFERENCE, "output folder", also=(EXTRACT,)),
    Flag("--sample-name", INFERENCE, "file name prefix of the samples (default: sample)"),
    Flag("--start-index", INFERENCE, "first prompt of --prompt-path to use, also offsetting the numbering "
         "(feature extraction: first bin)", type=_non_negative_int, also=(EXTRACT,)),
    Flag("--end-index", INFERENCE, "stop before this prompt of --prompt-path (feature extraction: before this "
         "bin; default: the last)", type=_non_negative_int, also=(EXTRACT,)),
    _bool("--compile", INFERENCE, "torch.compile the diffusion model's blocks (a slower start for faster steps; "
          "needs a C++ compiler on CPU, Triton on CUDA)"),
    Flag("--sp-size", INFERENCE, "sequence parallelism under torchrun: groups of this many consecutive "
         "processes compute each sample together, its video frames sharded over them (VASTDiT3 only; must divide "
         "the number of processes); the groups share the prompts (in training: the batches)", type=_positive_int,
         also=(TRAINING,), not_in=("train_prior", "train_vae")),
    Flag("--model-path", INFERENCE, "weights of the diffusion model (hub id, folder or file); wins over "
         "model.from_pretrained"),
    Flag("--lora-dir", INFERENCE, "JavisDiT++: the LoRA adapter folder inside the checkpoint, merged at load "
         "(default lora)"),
    Flag("--num-sample", INFERENCE, "samples per prompt", type=_positive_int),
    _bool("--prompt-as-path", INFERENCE, "name each output after its prompt"),
    Flag("--verbose", INFERENCE, "0: quiet, 1: a bar over prompts, 2: a bar per sampling run",
         type=int, choices=(0, 1, 2)),
    Flag("--prompt-path", INFERENCE, ".txt (one prompt a line) or .csv (a 'text' column) of prompts"),
    Flag("--prompt", INFERENCE, "one or more prompts", nargs="+"),
    Flag("--num-frames", INFERENCE, "frames per clip: an integer, or seconds: at 24 fps 2s, 4s, 8s, 16s, 32s "
         "(Open-Sora's table, 4s = 102 frames), at other rates Ns = N*fps+1 frames (4s = 65 at 16 fps)",
         type=_checked(_check_num_frames)),
    Flag("--fps", INFERENCE, "frames per second of the generated video", type=_positive_int),
    Flag("--save-fps", INFERENCE, "frame rate written into the mp4", type=_positive_int),
    Flag("--image-size", INFERENCE, "frame height and width in pixels (bypasses the resolution tables)",
         type=_positive_int, nargs=2),
    Flag("--frame-interval", INFERENCE, "frame stride; the default save fps is fps // frame-interval",
         type=_positive_int),
    Flag("--aspect-ratio", INFERENCE, "H:W such as 9:16, or a table key such as 0.56",
         type=_checked(_check_aspect_ratio)),
    Flag("--num-sampling-steps", INFERENCE, "sampling steps", type=_positive_int,
         targets=("scheduler.num_sampling_steps",)),
    Flag("--cfg-scale", INFERENCE, "classifier-free guidance scale", type=float,
         targets=("scheduler.cfg_scale",)),
    Flag("--aes", INFERENCE, "append ' aesthetic score: X.' to prompts", type=float),
    Flag("--flow", INFERENCE, "append ' motion score: X.' to prompts", type=float),
    Flag("--camera-motion", INFERENCE, "append ' camera motion: X.' to prompts"),
    # --- X-conditional generation (javisdit.inference.conditioning) ------------------------------------
    Flag("--condition", INFERENCE, "X-conditional mode: v2a (a video -> its soundtrack), a2v (a sound -> its "
         "video), i2av (an image as the first frame), ia2v (an image animated to a sound), interpolate (every "
         "other latent frame of a video kept), extend (a video continued: with --loop)",
         choices=("v2a", "a2v", "i2av", "ia2v", "interpolate", "extend")),
    Flag("--loop", INFERENCE, "segments of one longer clip: each after the first continues the last frames "
         "(and their sound) of the one before; one mp4", type=_positive_int),
    Flag("--ref-video", INFERENCE, "reference video for every prompt (a CSV's video_path column: one per row)"),
    Flag("--ref-audio", INFERENCE, "reference sound for every prompt (a CSV's audio_path column: one per row); "
         "with --ref-video it replaces the video's own sound"),
    Flag("--ref-image", INFERENCE, "reference image for every prompt (a CSV's image_path column: one per row)"),
    Flag("--keep-video", INFERENCE, "without --condition: seconds of the reference video to keep, "
         "START-END[,START-END...], e.g. 0-1"),
    Flag("--keep-audio", INFERENCE, "without --condition: seconds of the reference sound to keep, e.g. 1-2"),
    Flag("--edit-strength", INFERENCE, "0 keeps the reference's kept frames exactly (default), 1 regenerates "
         "them, between re-noises them to that level", type=float),
    _bool("--skip-bad-rows", INFERENCE, "go on past a prompt whose reference cannot be used (logged, counted "
          "at the end) instead of stopping"),
    # --- training -----------------------------------------------------------------------------------
    Flag("--lr", TRAINING, "learning rate", type=float),
    _bool("--wandb", TRAINING, "log to Weights & Biases"),
    Flag("--load", TRAINING, "checkpoint folder to resume from"),
    _bool("--start-from-scratch", TRAINING, "with --load: load weights and optimizer, restart the counters"),
    Flag("--warmup-steps", TRAINING, "linear learning-rate warm-up steps", type=_non_negative_int),
    _bool("--record-time", TRAINING, "log the time of each phase of a step"),
)

#: Flags of the original that this implementation rejects, with the reason shown to the user.
UNSUPPORTED_FLAGS: dict[str, str] = {
    "--llm-refine": "prompt refinement through the OpenAI API is not part of this implementation",
    "--prompt-generator": "endless generation from a fixed prompt is not supported; pass --prompt",
    "--watermark": "watermarking is not supported",
    "--condition-frame-length": "each segment of --loop keeps the longest head stage 3 trained (a quarter of "
                                "the latent frames)",
    "--reference-path": "use --condition with --ref-video / --ref-audio / --ref-image (or --keep-video / "
                        "--keep-audio for time ranges) instead",
    "--mask-strategy": "use --condition (v2a, a2v, i2av, ia2v, interpolate) or --keep-video / --keep-audio "
                       "instead",
    "--audio-prompt": "the original parsed it but never used it; put the audio caption in a CSV "
                      "'audio_text' column instead",
    "--audio-prompt-path": "the original parsed it but never used it; put the audio caption in a CSV "
                           "'audio_text' column instead",
    "--host": "use torchrun's --nnodes/--rdzv-* options to launch on several nodes",
    "--port": "use torchrun's --master-port / --rdzv-endpoint options",
    "--load-data": "per-sample pre-processed buffers are not supported; use the *_feat configs",
    "--save-data": "per-sample pre-processed buffers are not supported; use scripts/misc/extract_feat.py",
}


def flags_for(scope: str, mode: str | None = None) -> tuple[Flag, ...]:
    """The flags of a script of ``scope`` (``inference``, ``training`` or ``extract``), common ones included;
    ``mode`` (``train``, ``train_prior``, ...) also leaves out the flags that script does not honour."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(map(repr, SCOPES))}, got {scope!r}")
    return tuple(flag for flag in FLAGS if scope in flag.scopes and mode not in flag.not_in)


class _Unsupported(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # noqa: D102
        parser.error(f"{option_string} is not supported: {UNSUPPORTED_FLAGS[option_string]}")


def build_parser(scope: str, prog: str | None = None, description: str | None = None,
                 mode: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with the config path, the flags of ``scope`` (and ``mode``) and the generic overrides."""
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False)
    parser.add_argument("config", help="config file (.py), e.g. configs/javisdit-v0-1/inference/sample.py")
    for flag in flags_for(scope, mode):
        kwargs: dict[str, Any] = dict(help=flag.help, default=None)
        if flag.is_bool:
            kwargs.update(type=str2bool, nargs="?", const=True, metavar="BOOL")
        else:
            kwargs.update(type=flag.type, nargs=flag.nargs, choices=flag.choices)
        parser.add_argument(flag.name, **kwargs)
    parser.add_argument(
        "--cfg-options", nargs="+", default=None, metavar="KEY=VALUE",
        help="override any config value by its dotted path, e.g. model.depth=2 scheduler.cfg_scale=5.0",
    )
    parser.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    for name in UNSUPPORTED_FLAGS:
        parser.add_argument(name, nargs="*", action=_Unsupported, help=argparse.SUPPRESS)
    return parser
