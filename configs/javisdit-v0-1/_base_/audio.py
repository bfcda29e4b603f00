# AudioLDM2's mel front-end: 16 kHz mono, 1024-point STFT with a 10 ms hop, 64 mel bins up to 8 kHz.
audio_cfg = dict(
    preprocessing=dict(
        audio=dict(sampling_rate=16000, max_wav_value=32768.0, duration=10.24),
        stft=dict(filter_length=1024, hop_length=160, win_length=1024),
        mel=dict(n_mel_channels=64, mel_fmin=0, mel_fmax=8000),
    ),
    augmentation=dict(mixup=0.0),
)
