# Stage 3: train the synchronisation modules (ST-prior cross-attention, video-audio cross-attention)
# on top of the frozen video (Open-Sora) and audio (stage 1) branches, conditioned on the frozen prior.
_base_ = ["../_base_/run.py", "../_base_/jav_data.py", "../_base_/encoders.py", "../_base_/audio.py",
          "../_base_/rflow_train.py", "../_base_/stage3.py"]

load_text_features = False
num_workers = 8
