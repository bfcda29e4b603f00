"""JavisBench evaluation (``../shared/spec/EVAL.md``): the v0.1 paper's metrics computed as the upstream
evaluator computes them (``--mode faithful``) or with its known bugs fixed (``corrected``), and a protocol
record in every result.

* ``metrics``: Fréchet distance, KVD, AV-Align's score; ``scores``: cosine scores, AVHScore, JavisScore,
  per-category means; ``av_align``: AV-Align's peak detectors;
* ``networks``: the feature networks with the published keys (I3D, AudioCLIP's audio head, ImageBind,
  CAVP; CLIP through open_clip, CLAP through transformers); ``*_inputs``: their preprocessing;
* ``media`` / ``inputs``: decoding samples, the benchmark CSV and where each row's sample is;
* ``groups`` / ``javisbench``: the metric groups and the (sharded, resumable) run; ``protocol``, ``report``,
  ``reference``: the protocol block, the result files, the ground-truth feature cache; ``cli``: the commands.
"""
