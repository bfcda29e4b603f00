"""The shipped configs hold the original's keys and values (PIPELINE.md §2), however they are composed."""

from pathlib import Path

import pytest

from javisdit.config import load_config, parse_configs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
V01 = CONFIGS / "javisdit-v0-1"

VAE = dict(type="OpenSoraVAE_V1_2", from_pretrained="hpcai-tech/OpenSora-VAE-v1.2", micro_frame_size=17,
           micro_batch_size=4)
AUDIO_VAE = dict(type="AudioLDM2", from_pretrained="cvssp/audioldm2")
T5 = dict(type="t5", from_pretrained="DeepFloyd/t5-v1_1-xxl", model_max_length=300)
PRIOR = dict(type="STIBPrior", imagebind_ckpt_path="./checkpoints", from_pretrained="JavisVerse/JavisDiT-v0.1-prior",
             spatial_token_num=32, temporal_token_num=32, out_dim=128, hidden_size=512, apply_sampling=True,
             encode_va=False, qk_norm=True, enable_layernorm_kernel=True)
AUDIO_CFG = dict(
    preprocessing=dict(audio=dict(sampling_rate=16000, max_wav_value=32768.0, duration=10.24),
                       stft=dict(filter_length=1024, hop_length=160, win_length=1024),
                       mel=dict(n_mel_channels=64, mel_fmin=0, mel_fmax=8000)),
    augmentation=dict(mixup=0.0),
)
JAV_FLAGS = dict(type="VASTDiT3-XL/2", qk_norm=True, enable_flash_attn=True, enable_layernorm_kernel=True,
                 freeze_y_embedder=True, freeze_video_branch=True, freeze_audio_branch=True,
                 train_st_prior_attn=True, train_va_cross_attn=True, spatial_prior_len=32, temporal_prior_len=32,
                 st_prior_channel=128, audio_patch_size=(4, 1))
MULTI_RES_BUCKETS = {
    "144p": {51: (1.0, 16), 102: ((1.0, 0.5), 12), 204: ((1.0, 0.5), 6), 408: (1.0, 3)},
    "256": {51: (0.5, 10), 102: ((0.5, 0.5), 4), 204: ((0.5, 0.5), 2), 408: (1.0, 1)},
    "240p": {51: (0.5, 10), 102: ((0.5, 0.5), 4), 204: ((0.5, 0.5), 2), 408: (1.0, 1)},
    "360p": {51: (0.3, 4), 102: ((0.3, 0.5), 2), 204: ((0.3, 0.5), 1)},
    "512": {51: (0.2, 4), 102: ((0.2, 0.5), 2), 204: ((0.2, 0.4), 1)},
    "480p": {51: (0.2, 2), 102: ((0.2, 0.5), 1)},
    "720p": {51: (0.03, 1)},
    "1024": {51: (0.03, 1)},
}
JAV_DATASET = dict(type="VariableVideoAudioTextDataset", data_path=None, direct_load_video_clip=True,
                   transform_name="resize_crop", audio_transform_name="mel_spec_audioldm2")
NEG_AUG = dict(neg_aug=1, neg_aug_kwargs=dict(video_augmentation_pool="./data/st_prior/video/SA-V",
                                             audio_augmentation_pool="./data/st_prior/audio/TAVGBench"))
STIB_TRAIN = dict(type="STIBPrior", imagebind_ckpt_path="./checkpoints", hidden_size=512, apply_sampling=True,
                  encode_va=True, qk_norm=True, enable_layernorm_kernel=True,
                  spatial_token_num=32, temporal_token_num=32, out_dim=128)
RFLOW_TRAIN = dict(type="rflow", use_timestep_transform=True, sample_method="logit-normal")
RUN = dict(dtype="bf16", plugin="zero2", grad_checkpoint=True, seed=42, outputs="runs", wandb=False,
           log_every=10, save_total_limit=2)
EXTRACT = dict(dtype="bf16", seed=42)
INFERENCE_HEADER = dict(
    resolution="240p", aspect_ratio="9:16", num_frames="4s", fps=24, frame_interval=1,
    save_fps=24, save_dir="./samples/samples/", seed=42, batch_size=1, dtype="bf16", verbose=2, aes=6.5, flow=None,
    scheduler=dict(type="rflow", use_timestep_transform=True, num_sampling_steps=30, cfg_scale=7.0),
)
STAGE3_MODEL = dict(JAV_FLAGS, only_train_audio=False, weight_init_from=[
    "./checkpoints/JavisDiT-v0.1-audio", "./checkpoints/OpenSora-STDiT-v3/model.safetensors"])
STAGE3_SCHEDULE = dict(epochs=2, ckpt_every=50, load=None, lr=1e-4, warmup_steps=1000, ema_decay=0.99,
                       adam_eps=1e-15, grad_clip=1.0)
