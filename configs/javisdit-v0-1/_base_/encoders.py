# The frozen encoders of stages 1 and 3 and of inference: both VAEs and the T5 text encoder.
_base_ = ["./vaes.py", "./t5.py"]
