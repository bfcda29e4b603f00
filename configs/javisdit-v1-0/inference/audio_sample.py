# Text to audio with JavisDiT++'s audio branch (stage 1's text-to-audio geometry, the LoRA not merged, as
# upstream's audio_sample.py); writes .wav files. "4s" is 65 frames at 16 fps: 4.06 s of sound (upstream read
# it from the 24-fps table: 102 frames, 6.4 s; spec MODEL_V1.md §14.3).
_base_ = ["../_base_/inference.py", "../_base_/encoders.py", "../_base_/model.py"]

audio_only = True
num_frames = "4s"
lora_enabled = False
model = dict(model_type="t2a")