MASK_RATIOS = [("random", 0.01), ("video_to_audio", 0.05), ("audio_to_video", 0.05), ("sound_image_animate", 0.03),
               ("intepolate", 0.03), ("quarter_random", 0.005), ("quarter_head", 0.05), ("quarter_tail", 0.005),
               ("quarter_head_tail", 0.005), ("image_random", 0.005), ("image_head", 0.05), ("image_tail", 0.005),
               ("image_head_tail", 0.005)]
# Stage 3 reads the stage-2 result where the README moves it (the original read the hub id).
STAGE3_PRIOR = {**PRIOR, "from_pretrained": "./checkpoints/JavisDiT-v0.1-prior"}
PRIOR_SCHEDULE = dict(epochs=2, ckpt_every=200, load=None, lr=1e-5, warmup_steps=100, grad_clip=1.0)

EXPECTED = {
    "inference/sample.py": dict(
        INFERENCE_HEADER, vae=VAE, audio_vae=AUDIO_VAE, text_encoder=T5, prior_encoder=PRIOR,
        model=dict(JAV_FLAGS, from_pretrained="JavisVerse/JavisDiT-v0.1-jav", weight_init_from=[]),
    ),
    "inference/sample_240p4s.py": dict(
        INFERENCE_HEADER, vae=VAE, audio_vae=AUDIO_VAE, text_encoder=T5, prior_encoder=PRIOR,
        model=dict(JAV_FLAGS, from_pretrained="JavisVerse/JavisDiT-v0.1-jav-240p4s", weight_init_from=[]),
    ),
    "inference/audio_sample.py": dict(
        INFERENCE_HEADER, audio_only=True, vae=VAE, audio_vae=AUDIO_VAE, text_encoder=T5,
        model=dict(JAV_FLAGS, from_pretrained="JavisVerse/JavisDiT-v0.1-audio", weight_init_from=[],
                   only_infer_audio=True, freeze_video_branch=True, freeze_y_embedder=False,
                   train_st_prior_attn=False, train_va_cross_attn=False),
    ),
    "train/stage1_audio.py": dict(
        RUN, vae=VAE, audio_vae=AUDIO_VAE, text_encoder=T5, audio_cfg=AUDIO_CFG, scheduler=RFLOW_TRAIN,
        audio_only=True, load_text_features=False, num_workers=16,
        dataset=dict(type="VariableVideoAudioTextDataset", data_path=None, transform_name="resize_crop",
                     audio_transform_name="mel_spec_audioldm2", audio_only=True),
        bucket_config={"144p": {51: (1.0, 256), 102: ((1.0, 0.7), 128), 204: ((1.0, 0.3), 64),
                                408: ((1.0, 0.5), 32)}},
        model=dict(type="VASTDiT3-XL/2", qk_norm=True, enable_flash_attn=True, enable_layernorm_kernel=True,
                   weight_init_from=["./checkpoints/OpenSora-STDiT-v3/model.safetensors"], only_train_audio=True,
                   freeze_video_branch=True, freeze_y_embedder=False, train_st_prior_attn=False,
                   train_va_cross_attn=False),
        epochs=50, ckpt_every=250, load=None, lr=1e-4, warmup_steps=1000, ema_decay=0.99, adam_eps=1e-15,
        grad_clip=1.0,
    ),
    "train/stage2_prior.py": dict(
        **RUN, **PRIOR_SCHEDULE, vae=VAE, audio_vae=AUDIO_VAE, audio_cfg=AUDIO_CFG, model=STIB_TRAIN,
        dataset=dict(JAV_DATASET, **NEG_AUG), bucket_config=MULTI_RES_BUCKETS, num_workers=4,
    ),
    "train/stage2_prior_feat.py": dict(
        **RUN, **PRIOR_SCHEDULE, model=STIB_TRAIN, dataset=dict(type="BatchFeatureDataset", data_path=None),
        load_va_features=True, num_workers=4,
    ),
    "train/stage3_jav.py": dict(
        **RUN, **STAGE3_SCHEDULE, vae=VAE, audio_vae=AUDIO_VAE, text_encoder=T5, audio_cfg=AUDIO_CFG,
        prior_encoder=STAGE3_PRIOR, scheduler=RFLOW_TRAIN, model=STAGE3_MODEL, dataset=JAV_DATASET,
        bucket_config=MULTI_RES_BUCKETS, mask_ratios=dict(MASK_RATIOS), load_text_features=False, num_workers=8,
    ),
    "train/stage3_jav_feat.py": dict(
        **RUN, **STAGE3_SCHEDULE, text_encoder=T5, prior_encoder=STAGE3_PRIOR, scheduler=RFLOW_TRAIN,
        model=STAGE3_MODEL,
        dataset=dict(type="BatchFeatureDataset", data_path=None), mask_ratios=dict(MASK_RATIOS),
        load_va_features=True, load_text_features=False, num_workers=8,
    ),
    "misc/extract_va.py": dict(
        EXTRACT, vae=VAE, audio_vae=AUDIO_VAE, audio_cfg=AUDIO_CFG, dataset=JAV_DATASET,
        bucket_config=MULTI_RES_BUCKETS, num_workers=8, bin_size=64,
    ),
    "misc/extract_st_prior_va.py": dict(
        EXTRACT, vae=VAE, audio_vae=AUDIO_VAE, audio_cfg=AUDIO_CFG,
        dataset=dict(JAV_DATASET, **NEG_AUG, require_onset=True), bucket_config=MULTI_RES_BUCKETS, num_workers=4,
        bin_size=16,
    ),
}


