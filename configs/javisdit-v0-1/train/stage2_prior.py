# Stage 2: train the ST-prior estimator contrastively against spatially/temporally asynchronous
# negatives built online from each clip.
_base_ = ["../_base_/run.py", "../_base_/prior_negatives.py", "../_base_/vaes.py", "../_base_/audio.py",
          "../_base_/stage2.py"]
