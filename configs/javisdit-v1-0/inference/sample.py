# Text to sounding video with the published JavisDiT++ (v1.0) weights, JavisVerse/JavisDiT-v1.0-jav:
#   python scripts/inference.py configs/javisdit-v1-0/inference/sample.py --prompt "..."
_base_ = ["../_base_/inference.py", "../_base_/encoders.py", "../_base_/model.py"]
