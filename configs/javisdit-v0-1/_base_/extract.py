# Shared by the feature-extraction configs (scripts/misc/extract_feat.py reads no training keys).
dtype = "bf16"
seed = 42
