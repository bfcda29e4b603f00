# Text to sounding video with the 240p / 4 s specialist weights; otherwise identical to sample.py.
_base_ = ["./sample.py"]

model = dict(from_pretrained="JavisVerse/JavisDiT-v0.1-jav-240p4s")
