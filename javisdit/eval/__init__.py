"""JavisBench evaluation (``../shared/spec/EVAL.md``). Today: the exact maths of the distribution and
synchronisation metrics (``metrics``) and AV-Align's peak detectors (``av_align``); the feature networks,
the protocol record and the ``scripts/eval/javisbench.py`` command are still to come."""