def test_every_config_is_checked():
    shipped = {str(p.relative_to(V01)) for p in V01.glob("*/*.py") if p.parent.name != "_base_"}
    assert shipped == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_values(name):
    cfg = load_config(V01 / name).to_dict()
    assert cfg == EXPECTED[name]


def test_mask_ratio_order_and_sum():
    cfg = load_config(V01 / "train/stage3_jav.py")
    assert list(cfg.mask_ratios.items()) == MASK_RATIOS  # the draw depends on this order
    assert sum(cfg.mask_ratios.values()) == pytest.approx(0.30)


def test_bucket_order_is_preserved():
    cfg = load_config(V01 / "train/stage3_jav.py")
    assert list(cfg.bucket_config) == list(MULTI_RES_BUCKETS)
    assert list(cfg.bucket_config["144p"]) == [51, 102, 204, 408]


@pytest.mark.parametrize("name", ["inference.py", "stage1_audio.py", "stage2_prior.py", "stage3_jav.py"])
def test_tiny_configs_load(name):
    mode = "inference" if name == "inference.py" else ("train_prior" if "prior" in name else "train")
    cfg = parse_configs(mode, [str(CONFIGS / "tiny" / name)])
    assert cfg.dtype == "fp32" and cfg.model.enable_layernorm_kernel is False
    # the prior's attention is PyTorch's (nn.Transformer): it has no flash-attn switch to set
    assert ("enable_flash_attn" in cfg.model) == (mode != "train_prior")
    if mode == "inference":
        assert cfg.model.from_pretrained is None and cfg.prior_encoder.from_pretrained is None
        assert cfg.save_fps == 24 and cfg.scheduler.num_sampling_steps == 4
    else:
        assert cfg.bucket_config == {"144p": {17: (1.0, 2)}}  # replaces the v0.1 table, not merged into it
        assert cfg.epochs == 1 and cfg.outputs == "runs"


@pytest.mark.parametrize("name", ["inference.py", "stage1_audio.py", "stage2_prior.py", "stage3_jav.py"])
def test_tiny_config_models_build_offline(name):
    from javisdit.registry import MODELS, build_module

    cfg = load_config(CONFIGS / "tiny" / name)
    model = build_module(cfg.model, MODELS)
    assert sum(p.numel() for p in model.parameters()) < 5_000_000
    if cfg.get("prior_encoder") is not None:
        prior = build_module(cfg.prior_encoder, MODELS)
        assert prior.config.spatial_token_num == model.config.spatial_prior_len
        assert prior.config.out_dim == model.config.st_prior_channel
    parts = {key: build_module(cfg[key], MODELS) for key in ("vae", "audio_vae", "text_encoder") if key in cfg}
    assert parts["vae"].out_channels == 4 and parts["audio_vae"].latent_channels == 8
    if "text_encoder" in parts:
        assert parts["text_encoder"].output_dim == model.config.caption_channels
        assert parts["text_encoder"].model_max_length == model.config.model_max_length


MODES = {"inference": "inference", "train/stage2": "train_prior", "train": "train", "misc": "extract"}


def _mode(name: str) -> str:
    return next(mode for prefix, mode in MODES.items() if name.startswith(prefix))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shipped_configs_pass_the_script_checks(name):
    # every top-level key is one its script reads, every module argument one its builder takes
    cfg = parse_configs(_mode(name), [str(V01 / name)])
    assert cfg.seed == 42


@pytest.mark.parametrize("path", sorted((CONFIGS / "tiny").glob("*.py")), ids=lambda p: p.name)
def test_tiny_configs_pass_the_script_checks(path):
    name = path.name
    mode = ("inference" if name.startswith("inference") else "extract" if name.startswith("extract")
            else "train_vae" if name.startswith("vae_") else "train_prior" if "prior" in name else "train")
    assert parse_configs(mode, [str(path)]).dtype == "fp32"


def test_script_defaults_fill_missing_keys():
    cfg = parse_configs("train_prior", [str(V01 / "train/stage2_prior.py")])
    assert cfg.lr == 1e-5 and cfg.adam_eps == 1e-8 and "ema_decay" not in cfg  # the prior keeps no EMA
    cfg = parse_configs("train", [str(V01 / "train/stage3_jav.py")])
    assert cfg.lr == 1e-4 and cfg.adam_eps == 1e-15 and cfg.start_from_scratch is False
    cfg = parse_configs("inference", [str(V01 / "inference/sample.py"), "--fps", "12"])
    assert cfg.save_fps == 24  # the config's save_fps stays
    assert cfg.start_index == 0 and cfg.num_sample == 1 and cfg.prompt_as_path is False
