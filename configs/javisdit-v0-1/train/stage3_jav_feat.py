# Stage 3 from pre-extracted latents (scripts/misc/extract_feat.py with misc/extract_va.py): no VAE is
# loaded; T5 and the prior still encode the captions.
_base_ = ["../_base_/run.py", "../_base_/t5.py",
          "../_base_/rflow_train.py", "../_base_/stage3.py"]

dataset = dict(type="BatchFeatureDataset", data_path=None)
load_va_features = True
load_text_features = False
num_workers = 8
