"""Generators that are not one synthbench checkpoint: one GAN per class, and TorchScript
generators trained elsewhere ("bring your own generator").

Both are described by a small JSON index in a run folder (`index`), which `ml.sampling`
accepts wherever it accepts a checkpoint, so they are sampled, benchmarked and read exactly
like a synthbench run.
"""
