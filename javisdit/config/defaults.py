"""Top-level config keys the scripts fill in when a config leaves them out.

These are the original scripts' fallbacks (PIPELINE.md §1.4), with its inconsistencies settled: ``dtype``
is ``bf16`` everywhere, and training writes to ``runs/`` as the README promises. A key listed here is
also a valid target of ``--cfg-options`` even when the config file does not mention it.
"""

from __future__ import annotations

from typing import Any

INFERENCE_DEFAULTS: dict[str, Any] = dict(
    dtype="bf16",
    seed=1024,
    verbose=1,
    audio_only=False,
    prompt=None,
    prompt_path=None,
    start_index=0,
    end_index=None,
    batch_size=1,
    num_sample=1,
    sample_name=None,
    prompt_as_path=False,
    save_dir="./samples/samples/",
    num_frames="4s",
    resolution="240p",
    aspect_ratio="9:16",
    image_size=None,
    fps=24,
    frame_interval=1,
    save_fps=None,  # None: fps // frame_interval
    aes=None,
    flow=None,
    camera_motion=None,
    model_path=None,
    neg_prompt=None,  # the unconditional text of models without a learned null caption (JavisDiT++)
    use_text_preprocessing=True,  # v0.1's caption cleaning; JavisDiT++ reads prompts as written
    lora_enabled=True,  # JavisDiT++: merge the checkpoint's LoRA (javisdit.models.wan.lora)
    lora_dir="lora",
    condition=None,  # X-conditional generation: javisdit.inference.conditioning
    ref_video=None,
    ref_audio=None,
    ref_image=None,
    keep_video=None,
    keep_audio=None,
    edit_strength=0.0,
    skip_bad_rows=False,
    loop=1,  # segments of an extended clip (javisdit.inference.extension.generate_extended)
    audio_after_video=False,  # a second pass: the sound again for the finished picture (inference.pipeline.generate)
    compile=False,  # torch.compile the denoiser's blocks (javisdit.models.compile): slower start, faster steps
    sp_size=1,  # processes per sample, its video frames sharded over them (javisdit.distributed.sequence_parallel)
)

TRAINING_DEFAULTS: dict[str, Any] = dict(
    dtype="bf16",
    seed=1024,
    outputs="runs",
    plugin="zero2",  # ColossalAI ZeRO-2 on CUDA; "ddp" (PyTorch DDP + AdamW) anywhere
    optimizer="adamw",  # torch AdamW (fused on CUDA); "hybrid_adam": ColossalAI's, zero2 only, needs nvcc
    grad_clip=0.0,
    grad_checkpoint=False,
    reduce_bucket_size_in_m=20,
    num_workers=4,
    prefetch_factor=None,
    lr=1e-4,
    weight_decay=0.0,
    adam_eps=1e-8,
    warmup_steps=None,
    epochs=1000,
    log_every=1,
    ckpt_every=0,
    ema_decay=0.9999,
    save_total_limit=None,
    wandb=False,
    record_time=False,
    load=None,
    start_from_scratch=False,
    load_va_features=False,
    load_text_features=False,
    audio_only=False,
    max_steps=None,  # stop after this many optimizer steps (None: run all epochs)
    nan_policy="stop",  # a non-finite loss or gradient norm: "stop" with an error (checkpoints kept) or "skip"
    find_unused_parameters=False,  # DDP plugin: needed only if some trainable weights get no gradient
    dist_timeout=30.0,  # minutes a collective may wait for the other ranks before the job fails
    ckpt_timeout=60.0,  # minutes the other ranks wait (on gloo, not NCCL) while rank 0 writes a checkpoint
    sp_size=1,  # processes per batch, its video frames sharded over them (javisdit.distributed.sequence_parallel)
)

#: ``scripts/train_prior.py`` (stage 2): a lower learning rate; the prior keeps no EMA and has no
#: text-feature or audio-only variants.
PRIOR_TRAINING_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in TRAINING_DEFAULTS.items()
       if k not in ("ema_decay", "load_text_features", "audio_only", "sp_size")},
    "lr": 1e-5,
}

#: ``scripts/train_vae.py`` (the autoencoders): no EMA unless ``ema_decay`` is set, no text-feature or
#: audio-only variants (``load_va_features``: the temporal VAE from extracted spatial latents); the KL weight
#: of LDM, and how many recent batches set the latent statistics.
AUTOENCODER_TRAINING_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in TRAINING_DEFAULTS.items()
       if k not in ("ema_decay", "load_text_features", "audio_only", "sp_size")},
    "ema_decay": None,
    "kl_weight": 1e-6,  # weight of the posterior's KL against the L1 reconstruction, both per input element
    "reconstruction_loss": "l1",  # "l1" (LDM's) or "l2" (mean squared error)
    "foreground_weight": 0.0,  # video: each element weighs 1 + w·d/mean(d), d its distance from the clip's background
    "autoencoder_parts": "all",  # video: train "all" (spatial + temporal VAE), "spatial" alone, or "temporal" alone
    "latent_stats_batches": 4,  # the last batches of rank 0 re-encoded for the latent shift / scale of model/
}

#: ``scripts/misc/extract_feat.py``: latents of a CSV's clips, ``bin_size`` batches per file.
EXTRACT_DEFAULTS: dict[str, Any] = dict(
    dtype="bf16",
    seed=1024,
    num_workers=4,
    prefetch_factor=None,
    bin_size=64,
    save_text_features=False,
    start_index=0,
    end_index=None,  # None: up to the last complete bin
    save_dir=None,  # required
    audio_only=False,
    video_latents="full",  # "spatial": the spatial VAE's latents of every frame (for autoencoder_parts="temporal")
)

#: Module specs (``dict(type=...)``) -> the registry their ``type`` is looked up in; their argument
#: names are checked while parsing, before anything is built.
SECTIONS: dict[str, str] = dict(model="model", vae="model", audio_vae="model", text_encoder="model",
                                prior_encoder="model", scheduler="scheduler", dataset="dataset")

_MODELS = ("model", "vae", "audio_vae", "text_encoder", "prior_encoder", "scheduler")
_DATA = ("dataset", "bucket_config", "audio_cfg")
#: Top-level keys each script reads besides its defaults: its module specs and a few optional keys.
EXTRA_KEYS: dict[str, tuple[str, ...]] = {
    "inference": (*_MODELS, "allow_tf32"),
    "train": (*_MODELS, *_DATA, "mask_ratios", "text_encoder_output_dim", "text_encoder_model_max_length",
              "wandb_project", "video_only"),
    "train_prior": ("model", "vae", "audio_vae", *_DATA, "wandb_project"),
    "train_vae": ("autoencoder", "vae", "audio_vae", *_DATA, "wandb_project"),
    "extract": ("vae", "audio_vae", "text_encoder", *_DATA),
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "inference": INFERENCE_DEFAULTS,
    "train": TRAINING_DEFAULTS,
    "train_prior": PRIOR_TRAINING_DEFAULTS,
    "train_vae": AUTOENCODER_TRAINING_DEFAULTS,
    "extract": EXTRACT_DEFAULTS,
}


def known_keys(mode: str) -> frozenset[str]:
    """Every top-level key the script of ``mode`` reads; any other key in a config is an error."""
    return frozenset(DEFAULTS[mode]) | frozenset(EXTRA_KEYS[mode]) | {"config"}
